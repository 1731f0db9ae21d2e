//! A throw-away certificate authority for test listeners (pebble, the Git
//! server) and their clients (mTLS), made with rcgen.

use crate::{Error, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::path::{Path, PathBuf};

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl CertPair {
    /// Writes `<stem>.pem` and `<stem>.key` (0600) into `dir`, returns both paths.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf)> {
        let c = dir.join(format!("{stem}.pem"));
        let k = dir.join(format!("{stem}.key"));
        crate::swtpm::write(&c, &self.cert_pem)?;
        crate::swtpm::write(&k, &self.key_pem)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600))
            .map_err(Error::io("chmod key"))?;
        Ok((c, k))
    }
}

/// A test CA (ECDSA P-256) that issues server and client certificates.
pub struct TestCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

fn rc(e: rcgen::Error) -> Error {
    Error::Other(format!("making test certificate: {e}"))
}

impl TestCa {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> Result<TestCa> {
        let key = KeyPair::generate().map_err(rc)?;
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(rc)?;
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = p.self_signed(&key).map_err(rc)?;
        Ok(TestCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(p, key),
        })
    }

    /// The CA certificate, PEM: what clients trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A server certificate for `localhost`, `127.0.0.1` and `::1` (plus `extra` DNS names).
    pub fn server_cert(&self, extra: &[&str]) -> Result<CertPair> {
        let mut names = vec!["localhost".to_string()];
        names.extend(extra.iter().map(|s| s.to_string()));
        let mut p = CertificateParams::new(names).map_err(rc)?;
        p.subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        p.subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()));
        p.distinguished_name.push(DnType::CommonName, "localhost");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(p)
    }

    /// A client certificate with common name `cn` (for mTLS).
    pub fn client_cert(&self, cn: &str) -> Result<CertPair> {
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(rc)?;
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(p)
    }

    fn sign(&self, p: CertificateParams) -> Result<CertPair> {
        let key = KeyPair::generate().map_err(rc)?;
        let cert = p.signed_by(&key, &self.issuer).map_err(rc)?;
        Ok(CertPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}
