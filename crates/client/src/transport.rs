//! Opening the byte stream MQTT runs over: TCP, TLS (rustls with ring), WebSocket (subprotocol
//! `mqtt`, binary frames) and WebSocket over TLS. [`Connection`] gives the event loop one
//! cancel-safe `read` and one `write` whatever the transport.
//!
//! Not here: anything about MQTT packets.

use crate::error::{Error, Result};
use crate::options::{ConnectOptions, TlsOptions, Transport};
use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// A byte stream: TCP or TLS over TCP.
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ByteStream for T {}

/// An open connection to the server.
pub enum Connection {
    /// TCP or TLS.
    Stream(Box<dyn ByteStream>),
    /// WebSocket over TCP or TLS.
    WebSocket(Box<WebSocketStream<Box<dyn ByteStream>>>),
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Connection::Stream(_) => f.write_str("Connection::Stream"),
            Connection::WebSocket(_) => f.write_str("Connection::WebSocket"),
        }
    }
}

impl Connection {
    /// Opens the transport the options ask for (not yet MQTT).
    pub async fn open(options: &ConnectOptions) -> Result<Connection> {
        let address = format!("{}:{}", options.host, options.port);
        let tcp = TcpStream::connect((options.host.as_str(), options.port))
            .await
            .map_err(|source| Error::Unreachable {
                address: address.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn ByteStream> = if options.transport.is_tls() {
            Box::new(tls_connect(tcp, &options.host, &options.tls).await?)
        } else {
            Box::new(tcp)
        };
        match options.transport {
            Transport::Tcp | Transport::Tls => Ok(Connection::Stream(stream)),
            Transport::Ws | Transport::Wss => {
                let scheme = if options.transport == Transport::Wss {
                    "wss"
                } else {
                    "ws"
                };
                let host = if options.host.contains(':') {
                    format!("[{}]", options.host)
                } else {
                    options.host.clone()
                };
                let path = if options.ws_path.starts_with('/') {
                    options.ws_path.clone()
                } else {
                    format!("/{}", options.ws_path)
                };
                let url = format!("{scheme}://{host}:{}{path}", options.port);
                let mut request = url
                    .into_client_request()
                    .map_err(|e| Error::WebSocket(e.to_string()))?;
                request
                    .headers_mut()
                    .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
                let (ws, _response) = tokio_tungstenite::client_async(request, stream)
                    .await
                    .map_err(|e| Error::WebSocket(e.to_string()))?;
                Ok(Connection::WebSocket(Box::new(ws)))
            }
        }
    }

    /// Reads more bytes into `buf`; `Ok(0)` at end of stream. Cancel-safe.
    pub async fn read(&mut self, buf: &mut BytesMut) -> Result<usize> {
        match self {
            Connection::Stream(s) => Ok(s.read_buf(buf).await?),
            Connection::WebSocket(ws) => loop {
                match ws.next().await {
                    None => return Ok(0),
                    Some(Err(e)) => return Err(Error::WebSocket(e.to_string())),
                    Some(Ok(WsMessage::Binary(data))) => {
                        if data.is_empty() {
                            continue;
                        }
                        buf.extend_from_slice(&data);
                        return Ok(data.len());
                    }
                    Some(Ok(WsMessage::Close(_))) => return Ok(0),
                    // Ping/pong are answered by tungstenite; text frames are not MQTT.
                    Some(Ok(WsMessage::Text(_))) => {
                        return Err(Error::WebSocket(
                            "text frame received; MQTT uses binary frames".into(),
                        ));
                    }
                    Some(Ok(_)) => continue,
                }
            },
        }
    }

    /// Writes all of `data` and flushes.
    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        match self {
            Connection::Stream(s) => {
                s.write_all(data).await?;
                s.flush().await?;
                Ok(())
            }
            Connection::WebSocket(ws) => ws
                .send(WsMessage::Binary(bytes::Bytes::copy_from_slice(data)))
                .await
                .map_err(|e| Error::WebSocket(e.to_string())),
        }
    }

    /// Closes the connection politely (TLS close_notify, WebSocket close frame).
    pub async fn close(&mut self) {
        match self {
            Connection::Stream(s) => {
                let _ = s.shutdown().await;
            }
            Connection::WebSocket(ws) => {
                let _ = SinkExt::close(&mut **ws).await;
            }
        }
    }
}

/// Builds the rustls configuration for the options: CA file/path or the system roots, client
/// certificate, insecure mode. Always the ring provider.
pub fn tls_config(tls: &TlsOptions) -> Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?;
    let builder = if tls.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(insecure::AcceptAnything(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        let mut files = Vec::new();
        if let Some(file) = &tls.ca_file {
            files.push(file.clone());
        }
        if let Some(dir) = &tls.ca_path {
            let entries = std::fs::read_dir(dir).map_err(|e| {
                Error::Tls(format!("cannot read CA directory {}: {e}", dir.display()))
            })?;
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_file() {
                    files.push(path);
                }
            }
        }
        if files.is_empty() {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                let _ = roots.add(cert);
            }
        }
        for file in &files {
            let certs = CertificateDer::pem_file_iter(file)
                .map_err(|e| Error::Tls(format!("cannot read CA file {}: {e}", file.display())))?;
            for cert in certs {
                let cert = cert.map_err(|e| {
                    Error::Tls(format!("bad certificate in {}: {e}", file.display()))
                })?;
                roots.add(cert).map_err(|e| {
                    Error::Tls(format!(
                        "unusable CA certificate in {}: {e}",
                        file.display()
                    ))
                })?;
            }
        }
        if roots.is_empty() {
            return Err(Error::Tls(
                "no trusted CA certificates (give a CA file or install system roots)".into(),
            ));
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| {
                    Error::Tls(format!("cannot read certificate {}: {e}", cert.display()))
                })?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::Tls(format!("bad certificate in {}: {e}", cert.display())))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                Error::Tls(format!("cannot read private key {}: {e}", key.display()))
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| Error::Tls(format!("client certificate rejected: {e}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(Error::Tls(
                "a client certificate needs both the certificate and the key file".into(),
            ));
        }
    };
    config.alpn_protocols = tls.alpn.clone();
    Ok(config)
}

async fn tls_connect(
    tcp: TcpStream,
    host: &str,
    tls: &TlsOptions,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let config = tls_config(tls)?;
    let name = tls.server_name.as_deref().unwrap_or(host).to_owned();
    let server_name = ServerName::try_from(name.clone())
        .map_err(|e| Error::Tls(format!("invalid server name {name:?}: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    connector
        .connect(server_name, tcp)
        .await
        .map_err(|e| Error::Tls(format!("handshake with {name} failed: {e}")))
}

mod insecure {
    //! A verifier that accepts any certificate, for `--insecure` in tests. Signatures are
    //! still checked so the handshake is otherwise real.
    use rustls::DigitallySignedStruct;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use std::sync::Arc;

    #[derive(Debug)]
    pub struct AcceptAnything(pub Arc<CryptoProvider>);

    impl ServerCertVerifier for AcceptAnything {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}
