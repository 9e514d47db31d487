//! Helpers of the transport tests: certificates made with rcgen (a CA, server and client
//! certificates, an expired one), PEM files in a fresh directory, a TLS client, a WebSocket
//! client, and a small MQTT client over any byte stream.
#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)]

use bytes::BytesMut;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tern_broker::config::{ListenerConfig, TlsConfig};
use tern_broker::{Broker, Config, RunningBroker};
use tern_codec::{Packet, ProtocolVersion, QoS, ReasonCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

pub const T: Duration = Duration::from_secs(5);

pub use tern_testkit::{TestDir, temp_dir};

/// A certificate authority that signs server and client certificates.
pub struct Ca {
    pub cert: rcgen::Certificate,
    pub issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its key, PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = p.self_signed(&key).unwrap();
        Ca {
            cert,
            issuer: Issuer::new(p, key),
        }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    fn sign(&self, mut p: CertificateParams) -> Leaf {
        let key = KeyPair::generate().unwrap();
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    pub fn server(&self) -> Leaf {
        let mut p =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, "localhost");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(p)
    }

    /// A server certificate for these names only.
    pub fn server_for(&self, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut p = CertificateParams::new(names).unwrap();
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(p)
    }

    /// A client certificate with subject CN `cn`.
    pub fn client(&self, cn: &str) -> Leaf {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(p)
    }

    /// A client certificate without CN whose only name is the DNS SAN `san`.
    pub fn client_san_only(&self, san: &str) -> Leaf {
        let mut p = CertificateParams::new(vec![san.to_string()]).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(p)
    }

    /// A client certificate with CN `cn` that expired in 2021.
    pub fn expired_client(&self, cn: &str) -> Leaf {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        self.sign(p)
    }
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The PKI of a test: a CA, a server certificate it signed, and their files in `dir`.
pub struct Pki {
    /// Removed when the `Pki` drops (kept if the test failed).
    pub dir: TestDir,
    pub ca: Ca,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let dir = temp_dir(name);
        let ca = Ca::new("Tern test CA");
        let server = ca.server();
        Pki {
            ca_file: write(&dir, "ca.pem", &ca.pem()),
            cert_file: write(&dir, "server.pem", &server.cert_pem),
            key_file: write(&dir, "server.key", &server.key_pem),
            dir,
            ca,
        }
    }

    /// Writes a client certificate signed by this CA; returns (cert, key) paths.
    pub fn client_files(&self, cn: &str) -> (PathBuf, PathBuf) {
        leaf_files(&self.dir, cn, &self.ca.client(cn))
    }

    /// Writes an expired client certificate signed by this CA; returns (cert, key) paths.
    pub fn expired_client_files(&self, cn: &str) -> (PathBuf, PathBuf) {
        leaf_files(
            &self.dir,
            &format!("{cn}-expired"),
            &self.ca.expired_client(cn),
        )
    }

    /// Writes a client certificate from another CA (same CA name); returns (cert, key) paths.
    pub fn foreign_client_files(&self, cn: &str) -> (PathBuf, PathBuf) {
        let other = Ca::new("Tern test CA");
        leaf_files(&self.dir, &format!("{cn}-foreign"), &other.client(cn))
    }

    /// `tls = { ... }` for this PKI; `mtls` adds the CA as `client_ca` with a required certificate.
    pub fn tls(&self, mtls: bool) -> TlsConfig {
        TlsConfig {
            cert: self.cert_file.clone(),
            key: self.key_file.clone(),
            client_ca: mtls.then(|| self.ca_file.clone()),
            require_client_cert: mtls,
            use_identity_as_username: false,
        }
    }
}

pub fn leaf_files(dir: &Path, name: &str, leaf: &Leaf) -> (PathBuf, PathBuf) {
    (
        write(dir, &format!("{name}.pem"), &leaf.cert_pem),
        write(dir, &format!("{name}.key"), &leaf.key_pem),
    )
}

pub fn listener(tls: Option<TlsConfig>) -> ListenerConfig {
    let mut l = ListenerConfig::mqtt("127.0.0.1:0".parse().unwrap());
    l.tls = tls;
    l
}

pub async fn start(listeners: Vec<ListenerConfig>) -> (RunningBroker, SocketAddr) {
    start_config(Config {
        listeners,
        ..Default::default()
    })
    .await
}

pub async fn start_config(config: Config) -> (RunningBroker, SocketAddr) {
    let b = Broker::new(config).start().await.expect("broker starts");
    let addr = b.local_addrs()[0];
    (b, addr)
}

/// A rustls client configuration trusting `ca`, presenting `client` if given.
pub fn client_config(
    ca: &CertificateDer<'static>,
    client: Option<&Leaf>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots);
    let c = match client {
        Some(leaf) => {
            use rustls_pki_types::pem::PemObject;
            let chain = vec![CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()];
            let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
        None => b.with_no_client_auth(),
    };
    Arc::new(c)
}

pub const BOTH: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Connects over TLS, checking the server's certificate for `server_name`.
pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    server_name: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(server_name.to_string()).unwrap();
    timeout(
        T,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .expect("TLS handshake ends in time")
}

/// An MQTT client speaking packets over any byte stream.
pub struct Client<S> {
    pub io: S,
    pub buf: BytesMut,
    pub version: ProtocolVersion,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub fn new(io: S, version: ProtocolVersion) -> Self {
        Client {
            io,
            buf: BytesMut::new(),
            version,
        }
    }

    pub async fn send(&mut self, p: &Packet) {
        let mut b = BytesMut::new();
        tern_codec::encode(p, self.version, &mut b).unwrap();
        self.io.write_all(&b).await.unwrap();
        self.io.flush().await.unwrap();
    }

    /// The next packet, or `None` once the connection is closed (or fails).
    pub async fn recv(&mut self) -> Option<Packet> {
        self.recv_for(T).await
    }

    /// Like [`Client::recv`], waiting up to `limit` for the broker.
    pub async fn recv_for(&mut self, limit: Duration) -> Option<Packet> {
        loop {
            if let Some(p) = tern_codec::decode(&mut self.buf, self.version, 1 << 24).unwrap() {
                return Some(p);
            }
            let n = timeout(limit, self.io.read_buf(&mut self.buf))
                .await
                .expect("broker answers or closes in time")
                .ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    /// Sends CONNECT and returns the CONNACK's reason code (3.1.1 return codes as they are).
    pub async fn connect(&mut self, id: &str, user: Option<&str>, password: Option<&str>) -> u8 {
        self.send(&Packet::Connect(Box::new(tern_codec::Connect {
            protocol: self.version,
            clean_start: true,
            keep_alive: 30,
            client_id: id.into(),
            will: None,
            username: user.map(Into::into),
            password: password.map(|p| bytes::Bytes::copy_from_slice(p.as_bytes())),
            properties: Default::default(),
        })))
        .await;
        match self.recv().await {
            Some(Packet::ConnAck(c)) => c.reason_code.0,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Subscribes to one filter at QoS 0; returns the SUBACK reason code.
    pub async fn subscribe(&mut self, filter: &str) -> u8 {
        self.send(&Packet::Subscribe(tern_codec::Subscribe {
            packet_id: 1,
            filters: vec![(filter.into(), tern_codec::SubscriptionOptions::default())],
            properties: Default::default(),
        }))
        .await;
        loop {
            match self.recv().await {
                Some(Packet::SubAck(s)) => return s.reason_codes[0].0,
                Some(_) => {}
                None => panic!("closed before SUBACK"),
            }
        }
    }

    pub async fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS) {
        self.send(&Packet::Publish(tern_codec::Publish {
            dup: false,
            qos,
            retain: false,
            topic: topic.into(),
            packet_id: if qos == QoS::AtMostOnce { 0 } else { 7 },
            payload: bytes::Bytes::copy_from_slice(payload),
            properties: Default::default(),
        }))
        .await;
    }

    /// The next PUBLISH's topic and payload.
    pub async fn next_publish(&mut self) -> (String, Vec<u8>) {
        loop {
            match self.recv().await {
                Some(Packet::Publish(p)) => return (p.topic.to_string(), p.payload.to_vec()),
                Some(_) => {}
                None => panic!("closed before PUBLISH"),
            }
        }
    }

    /// PINGREQ answered by PINGRESP: the connection is alive.
    pub async fn ping(&mut self) -> bool {
        self.send(&Packet::PingReq).await;
        matches!(self.recv().await, Some(Packet::PingResp))
    }
}

pub fn success() -> u8 {
    ReasonCode::SUCCESS.0
}

/// Runs a third-party program to completion; a missing program fails the test (never skips).
pub fn run(program: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("interop: cannot run `{program}` ({e}); install the peers with scripts/install-peers.sh")
        })
}

/// Runs a program on a blocking thread, for peers that wait for messages while the test goes on.
pub fn run_async(program: &str, args: &[&str]) -> tokio::task::JoinHandle<std::process::Output> {
    let program = program.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&program, &args)
    })
}

/// stdout and stderr of a finished program, for assertions and failure messages.
pub fn text(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The repository's root (for tests/interop).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
