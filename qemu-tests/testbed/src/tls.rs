//! A throw-away certificate authority for test listeners (pebble, the Git
//! server) and their clients (mTLS), made with rcgen.

use crate::{Error, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
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
        self.server_cert_for(extra, &[])
    }

    /// Like [`TestCa::server_cert`], plus the IP addresses `ips` as IP SANs
    /// (a listener on a [`crate::TestNet`] address).
    pub fn server_cert_for(&self, extra: &[&str], ips: &[IpAddr]) -> Result<CertPair> {
        let mut names = vec!["localhost".to_string()];
        names.extend(extra.iter().map(|s| s.to_string()));
        let mut p = CertificateParams::new(names).map_err(rc)?;
        let mut all: Vec<IpAddr> = vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()];
        for ip in ips {
            if !all.contains(ip) {
                all.push(*ip);
            }
        }
        p.subject_alt_names
            .extend(all.into_iter().map(SanType::IpAddress));
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

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use std::sync::Arc;

    /// Whether a client trusting `ca` accepts `cert` for `name`.
    fn accepts(ca: &TestCa, cert: &CertPair, name: &str) -> bool {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).expect("ca pem"))
            .expect("root");
        let v =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("verifier");
        let ee = CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).expect("cert pem");
        let name = ServerName::try_from(name.to_string()).expect("server name");
        v.verify_server_cert(&ee, &[], &name, &[], UnixTime::now())
            .is_ok()
    }

    #[test]
    fn server_cert_carries_extra_ip_sans() {
        let ca = TestCa::new("test").expect("ca");
        let plain = ca.server_cert(&["pebble"]).expect("cert");
        let ip: IpAddr = "10.231.7.1".parse().expect("ip");
        let wide = ca.server_cert_for(&["pebble"], &[ip]).expect("cert");
        for name in ["localhost", "pebble", "127.0.0.1", "::1"] {
            assert!(accepts(&ca, &plain, name), "{name}");
            assert!(accepts(&ca, &wide, name), "{name}");
        }
        assert!(!accepts(&ca, &plain, "10.231.7.1"));
        assert!(accepts(&ca, &wide, "10.231.7.1"));
    }
}
