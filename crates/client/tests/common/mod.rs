//! A real Mosquitto broker for interoperability tests: started on its own free port with a
//! temporary configuration, stopped when the guard is dropped. Without CI set, a missing
//! `mosquitto` skips the test (the caller gets `None`); with CI set it fails it.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Mosquitto's default log types, plus `subscribe` so tests can wait for a subscription.
const LOG_TYPES: &str =
    "log_type error\nlog_type warning\nlog_type notice\nlog_type information\nlog_type subscribe\n";

/// Path of the mosquitto binary, or None (panicking under CI).
pub fn mosquitto_binary() -> Option<PathBuf> {
    for candidate in [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ] {
        if Path::new(candidate).exists() {
            return Some(PathBuf::from(candidate));
        }
    }
    let which = Command::new("which").arg("mosquitto").output();
    if let Some(out) = which.ok().filter(|o| o.status.success()) {
        let p = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !p.is_empty() {
            return Some(PathBuf::from(p));
        }
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "mosquitto is not installed (CI is set, so this interop test fails instead of skipping); run scripts/install-peers.sh"
        );
    }
    eprintln!("skipping: mosquitto is not installed");
    None
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh temporary directory.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tern-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running Mosquitto; killed on drop.
pub struct Mosquitto {
    binary: PathBuf,
    child: Option<Child>,
    /// The plain MQTT port.
    pub port: u16,
    /// Directory holding the configuration (and persistence, when enabled).
    pub dir: PathBuf,
    conf: PathBuf,
    ports: Vec<u16>,
}

impl Mosquitto {
    /// A broker with anonymous access and persistence off.
    pub fn start() -> Option<Mosquitto> {
        Mosquitto::start_with("", &[])
    }

    /// A broker whose configuration is the default plain listener followed by `extra`; every
    /// port in `extra_ports` is waited for as well.
    pub fn start_with(extra: &str, extra_ports: &[u16]) -> Option<Mosquitto> {
        Mosquitto::start_full(
            "allow_anonymous true\npersistence false\n",
            extra,
            extra_ports,
        )
    }

    /// A broker with full control over the global settings.
    pub fn start_full(globals: &str, extra: &str, extra_ports: &[u16]) -> Option<Mosquitto> {
        let binary = mosquitto_binary()?;
        let port = free_port();
        let dir = temp_dir("mosquitto");
        // Run as root, mosquitto drops to its own user: let it write its persistence file.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let conf = dir.join("mosquitto.conf");
        let globals = globals.replace("{dir}", &dir.display().to_string());
        std::fs::write(
            &conf,
            format!(
                "per_listener_settings false\n{LOG_TYPES}{globals}listener {port} 127.0.0.1\n{extra}"
            ),
        )
        .unwrap();
        let mut ports = vec![port];
        ports.extend_from_slice(extra_ports);
        let mut m = Mosquitto {
            binary,
            child: None,
            port,
            dir,
            conf,
            ports,
        };
        m.spawn();
        Some(m)
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("mosquitto.log"))
            .unwrap();
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        for port in &self.ports {
            while TcpStream::connect(("127.0.0.1", *port)).is_err() {
                if Instant::now() > deadline {
                    let log =
                        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default();
                    panic!("mosquitto did not listen on {port}: {log}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Stops the broker with SIGTERM (it saves its persistence file) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Starts the broker again with the same configuration and ports.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Everything the broker logged so far (all runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }

    /// Waits (up to 10 s) until the broker logged a subscription by `client_id`.
    pub fn wait_subscribed(&self, client_id: &str) {
        let needle = format!(": {client_id} ");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log().lines().any(|l| l.contains(&needle)) {
            assert!(
                Instant::now() < deadline,
                "{client_id} never subscribed: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `mqtt://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub struct Pki {
    /// Directory of the PEM files.
    pub dir: std::path::PathBuf,
}

impl Pki {
    /// The CA certificate.
    pub fn ca(&self) -> std::path::PathBuf {
        self.dir.join("ca.pem")
    }
    /// A file of the set: server.pem, server.key, client.pem, client.key.
    pub fn file(&self, name: &str) -> std::path::PathBuf {
        self.dir.join(name)
    }
}

/// A CA, a server certificate for localhost / 127.0.0.1, and a client certificate.
pub fn generate_pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let dir = temp_dir("pki");
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Tern test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let mut server_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    server_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let server = server_params.signed_by(&server_key, &issuer).unwrap();
    std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params
        .distinguished_name
        .push(DnType::CommonName, "tern-client");
    let client = client_params.signed_by(&client_key, &issuer).unwrap();
    std::fs::write(dir.join("client.pem"), client.pem()).unwrap();
    std::fs::write(dir.join("client.key"), client_key.serialize_pem()).unwrap();
    Pki { dir }
}

/// Mosquitto configuration lines for a TLS listener on `port` requiring client certificates.
pub fn tls_listener(port: u16, pki: &Pki) -> String {
    format!(
        "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
        pki.ca().display(),
        pki.file("server.pem").display(),
        pki.file("server.key").display()
    )
}
