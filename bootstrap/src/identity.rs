//! The node identity after enrollment: the key (`node-key.pem`) and the
//! certificate keel-enroll issued (`node-cert.pem`), used to sign reports
//! and to renew the certificate.
//!
//! Renewal: the certificate is short-lived (7 days by default), so the node
//! renews it itself with `POST /v1/nodes/renew`, signed with the current
//! certificate and key, once less than a third of its lifetime remains. This
//! runs where the node already talks to keel-enroll periodically: before
//! every report (first boot and the `sync` timer). The key stays the same
//! (it never leaves the node); the new certificate replaces the old file
//! atomically, and only after it was checked to name this node and this key.
//! A refusal (`revoked`, `cert-expired`) needs the admin: the error says so.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use keel_attest::client::{EnrollClient, RenewRequest};
use keel_attest::protocol::B64;

use crate::firstboot::enroll::files;
use keel_cmd::fs::write_atomic;

/// The node's identity, loaded from the state directory.
pub struct Identity {
    /// Client for keel-enroll (from `report.json`).
    pub client: EnrollClient,
    key_pem: String,
    key: p256::ecdsa::SigningKey,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The node id (the certificate's common name).
    pub node_id: String,
    /// Serial, lower-case hex.
    pub serial: String,
    /// Validity, unix seconds.
    pub not_before: i64,
    /// Validity, unix seconds.
    pub not_after: i64,
    cert_path: PathBuf,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("node_id", &self.node_id)
            .field("serial", &self.serial)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// What [`renew_if_due`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// More than a third of the lifetime remains.
    NotDue {
        /// Current serial.
        serial: String,
        /// When renewal becomes due, unix seconds.
        due_at: i64,
    },
    /// A new certificate is in place.
    Renewed {
        /// The replaced serial.
        old_serial: String,
        /// The new serial.
        new_serial: String,
        /// The new notAfter, unix seconds.
        not_after: i64,
    },
}

/// When a certificate valid from `not_before` to `not_after` is due for
/// renewal: when a third of its lifetime remains.
pub fn due_at(not_before: i64, not_after: i64) -> i64 {
    not_after - (not_after - not_before) / 3
}

struct CertFacts {
    der: Vec<u8>,
    node_id: String,
    serial: String,
    not_before: i64,
    not_after: i64,
    spki: Vec<u8>,
}

fn parse_cert(pem_text: &str) -> Result<CertFacts> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem_text.as_bytes())
        .map_err(|e| anyhow::anyhow!("parsing the node certificate: {e}"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&pem.contents)
        .map_err(|e| anyhow::anyhow!("parsing the node certificate: {e}"))?;
    let node_id = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .context("the node certificate has no common name")?
        .to_string();
    let v = cert.validity();
    Ok(CertFacts {
        node_id,
        serial: hex::encode(cert.raw_serial()),
        not_before: v.not_before.timestamp(),
        not_after: v.not_after.timestamp(),
        spki: cert.public_key().raw.to_vec(),
        der: pem.contents.clone(),
    })
}

impl Identity {
    /// Reads `report.json`, the node key and certificate from `state_dir`.
    pub fn load(state_dir: &Path) -> Result<Identity> {
        use p256::pkcs8::DecodePrivateKey;
        let read = |name: &str| {
            std::fs::read_to_string(state_dir.join(name))
                .with_context(|| format!("reading {}", state_dir.join(name).display()))
        };
        let cfg: serde_json::Value =
            serde_json::from_str(&read(crate::firstboot::gitops::REPORT_CONFIG)?)
                .context("parsing report.json")?;
        let (Some(url), Some(ca)) = (cfg["enroll-url"].as_str(), cfg["enroll-ca"].as_str()) else {
            anyhow::bail!("report.json names no enroll-url/enroll-ca");
        };
        let key_pem = read(files::NODE_KEY)?;
        let key = p256::ecdsa::SigningKey::from_pkcs8_pem(&key_pem)
            .map_err(|e| anyhow::anyhow!("parsing the node key: {e}"))?;
        let c = parse_cert(&read(files::NODE_CERT)?)?;
        Ok(Identity {
            client: EnrollClient::new(url, ca)?,
            key_pem,
            key,
            cert_der: c.der,
            node_id: c.node_id,
            serial: c.serial,
            not_before: c.not_before,
            not_after: c.not_after,
            cert_path: state_dir.join(files::NODE_CERT),
        })
    }

    /// Signs `body` with the node key (ECDSA P-256, DER), as the service expects.
    pub fn sign(&self, body: &[u8]) -> Vec<u8> {
        use p256::ecdsa::signature::Signer;
        let sig: p256::ecdsa::Signature = self.key.sign(body);
        sig.to_der().as_bytes().to_vec()
    }

    fn csr(&self) -> Result<Vec<u8>> {
        let key = rcgen::KeyPair::from_pem(&self.key_pem).context("parsing the node key")?;
        let mut params =
            rcgen::CertificateParams::new(vec![self.node_id.clone()]).context("CSR parameters")?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, self.node_id.clone());
        let csr = params.serialize_request(&key).context("building the CSR")?;
        Ok(csr.der().to_vec())
    }
}

/// Renews the node certificate in `state_dir` when less than a third of its
/// lifetime remains at `now` (unix seconds).
pub async fn renew_if_due(state_dir: &Path, now: i64) -> Result<Renewal> {
    let id = Identity::load(state_dir)?;
    let due = due_at(id.not_before, id.not_after);
    if now < due {
        return Ok(Renewal::NotDue {
            serial: id.serial,
            due_at: due,
        });
    }
    let req = RenewRequest {
        node_id: id.node_id.clone(),
        csr: B64(id.csr()?),
        at: time::OffsetDateTime::now_utc(),
    };
    let resp = id
        .client
        .renew(&req, &id.cert_der, |b| id.sign(b))
        .await
        .with_context(|| {
            format!(
                "renewing node certificate {} (expires at unix time {})",
                id.serial, id.not_after
            )
        })?;
    let pem = resp.identity.cert_chain_pem;
    let new = parse_cert(&pem).context("the renewed certificate")?;
    let old = parse_cert(&std::fs::read_to_string(&id.cert_path)?)?;
    anyhow::ensure!(
        new.node_id == id.node_id && new.spki == old.spki,
        "the renewed certificate names {} or another key, not this node {}: kept the old one",
        new.node_id,
        id.node_id
    );
    write_atomic(&id.cert_path, pem.as_bytes(), 0o644)
        .with_context(|| format!("writing {}", id.cert_path.display()))?;
    tracing::info!(
        old = %id.serial,
        new = %new.serial,
        not_after = new.not_after,
        "renewed the node identity certificate"
    );
    Ok(Renewal::Renewed {
        old_serial: id.serial,
        new_serial: new.serial,
        not_after: new.not_after,
    })
}
