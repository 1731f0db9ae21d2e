//! Checking a cosign keyed blob signature (`cosign sign-blob --key`): an
//! ECDSA P-256 signature over the SHA-256 of the file, DER, base64, in
//! `FILE.sig`; the public key is a PEM `cosign.pub`. The builder signs
//! release manifests this way and keel-enroll admits nodes only against
//! manifests whose signature verifies ([`load_verified`]), so the check lives
//! here, beside the format, for both.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use p256::ecdsa::{DerSignature, Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use sha2::{Digest as _, Sha256};

use crate::{Manifest, ManifestError};

/// Why a signature (or the key) was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("{0} is not an ECDSA P-256 public key (PEM)")]
    Key(String),
    #[error("signature is not base64")]
    Base64,
    #[error("signature is not an ASN.1 DER ECDSA signature")]
    Der,
    #[error("signature does not match")]
    Mismatch,
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A PEM public key (`cosign.pub`).
pub fn public_key_from_pem(pem: &str, what: &str) -> Result<VerifyingKey, SignatureError> {
    VerifyingKey::from_public_key_pem(pem).map_err(|_| SignatureError::Key(what.to_string()))
}

/// Reads a PEM public key file.
pub fn load_public_key(path: &Path) -> Result<VerifyingKey, SignatureError> {
    let pem = std::fs::read_to_string(path).map_err(|source| SignatureError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    public_key_from_pem(&pem, &path.display().to_string())
}

/// Checks a base64 DER signature over a SHA-256 digest.
pub fn verify_digest(
    key: &VerifyingKey,
    digest: &[u8; 32],
    sig_b64: &str,
) -> Result<(), SignatureError> {
    let der = B64
        .decode(sig_b64.trim())
        .map_err(|_| SignatureError::Base64)?;
    let sig = DerSignature::try_from(der.as_slice()).map_err(|_| SignatureError::Der)?;
    let sig = Signature::try_from(sig).map_err(|_| SignatureError::Der)?;
    key.verify_prehash(digest, &sig)
        .map_err(|_| SignatureError::Mismatch)
}

/// Checks a base64 DER signature over `data` (hashed with SHA-256).
pub fn verify_blob(key: &VerifyingKey, data: &[u8], sig_b64: &str) -> Result<(), SignatureError> {
    verify_digest(key, &Sha256::digest(data).into(), sig_b64)
}

/// A manifest that failed to load as a trusted one.
#[derive(Debug, thiserror::Error)]
pub enum VerifiedLoadError {
    #[error("{path}: {source}")]
    Signature {
        path: PathBuf,
        #[source]
        source: SignatureError,
    },
    #[error("{path}: {source}")]
    Manifest {
        path: PathBuf,
        #[source]
        source: ManifestError,
    },
}

/// Reads `path` and `path.sig`, checks the signature against `key`, and
/// parses exactly the bytes that were verified.
pub fn load_verified(path: &Path, key: &VerifyingKey) -> Result<Manifest, VerifiedLoadError> {
    let sig_path = PathBuf::from(format!("{}.sig", path.display()));
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| VerifiedLoadError::Signature {
            path: p.to_path_buf(),
            source: SignatureError::Io {
                path: p.to_path_buf(),
                source,
            },
        })
    };
    let bytes = read(path)?;
    let sig = read(&sig_path)?;
    verify_blob(key, &bytes, &String::from_utf8_lossy(&sig)).map_err(|source| {
        VerifiedLoadError::Signature {
            path: path.to_path_buf(),
            source,
        }
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|_| VerifiedLoadError::Manifest {
        path: path.to_path_buf(),
        source: ManifestError::Invalid("not UTF-8".into()),
    })?;
    crate::parse(text).map_err(|source| VerifiedLoadError::Manifest {
        path: path.to_path_buf(),
        source,
    })
}
