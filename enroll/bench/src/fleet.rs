//! The simulated fleet: one software TPM per node (keel-attest `soft`), an EK
//! certificate for each from a throw-away "TPM vendor" CA, an allow-list entry
//! and a CSR. All of it is made before the timed phase: on real nodes the
//! keys already sit in the TPM.

use std::sync::Arc;

use anyhow::Context as _;
use keel_attest::protocol::ReleaseRef;
use keel_attest::soft::SoftTpm;
use keel_attest::tpm2::public::{PublicKey, TpmPublic};
use sha2::{Digest, Sha256};

use crate::cli::KeyType;
use keel_enroll::admission::AllowEntry;

/// The release the simulated nodes claim.
pub fn bench_release() -> ReleaseRef {
    ReleaseRef {
        name: "bench".into(),
        version: "1".into(),
    }
}

/// A policy accepting a fresh TPM's PCRs 0-7 for [`bench_release`].
pub fn bench_policy() -> String {
    let mut s = String::from("[[release]]\nname = \"bench\"\nversion = \"1\"\n[release.pcrs]\n");
    for i in 0u8..8 {
        let v = keel_attest::verify::eventlog::initial_value(i, 0);
        s.push_str(&format!("\"{i}\" = [\"{}\"]\n", hex::encode(v)));
    }
    s
}

/// Hex SHA-256 of an EK's SubjectPublicKeyInfo (the allow-list key).
pub fn ek_sha256(ek_tpm2b: &[u8]) -> anyhow::Result<String> {
    let ek = TpmPublic::from_tpm2b(ek_tpm2b).context("EK public")?;
    Ok(hex::encode(Sha256::digest(
        ek.spki_der().context("EK SPKI")?,
    )))
}

/// A DER CSR for a fresh P-256 node key.
pub fn make_csr(node_id: &str) -> anyhow::Result<Vec<u8>> {
    let key = rcgen::KeyPair::generate().context("node key")?;
    let params = rcgen::CertificateParams::new(vec![node_id.to_owned()]).context("CSR params")?;
    Ok(params
        .serialize_request(&key)
        .context("CSR")?
        .der()
        .to_vec())
}

/// A CA that signs EK certificates, as a TPM vendor's does.
pub struct EkCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate (PEM), to configure as an EK root.
    pub pem: String,
}

impl EkCa {
    /// A fresh self-signed P-256 CA named `cn`.
    pub fn new(cn: &str) -> anyhow::Result<EkCa> {
        let key = rcgen::KeyPair::generate().context("EK CA key")?;
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = p.self_signed(&key).context("EK CA certificate")?;
        Ok(EkCa {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(p, key),
        })
    }

    /// A DER certificate for the EK `ek_tpm2b` (RSA or ECC).
    pub fn certify(&self, ek_tpm2b: &[u8]) -> anyhow::Result<Vec<u8>> {
        use x509_parser::prelude::FromDer;
        let ek = TpmPublic::from_tpm2b(ek_tpm2b).context("EK public")?;
        let spki_der = ek.spki_der().context("EK SPKI")?;
        let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&spki_der)
            .map_err(|e| anyhow::anyhow!("EK SPKI: {e}"))?;
        let key = SubjectKey {
            der: spki.subject_public_key.data.to_vec(),
            alg: match ek.key {
                PublicKey::Rsa { .. } => &rcgen::PKCS_RSA_SHA256,
                PublicKey::Ecc { .. } => &rcgen::PKCS_ECDSA_P256_SHA256,
            },
        };
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "TPM EK");
        Ok(p.signed_by(&key, &self.issuer)
            .context("signing EK certificate")?
            .der()
            .to_vec())
    }
}

/// A subject public key given as its raw bits (PKCS#1 or SEC1 point).
struct SubjectKey {
    der: Vec<u8>,
    alg: &'static rcgen::SignatureAlgorithm,
}

impl rcgen::PublicKeyData for SubjectKey {
    fn der_bytes(&self) -> &[u8] {
        &self.der
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.alg
    }
}

/// One simulated node.
pub struct SimNode {
    /// Its TPM.
    pub tpm: Arc<SoftTpm>,
    /// DER EK certificate.
    pub ek_cert: Vec<u8>,
    /// DER CSR for its identity key.
    pub csr: Vec<u8>,
    /// Node id (hostname).
    pub id: String,
}

/// The fleet and what the service must be told about it.
pub struct Fleet {
    /// The nodes.
    pub nodes: Vec<SimNode>,
    /// Allow-list entries (purchasing's CSV).
    pub allow: Vec<AllowEntry>,
    /// The EK CA certificate (PEM).
    pub ek_root_pem: String,
}

/// RSA-2048 key generation takes ~0.1-1 s per key in software, so RSA nodes
/// share this many TPMs (each node still has its own id, CSR and session).
pub const RSA_POOL: usize = 8;

impl Fleet {
    /// Generates `n` nodes (blocking; seconds for thousands of ECC nodes).
    pub fn generate(key: KeyType, n: usize) -> anyhow::Result<Fleet> {
        let ca = EkCa::new("Keel bench TPM vendor CA")?;
        let rng = &mut rand::rngs::OsRng;
        let pool: Vec<(Arc<SoftTpm>, Vec<u8>)> = match key {
            KeyType::Ecc => Vec::new(),
            KeyType::Rsa => (0..n.min(RSA_POOL))
                .map(|_| {
                    let tpm = Arc::new(SoftTpm::new_rsa(rng)?);
                    let cert = ca.certify(&tpm.ek.public_tpm2b())?;
                    Ok((tpm, cert))
                })
                .collect::<anyhow::Result<_>>()?,
        };
        let run_id = hex::encode(rand::random::<[u8; 3]>());
        let mut nodes = Vec::with_capacity(n);
        let mut allow = Vec::with_capacity(n);
        for i in 0..n {
            let (tpm, ek_cert, fresh) = match key {
                KeyType::Ecc => {
                    let tpm = Arc::new(SoftTpm::new_ecc(rng));
                    let cert = ca.certify(&tpm.ek.public_tpm2b())?;
                    (tpm, cert, true)
                }
                KeyType::Rsa => {
                    let (tpm, cert) = &pool[i % pool.len()];
                    (tpm.clone(), cert.clone(), i < pool.len())
                }
            };
            if fresh {
                allow.push(AllowEntry {
                    ek_sha256: ek_sha256(&tpm.ek.public_tpm2b())?,
                    serial: format!("SN-{i}"),
                    store_id: "bench".into(),
                });
            }
            let id = format!("bench-{run_id}-{i}");
            nodes.push(SimNode {
                csr: make_csr(&id)?,
                tpm,
                ek_cert,
                id,
            });
        }
        Ok(Fleet {
            nodes,
            allow,
            ek_root_pem: ca.pem,
        })
    }
}
