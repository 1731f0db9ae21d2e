//! TPMT_SIGNATURE (Part 2 §11.3.4): parsing, marshalling and software
//! verification against a TPM public key.

use super::public::{Curve, PublicKey, TpmPublic};
use super::wire::{Reader, Writer};
use super::{alg, HashAlg, StructError};
use crate::crypto;

/// A parsed signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TpmSignature {
    /// RSASSA-PKCS1-v1_5.
    RsaSsa {
        /// Hash algorithm.
        hash: HashAlg,
        /// Signature bytes.
        sig: Vec<u8>,
    },
    /// RSASSA-PSS.
    RsaPss {
        /// Hash algorithm.
        hash: HashAlg,
        /// Signature bytes.
        sig: Vec<u8>,
    },
    /// ECDSA.
    Ecdsa {
        /// Hash algorithm.
        hash: HashAlg,
        /// r, big-endian.
        r: Vec<u8>,
        /// s, big-endian.
        s: Vec<u8>,
    },
}

const WHAT: &str = "TPMT_SIGNATURE";

/// Why a signature did not verify.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// The signature structure is malformed.
    #[error(transparent)]
    Struct(#[from] StructError),
    /// The signature's algorithm does not fit the key.
    #[error("signature algorithm does not match the key")]
    AlgorithmMismatch,
    /// The maths says no.
    #[error("signature does not verify")]
    Invalid,
}

impl TpmSignature {
    /// Parses a TPMT_SIGNATURE spanning all of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Self, StructError> {
        let mut r = Reader::new(buf, WHAT);
        let sig_alg = r.u16()?;
        let hash = HashAlg::from_alg(r.u16()?, WHAT, "hash")?;
        let s = match sig_alg {
            alg::RSASSA => TpmSignature::RsaSsa {
                hash,
                sig: r.tpm2b()?.to_vec(),
            },
            alg::RSAPSS => TpmSignature::RsaPss {
                hash,
                sig: r.tpm2b()?.to_vec(),
            },
            alg::ECDSA => TpmSignature::Ecdsa {
                hash,
                r: r.tpm2b()?.to_vec(),
                s: r.tpm2b()?.to_vec(),
            },
            v => {
                return Err(StructError::Unsupported {
                    what: WHAT,
                    field: "sigAlg",
                    value: u32::from(v),
                })
            }
        };
        r.finish()?;
        Ok(s)
    }

    /// Marshals as a TPM does.
    pub fn marshal(&self) -> Vec<u8> {
        let mut v = Vec::new();
        match self {
            TpmSignature::RsaSsa { hash, sig } | TpmSignature::RsaPss { hash, sig } => {
                v.put_u16(if matches!(self, TpmSignature::RsaSsa { .. }) {
                    alg::RSASSA
                } else {
                    alg::RSAPSS
                });
                v.put_u16(hash.alg_id());
                v.put_tpm2b(sig);
            }
            TpmSignature::Ecdsa { hash, r, s } => {
                v.put_u16(alg::ECDSA);
                v.put_u16(hash.alg_id());
                v.put_tpm2b(r);
                v.put_tpm2b(s);
            }
        }
        v
    }

    /// Verifies this signature over `msg` with `key`.
    pub fn verify(&self, key: &TpmPublic, msg: &[u8]) -> Result<(), SignatureError> {
        match (self, &key.key) {
            (TpmSignature::RsaSsa { hash, sig }, PublicKey::Rsa { n, e }) => {
                if let Some(r) = crypto::rsa_pkcs1_verify(*hash, n, &e.to_be_bytes(), sig, msg) {
                    return r.map_err(|()| SignatureError::Invalid);
                }
                let k = key.rsa_key()?;
                let digest = hash.digest(&[msg]);
                let scheme = match hash {
                    HashAlg::Sha256 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
                    HashAlg::Sha384 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
                };
                k.verify(scheme, &digest, sig)
                    .map_err(|_| SignatureError::Invalid)
            }
            (TpmSignature::RsaPss { hash, sig }, PublicKey::Rsa { .. }) => {
                let k = key.rsa_key()?;
                let digest = hash.digest(&[msg]);
                let scheme = match hash {
                    HashAlg::Sha256 => rsa::Pss::new::<sha2::Sha256>(),
                    HashAlg::Sha384 => rsa::Pss::new::<sha2::Sha384>(),
                };
                k.verify(scheme, &digest, sig)
                    .map_err(|_| SignatureError::Invalid)
            }
            (TpmSignature::Ecdsa { hash, r, s }, PublicKey::Ecc { curve, x, y }) => {
                use ecdsa::signature::hazmat::PrehashVerifier;
                let n = curve.coord_size();
                let (r, s) = (left_pad(r, n)?, left_pad(s, n)?);
                let point = crypto::sec1_uncompressed(&left_pad(x, n)?, &left_pad(y, n)?);
                if let Some(res) = crypto::ecdsa_verify_fixed(*curve, *hash, &point, &r, &s, msg) {
                    return res.map_err(|()| SignatureError::Invalid);
                }
                let digest = hash.digest(&[msg]);
                match curve {
                    Curve::P256 => {
                        let vk = p256::ecdsa::VerifyingKey::from(key.p256_key()?);
                        let sig = p256::ecdsa::Signature::from_scalars(
                            *p256::FieldBytes::from_slice(&r),
                            *p256::FieldBytes::from_slice(&s),
                        )
                        .map_err(|_| SignatureError::Invalid)?;
                        vk.verify_prehash(&digest, &sig)
                            .map_err(|_| SignatureError::Invalid)
                    }
                    Curve::P384 => {
                        let vk = p384::ecdsa::VerifyingKey::from(key.p384_key()?);
                        let sig = p384::ecdsa::Signature::from_scalars(
                            *p384::FieldBytes::from_slice(&r),
                            *p384::FieldBytes::from_slice(&s),
                        )
                        .map_err(|_| SignatureError::Invalid)?;
                        vk.verify_prehash(&digest, &sig)
                            .map_err(|_| SignatureError::Invalid)
                    }
                }
            }
            _ => Err(SignatureError::AlgorithmMismatch),
        }
    }
}

/// Left-pads a big-endian integer to `n` bytes (TPMs may drop leading zeros).
fn left_pad(v: &[u8], n: usize) -> Result<Vec<u8>, SignatureError> {
    let v = {
        let first = v.iter().position(|b| *b != 0).unwrap_or(v.len());
        &v[first..]
    };
    if v.len() > n {
        return Err(SignatureError::Invalid);
    }
    let mut out = vec![0u8; n - v.len()];
    out.extend_from_slice(v);
    Ok(out)
}
