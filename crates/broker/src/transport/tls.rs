//! TLS for listeners: the rustls server configuration built from PEM files, reloadable at run
//! time, and the client-certificate identity used by `use_identity_as_username`.
//!
//! One crypto provider, ring, is named explicitly, so nothing depends on a process-wide default.
//! TLS 1.2 and 1.3 only. [`TlsAcceptor::reload`] re-reads the files and swaps the configuration
//! atomically: handshakes that start afterwards use the new certificates, established
//! connections keep theirs. Not here: the handshake timeout and logging (the listener does both).

use crate::config::TlsConfig;
use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;

/// A TLS configuration that could not be built: names the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{what} {path}: {source}")]
    Pem {
        /// Which option the file came from (`cert`, `key`, `client_ca`).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The reader's error (missing file, bad PEM, no item of the right type).
        source: rustls_pki_types::pem::Error,
    },
    /// The file holds no certificate.
    #[error("{what} {path}: no CERTIFICATE block found")]
    NoCertificate {
        /// Which option the file came from.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// A CA certificate rustls refused.
    #[error("client_ca {path}: {source}")]
    BadCa {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rustls::Error,
    },
    /// The client-certificate verifier could not be built.
    #[error("client_ca {path}: {message}")]
    Verifier {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Certificate and key do not fit together, or the key type is not supported.
    #[error("cert {cert} / key {key}: {source}")]
    CertKey {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        source: rustls::Error,
    },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |source| TlsError::Pem {
        what,
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Builds the rustls server configuration a listener's `tls = { ... }` describes.
pub fn server_config(tls: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = read_certs("cert", &tls.cert)?;
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|source| TlsError::Pem {
        what: "key",
        path: tls.key.clone(),
        source,
    })?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|source| TlsError::CertKey {
            cert: tls.cert.clone(),
            key: tls.key.clone(),
            source,
        })?;
    let builder = match &tls.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca_path) => {
            let mut roots = RootCertStore::empty();
            for ca in read_certs("client_ca", ca_path)? {
                roots.add(ca).map_err(|source| TlsError::BadCa {
                    path: ca_path.clone(),
                    source,
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = if tls.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier.build().map_err(|e| TlsError::Verifier {
                path: ca_path.clone(),
                message: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::CertKey {
            cert: tls.cert.clone(),
            key: tls.key.clone(),
            source,
        })?;
    Ok(Arc::new(config))
}

/// A listener's TLS acceptor whose certificates can be reloaded without dropping connections.
#[derive(Debug)]
pub struct TlsAcceptor {
    settings: TlsConfig,
    current: ArcSwap<ServerConfig>,
}

impl TlsAcceptor {
    /// Loads the files of `settings`.
    pub fn new(settings: TlsConfig) -> Result<Self, TlsError> {
        let config = server_config(&settings)?;
        Ok(TlsAcceptor {
            settings,
            current: ArcSwap::new(config),
        })
    }

    /// The listener's TLS settings.
    pub fn settings(&self) -> &TlsConfig {
        &self.settings
    }

    /// Re-reads the certificate, key and CA files; on error the previous configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.settings)?;
        self.current.store(config);
        Ok(())
    }

    /// Runs the server side of a TLS handshake with the current configuration.
    pub async fn accept<S>(&self, stream: S) -> std::io::Result<TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        tokio_rustls::TlsAcceptor::from(self.current.load_full())
            .accept(stream)
            .await
    }
}

/// The identity of a verified client certificate: its subject CN, else its first DNS name,
/// e-mail address or URI among the subject alternative names. `None` when there is no
/// certificate or it names nobody.
pub fn certificate_identity(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed
        .subject()
        .iter_common_name()
        .find_map(|cn| cn.as_str().ok())
        .filter(|cn| !cn.is_empty());
    if let Some(cn) = cn {
        return Some(cn.to_string());
    }
    let san = parsed.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
            Some((*s).to_string())
        }
        _ => None,
    })
}

/// The identity of the client certificate presented on `stream`, if any.
pub fn peer_identity<S>(stream: &TlsStream<S>) -> Option<String> {
    let (_, conn) = stream.get_ref();
    conn.peer_certificates()?
        .first()
        .and_then(certificate_identity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair};

    fn cert(cn: Option<&str>, sans: &[&str]) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let mut p =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            p.distinguished_name.push(DnType::CommonName, cn);
        }
        p.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn identity_is_the_cn_first_then_the_first_san() {
        assert_eq!(
            certificate_identity(&cert(Some("alice"), &["dev.example"])).as_deref(),
            Some("alice")
        );
        assert_eq!(
            certificate_identity(&cert(None, &["dev.example", "other.example"])).as_deref(),
            Some("dev.example")
        );
        assert_eq!(certificate_identity(&cert(None, &[])), None);
    }

    #[test]
    fn garbage_certificate_has_no_identity() {
        assert_eq!(
            certificate_identity(&CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01])),
            None
        );
    }

    #[test]
    fn errors_name_the_option_and_the_file() {
        let tls = TlsConfig {
            cert: PathBuf::from("/nonexistent/server.pem"),
            key: PathBuf::from("/nonexistent/server.key"),
            client_ca: None,
            require_client_cert: false,
            use_identity_as_username: false,
        };
        let e = server_config(&tls).unwrap_err().to_string();
        assert!(e.starts_with("cert /nonexistent/server.pem:"), "{e}");
    }
}
