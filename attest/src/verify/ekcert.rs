//! EK certificate checks: the certificate chains to a configured TPM vendor
//! root, and the EK public area the node sent is the certificate's key.
//!
//! EK certificates are not web certificates: they carry critical extensions
//! that general X.509 validators reject (TPM subject alternative names), have
//! empty subjects, and come out of NV memory with padding. So the path check
//! here is deliberately narrow: issuer name + signature, link by link, up to a
//! trusted root, with CA flags on every issuer. Validity dates are not
//! enforced: vendors issue EK certificates for the hardware's lifetime and
//! some encode dates far in the past or future.

use std::path::Path;

use x509_cert::der::{Decode, Encode};
use x509_cert::Certificate;

use crate::tpm2::public::{Curve, PublicKey, TpmPublic};
use crate::tpm2::HashAlg;

/// EK certificate problems.
#[derive(Debug, thiserror::Error)]
pub enum EkCertError {
    /// The bytes are not a certificate.
    #[error("EK certificate does not parse: {0}")]
    Parse(String),
    /// No trusted root issues it.
    #[error("EK certificate does not chain to a trusted TPM vendor root (issuer {issuer})")]
    Untrusted {
        /// The issuer name of the last certificate reached.
        issuer: String,
    },
    /// The certificate's key is not the EK.
    #[error("EK public key does not match the EK certificate")]
    KeyMismatch,
    /// Reading trust anchors failed.
    #[error("reading {path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// Trusted TPM vendor roots and known intermediates.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    roots: Vec<Certificate>,
    intermediates: Vec<Certificate>,
}

impl TrustStore {
    /// Adds self-signed roots (or other anchors) from PEM text (several allowed).
    pub fn add_roots_pem(&mut self, pem: &str) -> Result<usize, EkCertError> {
        let certs = parse_pem_certs(pem)?;
        let n = certs.len();
        self.roots.extend(certs);
        Ok(n)
    }

    /// Adds intermediate CA certificates from PEM text.
    pub fn add_intermediates_pem(&mut self, pem: &str) -> Result<usize, EkCertError> {
        let certs = parse_pem_certs(pem)?;
        let n = certs.len();
        self.intermediates.extend(certs);
        Ok(n)
    }

    /// Loads every `*.pem`/`*.crt` file in `dir`: self-signed ones become
    /// roots, the others intermediates.
    pub fn load_dir(dir: &Path) -> Result<TrustStore, EkCertError> {
        let io = |source| EkCertError::Io {
            path: dir.display().to_string(),
            source,
        };
        let mut ts = TrustStore::default();
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .collect::<Result<_, _>>()
            .map_err(io)?;
        entries.sort_by_key(|e| e.path());
        for e in entries {
            let p = e.path();
            if !matches!(p.extension().and_then(|x| x.to_str()), Some("pem" | "crt")) {
                continue;
            }
            let text = std::fs::read_to_string(&p).map_err(|source| EkCertError::Io {
                path: p.display().to_string(),
                source,
            })?;
            for c in parse_pem_certs(&text)? {
                if c.tbs_certificate.issuer == c.tbs_certificate.subject {
                    ts.roots.push(c);
                } else {
                    ts.intermediates.push(c);
                }
            }
        }
        Ok(ts)
    }

    /// Number of roots.
    pub fn root_count(&self) -> usize {
        self.roots.len()
    }
}

fn parse_pem_certs(pem: &str) -> Result<Vec<Certificate>, EkCertError> {
    Certificate::load_pem_chain(pem.as_bytes()).map_err(|e| EkCertError::Parse(e.to_string()))
}

/// Cuts an EK certificate read from NV down to its DER: skips a leading TCG
/// NV header if present and drops trailing padding, using the DER length.
pub fn trim_nv_cert(raw: &[u8]) -> Result<&[u8], EkCertError> {
    let start = raw
        .windows(2)
        .take(16)
        .position(|w| w[0] == 0x30 && (w[1] == 0x82 || w[1] == 0x81 || w[1] < 0x80))
        .ok_or_else(|| EkCertError::Parse("no DER SEQUENCE at the start".into()))?;
    let b = &raw[start..];
    let (hdr, len) = match b.get(1).copied() {
        Some(l) if l < 0x80 => (2, usize::from(l)),
        Some(0x81) => (
            3,
            usize::from(*b.get(2).ok_or_else(|| EkCertError::Parse("short".into()))?),
        ),
        Some(0x82) => {
            let hi = *b.get(2).ok_or_else(|| EkCertError::Parse("short".into()))?;
            let lo = *b.get(3).ok_or_else(|| EkCertError::Parse("short".into()))?;
            (4, usize::from(u16::from_be_bytes([hi, lo])))
        }
        _ => return Err(EkCertError::Parse("unsupported DER length".into())),
    };
    b.get(..hdr + len)
        .ok_or_else(|| EkCertError::Parse("certificate truncated".into()))
}

/// Parses an EK certificate (tolerating NV framing) and checks it chains to
/// `trust`. Returns the parsed leaf.
pub fn validate_ek_cert(raw: &[u8], trust: &TrustStore) -> Result<Certificate, EkCertError> {
    let der = trim_nv_cert(raw)?;
    let leaf = Certificate::from_der(der).map_err(|e| EkCertError::Parse(e.to_string()))?;
    let mut cur = leaf.clone();
    for _depth in 0..6 {
        if trust.roots.iter().any(|r| r == &cur) {
            return Ok(leaf);
        }
        if let Some(_root) = trust.roots.iter().find(|r| issued_by(&cur, r)) {
            return Ok(leaf);
        }
        match trust
            .intermediates
            .iter()
            .find(|i| *i != &cur && issued_by(&cur, i))
        {
            Some(next) => cur = next.clone(),
            None => break,
        }
    }
    Err(EkCertError::Untrusted {
        issuer: cur.tbs_certificate.issuer.to_string(),
    })
}

/// True when `issuer` is a CA whose name and key sign `cert`.
fn issued_by(cert: &Certificate, issuer: &Certificate) -> bool {
    cert.tbs_certificate.issuer == issuer.tbs_certificate.subject
        && is_ca(issuer)
        && verify_signature(cert, issuer).is_ok()
}

fn is_ca(c: &Certificate) -> bool {
    use x509_cert::ext::pkix::BasicConstraints;
    let Some(exts) = &c.tbs_certificate.extensions else {
        return false;
    };
    exts.iter()
        .find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_BASIC_CONSTRAINTS)
        .and_then(|e| BasicConstraints::from_der(e.extn_value.as_bytes()).ok())
        .is_some_and(|bc| bc.ca)
}

fn verify_signature(cert: &Certificate, issuer: &Certificate) -> Result<(), ()> {
    use const_oid::db::rfc5912 as oids;
    let tbs = cert.tbs_certificate.to_der().map_err(|_| ())?;
    let sig = cert.signature.as_bytes().ok_or(())?;
    let spki = &issuer.tbs_certificate.subject_public_key_info;
    let key_der = spki.to_der().map_err(|_| ())?;
    let oid = cert.signature_algorithm.oid;
    use sha2::Digest;
    if oid == oids::SHA_256_WITH_RSA_ENCRYPTION || oid == oids::SHA_384_WITH_RSA_ENCRYPTION {
        use rsa::pkcs8::DecodePublicKey;
        use rsa::traits::PublicKeyParts;
        let k = rsa::RsaPublicKey::from_public_key_der(&key_der).map_err(|_| ())?;
        let hash = if oid == oids::SHA_256_WITH_RSA_ENCRYPTION {
            HashAlg::Sha256
        } else {
            HashAlg::Sha384
        };
        let (n, e) = (k.n().to_bytes_be(), k.e().to_bytes_be());
        if let Some(r) = crate::crypto::rsa_pkcs1_verify(hash, &n, &e, sig, &tbs) {
            return r;
        }
        if oid == oids::SHA_256_WITH_RSA_ENCRYPTION {
            k.verify(
                rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
                &sha2::Sha256::digest(&tbs),
                sig,
            )
        } else {
            k.verify(
                rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
                &sha2::Sha384::digest(&tbs),
                sig,
            )
        }
        .map_err(|_| ())
    } else if oid == oids::ECDSA_WITH_SHA_256 || oid == oids::ECDSA_WITH_SHA_384 {
        use ecdsa::signature::hazmat::PrehashVerifier;
        use p256::pkcs8::DecodePublicKey;
        let hash = if oid == oids::ECDSA_WITH_SHA_256 {
            HashAlg::Sha256
        } else {
            HashAlg::Sha384
        };
        let point = spki.subject_public_key.as_bytes().ok_or(())?;
        // An uncompressed point's length names its curve; ring refuses a
        // point that is not on that curve.
        let curve = match point.len() {
            65 => Some(Curve::P256),
            97 => Some(Curve::P384),
            _ => None,
        };
        if let Some(curve) = curve {
            if let Some(r) = crate::crypto::ecdsa_verify_der(curve, hash, point, sig, &tbs) {
                return r;
            }
        }
        let digest = if oid == oids::ECDSA_WITH_SHA_256 {
            sha2::Sha256::digest(&tbs).to_vec()
        } else {
            sha2::Sha384::digest(&tbs).to_vec()
        };
        if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_der(&key_der) {
            let s = p256::ecdsa::Signature::from_der(sig).map_err(|_| ())?;
            return k.verify_prehash(&digest, &s).map_err(|_| ());
        }
        let k = p384::ecdsa::VerifyingKey::from_public_key_der(&key_der).map_err(|_| ())?;
        let s = p384::ecdsa::Signature::from_der(sig).map_err(|_| ())?;
        k.verify_prehash(&digest, &s).map_err(|_| ())
    } else {
        Err(())
    }
}

/// Checks that the certificate's subject key is exactly the EK's key.
/// RSA keys are read from the raw PKCS#1 bits, so certificates that label
/// the key RSAES-OAEP instead of rsaEncryption still match.
pub fn check_ek_matches_cert(ek: &TpmPublic, cert: &Certificate) -> Result<(), EkCertError> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let bits = spki
        .subject_public_key
        .as_bytes()
        .ok_or(EkCertError::KeyMismatch)?;
    let same = match &ek.key {
        PublicKey::Rsa { n, e } => {
            use rsa::pkcs1::DecodeRsaPublicKey;
            use rsa::traits::PublicKeyParts;
            let k =
                rsa::RsaPublicKey::from_pkcs1_der(bits).map_err(|_| EkCertError::KeyMismatch)?;
            k.n().to_bytes_be() == *n && k.e() == &rsa::BigUint::from(*e)
        }
        PublicKey::Ecc { curve, x, y } => {
            let mut point = vec![4u8];
            point.extend_from_slice(x);
            point.extend_from_slice(y);
            let cert_point = match curve {
                Curve::P256 => p256::PublicKey::from_sec1_bytes(bits)
                    .map(|k| k.to_encoded_point(false).as_bytes().to_vec()),
                Curve::P384 => p384::PublicKey::from_sec1_bytes(bits)
                    .map(|k| k.to_encoded_point(false).as_bytes().to_vec()),
            };
            cert_point.is_ok_and(|p| p == point)
        }
    };
    if same {
        Ok(())
    } else {
        Err(EkCertError::KeyMismatch)
    }
}
