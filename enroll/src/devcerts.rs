//! `keel-enroll dev-certs`: a local CA, a server certificate signed by it and a
//! node CA, for tests and demos, and the audit signing key. Real deployments use
//! their own PKI. Private keys are written 0600 from the start (temp file
//! created 0600, then renamed).

use std::path::Path;

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// Paths written by [`write`] (relative to the output directory).
pub const FILES: [&str; 8] = [
    "ca.pem",
    "ca.key",
    "server.pem",
    "server.key",
    "node-ca.pem",
    "node-ca.key",
    "audit.key",
    "audit.pub",
];

fn ca_params(cn: &str, days: i64) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(days);
    p
}

/// Writes a server CA, a server certificate for `names` (DNS names or IPs;
/// `localhost`, `127.0.0.1` and `::1` are always included) and a node CA into `out`.
pub fn write(out: &Path, names: &[String]) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let ca_key = KeyPair::generate().context("generating CA key")?;
    let ca_p = ca_params("keel-enroll dev CA", 3650);
    let ca_cert = ca_p.self_signed(&ca_key).context("self-signing CA")?;
    let ca = Issuer::new(ca_p, &ca_key);

    let mut all: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    all.extend(names.iter().cloned());
    all.dedup();
    let mut sp = CertificateParams::new(all).context("server names")?;
    sp.distinguished_name
        .push(DnType::CommonName, "keel-enroll");
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    sp.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let now = OffsetDateTime::now_utc();
    sp.not_before = now - Duration::hours(1);
    sp.not_after = now + Duration::days(825);
    let server_key = KeyPair::generate().context("generating server key")?;
    let server_cert = sp
        .signed_by(&server_key, &ca)
        .context("signing server cert")?;

    let node_key = KeyPair::generate().context("generating node CA key")?;
    let node_ca = ca_params("keel-enroll node CA", 3650)
        .self_signed(&node_key)
        .context("self-signing node CA")?;

    let (audit_key, audit_pub) = crate::audit_sign::generate_pem()?;

    let put = |name: &str, text: String, secret: bool| -> anyhow::Result<()> {
        let p = out.join(name);
        if secret {
            crate::secfile::write_private(&p, text.as_bytes())
        } else {
            keel_cmd::fs::write_atomic(&p, text.as_bytes(), 0o644)
        }
        .with_context(|| format!("writing {}", p.display()))
    };
    put("ca.pem", ca_cert.pem(), false)?;
    put("ca.key", ca_key.serialize_pem(), true)?;
    put("server.pem", server_cert.pem(), false)?;
    put("server.key", server_key.serialize_pem(), true)?;
    put("node-ca.pem", node_ca.pem(), false)?;
    put("node-ca.key", node_key.serialize_pem(), true)?;
    put("audit.key", audit_key, true)?;
    put("audit.pub", audit_pub, false)?;
    Ok(())
}
