//! Signed chain heads and signed exports. The hash chain alone catches an edit
//! only if the attacker does not recompute every later hash; a signature by
//! the service's audit key over a (seq, hash) head cannot be recomputed
//! without that key. The service signs the chain tip every `audit-sign-secs`
//! (and admin commands after their change, and `audit export`), each time
//! after checking that the rows since the previous signed head link to it;
//! `audit verify` checks the chain and every signed head.
//!
//! The key is a dedicated ECDSA P-256 key (`audit-key`, PKCS#8 PEM, written by
//! `keel-enroll dev-certs` as `audit.key` with `audit.pub` beside it): not the
//! TLS key, which is rotated with its certificate (old heads would stop
//! verifying) and lives on every replica's front, and not the node CA key,
//! whose signatures mean "this is a fleet node". Signatures are ASN.1 DER
//! over SHA-256, base64: what `cosign verify-blob --key audit.pub` and
//! `openssl dgst -sha256 -verify audit.pub` check.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey, LineEnding};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Errors of keys and signatures.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// A key file cannot be read or parsed.
    #[error("audit key {path}: {msg}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong and what to do.
        msg: String,
    },
    /// A signature does not verify.
    #[error("{0}")]
    Invalid(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SignError + '_ {
    move |source| SignError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The service's audit signing key.
#[derive(Clone)]
pub struct AuditKey {
    key: SigningKey,
    public: AuditPub,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKey")
            .field("key_id", &self.public.key_id)
            .finish()
    }
}

impl AuditKey {
    /// Loads a P-256 PKCS#8 PEM private key.
    pub fn load(path: &Path) -> Result<AuditKey, SignError> {
        let pem = std::fs::read_to_string(path).map_err(io_err(path))?;
        let key = SigningKey::from_pkcs8_pem(&pem).map_err(|e| SignError::Key {
            path: path.display().to_string(),
            msg: format!(
                "not an ECDSA P-256 private key in PKCS#8 PEM ({e}); create one with \
                 `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out {}`",
                path.display()
            ),
        })?;
        Ok(AuditKey::from_signing_key(key))
    }

    fn from_signing_key(key: SigningKey) -> AuditKey {
        let public = AuditPub::new(*key.verifying_key());
        AuditKey { key, public }
    }

    /// The public half.
    pub fn public(&self) -> &AuditPub {
        &self.public
    }

    /// Signs `msg` (ECDSA P-256, SHA-256); base64 of the DER signature.
    pub fn sign(&self, msg: &[u8]) -> String {
        let sig: Signature = self.key.sign(msg);
        B64.encode(sig.to_der().as_bytes())
    }

    /// Signs the head `(seq, hash)` now.
    pub fn sign_head(&self, seq: i64, hash: &str) -> SignedHead {
        let signed_at = crate::audit::now_rfc3339();
        let signature = self.sign(&head_message(seq, hash, &signed_at));
        SignedHead {
            seq,
            hash: hash.to_owned(),
            signed_at,
            key_id: self.public.key_id.clone(),
            signature,
        }
    }
}

/// A public audit key.
#[derive(Debug, Clone)]
pub struct AuditPub {
    key: VerifyingKey,
    /// Hex SHA-256 of the SubjectPublicKeyInfo (DER).
    pub key_id: String,
}

impl AuditPub {
    fn new(key: VerifyingKey) -> AuditPub {
        let der = key
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        AuditPub {
            key,
            key_id: hex::encode(Sha256::digest(der)),
        }
    }

    /// Loads a P-256 public key (PEM `PUBLIC KEY`, e.g. `audit.pub`).
    pub fn load(path: &Path) -> Result<AuditPub, SignError> {
        let pem = std::fs::read_to_string(path).map_err(io_err(path))?;
        let key = VerifyingKey::from_public_key_pem(&pem).map_err(|e| SignError::Key {
            path: path.display().to_string(),
            msg: format!(
                "not an ECDSA P-256 public key in PEM ({e}); derive it with \
                 `openssl pkey -in audit.key -pubout -out audit.pub`"
            ),
        })?;
        Ok(AuditPub::new(key))
    }

    /// PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn pem(&self) -> String {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_default()
    }

    /// Checks a base64 DER signature over `msg`.
    pub fn verify(&self, msg: &[u8], sig_b64: &str) -> bool {
        B64.decode(sig_b64.trim())
            .ok()
            .and_then(|der| Signature::from_der(&der).ok())
            .is_some_and(|sig| self.key.verify(msg, &sig).is_ok())
    }
}

/// Generates a new audit key; returns (private PKCS#8 PEM, public PEM).
pub fn generate_pem() -> Result<(String, String), SignError> {
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let private = p256::pkcs8::EncodePrivateKey::to_pkcs8_pem(&key, LineEnding::LF)
        .map_err(|e| SignError::Invalid(format!("encoding the audit key: {e}")))?;
    let public = AuditKey::from_signing_key(key).public.pem();
    Ok((private.to_string(), public))
}

/// A signed chain head, as stored in `audit_heads` and carried by exports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SignedHead {
    /// The row signed.
    pub seq: i64,
    /// Its hash.
    pub hash: String,
    /// RFC 3339 UTC.
    pub signed_at: String,
    /// [`AuditPub::key_id`] of the signer.
    pub key_id: String,
    /// Base64 DER ECDSA signature over [`head_message`].
    pub signature: String,
}

/// The signed bytes of a head.
pub fn head_message(seq: i64, hash: &str, signed_at: &str) -> Vec<u8> {
    format!("keel-audit-head v1\nseq {seq}\nhash {hash}\nsigned-at {signed_at}\n").into_bytes()
}

impl SignedHead {
    /// Whether the signature verifies under `key`.
    pub fn verifies(&self, key: &AuditPub) -> bool {
        key.verify(
            &head_message(self.seq, &self.hash, &self.signed_at),
            &self.signature,
        )
    }
}

/// Why the signed heads do not match the chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// Rows but no signed head at all.
    #[error(
        "no signed chain head for {rows} audit rows: the heads were deleted, or the log \
         predates signed heads (then `keel-enroll audit adopt` signs it)"
    )]
    NoHead {
        /// Rows in the chain.
        rows: usize,
    },
    /// A head's signature does not verify.
    #[error(
        "signed head at row {seq}: the signature does not verify against the audit key \
         {key_id} (forged or altered head)"
    )]
    BadSignature {
        /// Row.
        seq: i64,
        /// The key checked against.
        key_id: String,
    },
    /// A head names a hash the chain no longer has at that row.
    #[error(
        "signed head at row {seq}: the chain's hash there differs from the signed one \
         (rows up to {seq} were rewritten and their hashes recomputed)"
    )]
    Mismatch {
        /// Row.
        seq: i64,
    },
    /// A head beyond the chain's end.
    #[error("signed head at row {seq}, but the chain ends at row {rows} (rows were deleted)")]
    Beyond {
        /// Row.
        seq: i64,
        /// Rows in the chain.
        rows: usize,
    },
}

/// What [`verify_heads`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadReport {
    /// Heads checked.
    pub heads: usize,
    /// The last signed row (0: none).
    pub last_signed: i64,
    /// Rows after it, protected by the hash chain only until the next signature.
    pub unsigned_tail: usize,
}

/// Checks every signed head against `key` and the (already hash-verified) chain.
pub fn verify_heads(
    rows: &[crate::audit::Row],
    heads: &[SignedHead],
    key: &AuditPub,
) -> Result<HeadReport, HeadError> {
    if heads.is_empty() && !rows.is_empty() {
        return Err(HeadError::NoHead { rows: rows.len() });
    }
    let mut last = 0;
    for h in heads {
        if !h.verifies(key) {
            return Err(HeadError::BadSignature {
                seq: h.seq,
                key_id: key.key_id.clone(),
            });
        }
        if h.seq == 0 {
            // The genesis head: signed when the chain was empty.
            if h.hash != crate::audit::GENESIS {
                return Err(HeadError::Mismatch { seq: 0 });
            }
            continue;
        }
        let row = usize::try_from(h.seq - 1).ok().and_then(|i| rows.get(i));
        match row {
            None => {
                return Err(HeadError::Beyond {
                    seq: h.seq,
                    rows: rows.len(),
                })
            }
            Some(r) if r.seq != h.seq || r.hash != h.hash => {
                return Err(HeadError::Mismatch { seq: h.seq })
            }
            Some(_) => last = last.max(h.seq),
        }
    }
    Ok(HeadReport {
        heads: heads.len(),
        last_signed: last,
        unsigned_tail: rows.len().saturating_sub(last as usize),
    })
}

/// `FILE.sig`.
pub fn sig_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".sig");
    PathBuf::from(s)
}

/// Writes `FILE.sig` (base64 DER, cosign's `--output-signature` format).
pub fn sign_file(key: &AuditKey, file: &Path) -> Result<PathBuf, SignError> {
    let bytes = std::fs::read(file).map_err(io_err(file))?;
    let sig = sig_path(file);
    keel_cmd::fs::write_atomic(&sig, key.sign(&bytes).as_bytes(), 0o600).map_err(io_err(&sig))?;
    Ok(sig)
}

/// Checks `FILE.sig` against `FILE`.
pub fn verify_file(key: &AuditPub, file: &Path) -> Result<(), SignError> {
    let bytes = std::fs::read(file).map_err(io_err(file))?;
    let sig = sig_path(file);
    let sig_text = std::fs::read_to_string(&sig).map_err(io_err(&sig))?;
    if key.verify(&bytes, &sig_text) {
        Ok(())
    } else {
        Err(SignError::Invalid(format!(
            "{}: the signature {} does not verify against the audit key {} (the file was \
             altered, or signed by another key)",
            file.display(),
            sig.display(),
            key.key_id
        )))
    }
}
