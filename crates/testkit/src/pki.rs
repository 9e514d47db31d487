//! Test certificates made with rcgen: a CA, a server certificate for localhost / 127.0.0.1 and a
//! client certificate, as PEM files in a fresh directory.

use std::path::PathBuf;

use crate::process::{TestDir, temp_dir};

/// A directory of PEM files: ca.pem, server.pem, server.key, client.pem, client.key; removed
/// when dropped (kept if the test failed).
pub struct Pki {
    /// Directory of the PEM files.
    pub dir: TestDir,
}

impl Pki {
    /// The CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    /// A file of the set: server.pem, server.key, client.pem, client.key.
    pub fn file(&self, name: &str) -> PathBuf {
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

    let leaf = |name: &str, common_name: &str, sans: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(sans).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    };
    leaf(
        "server",
        "localhost",
        vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
    );
    leaf("client", "tern-client", Vec::new());
    Pki { dir }
}
