//! TPMT_PUBLIC / TPM2B_PUBLIC: parsing, the object name, attribute checks
//! and conversion of the key to software crypto types.

use super::wire::{Reader, Writer};
use super::{alg, curve, HashAlg, StructError};

/// TPMA_OBJECT bits (Part 2 §8.3).
pub mod attr {
    /// fixedTPM
    pub const FIXED_TPM: u32 = 1 << 1;
    /// stClear
    pub const ST_CLEAR: u32 = 1 << 2;
    /// fixedParent
    pub const FIXED_PARENT: u32 = 1 << 4;
    /// sensitiveDataOrigin
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    /// userWithAuth
    pub const USER_WITH_AUTH: u32 = 1 << 6;
    /// adminWithPolicy
    pub const ADMIN_WITH_POLICY: u32 = 1 << 7;
    /// noDA
    pub const NO_DA: u32 = 1 << 10;
    /// encryptedDuplication
    pub const ENCRYPTED_DUPLICATION: u32 = 1 << 11;
    /// restricted
    pub const RESTRICTED: u32 = 1 << 16;
    /// decrypt
    pub const DECRYPT: u32 = 1 << 17;
    /// sign / encrypt
    pub const SIGN: u32 = 1 << 18;
}

/// An elliptic curve Keel supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// NIST P-256
    P256,
    /// NIST P-384
    P384,
}

impl Curve {
    /// Coordinate size in bytes.
    pub fn coord_size(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }
    /// TPM_ECC_CURVE value.
    pub fn tpm_id(self) -> u16 {
        match self {
            Curve::P256 => curve::NIST_P256,
            Curve::P384 => curve::NIST_P384,
        }
    }
}

/// The public key of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// RSA: modulus (big-endian) and exponent (0 in the TPM means 65537; stored resolved).
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: u32,
    },
    /// ECC point, coordinates as the TPM gives them.
    Ecc {
        /// Curve.
        curve: Curve,
        /// X coordinate.
        x: Vec<u8>,
        /// Y coordinate.
        y: Vec<u8>,
    },
}

/// A symmetric definition (TPMT_SYM_DEF_OBJECT); NULL is `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymDef {
    /// Algorithm (AES).
    pub alg: u16,
    /// Key size in bits.
    pub key_bits: u16,
    /// Mode (CFB).
    pub mode: u16,
}

/// A parsed TPMT_PUBLIC, keeping the exact bytes it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmPublic {
    /// The marshalled TPMT_PUBLIC (without the TPM2B size).
    pub raw: Vec<u8>,
    /// nameAlg
    pub name_alg: HashAlg,
    /// objectAttributes
    pub attributes: u32,
    /// authPolicy
    pub auth_policy: Vec<u8>,
    /// Symmetric definition for storage keys.
    pub symmetric: Option<SymDef>,
    /// Signing/encryption scheme (TPM_ALG_ID, NULL when none) and its hash (NULL when none).
    pub scheme: (u16, u16),
    /// RSA key bits (0 for ECC).
    pub rsa_bits: u16,
    /// The key.
    pub key: PublicKey,
}

const WHAT: &str = "TPMT_PUBLIC";

fn unsupported(field: &'static str, value: u16) -> StructError {
    StructError::Unsupported {
        what: WHAT,
        field,
        value: u32::from(value),
    }
}

impl TpmPublic {
    /// Parses a TPM2B_PUBLIC (u16 size + TPMT_PUBLIC); the size must match.
    pub fn from_tpm2b(buf: &[u8]) -> Result<Self, StructError> {
        let mut r = Reader::new(buf, "TPM2B_PUBLIC");
        let inner = r.tpm2b()?;
        r.finish()?;
        Self::from_tpmt(inner)
    }

    /// Parses a TPMT_PUBLIC that must span all of `buf`.
    pub fn from_tpmt(buf: &[u8]) -> Result<Self, StructError> {
        let mut r = Reader::new(buf, WHAT);
        let ty = r.u16()?;
        let name_alg = HashAlg::from_alg(r.u16()?, WHAT, "nameAlg")?;
        let attributes = r.u32()?;
        let auth_policy = r.tpm2b()?.to_vec();
        let symmetric = read_sym(&mut r)?;
        let (scheme, key, rsa_bits) = match ty {
            alg::RSA => {
                let scheme = read_scheme(&mut r)?;
                let bits = r.u16()?;
                let e = match r.u32()? {
                    0 => 65537,
                    e => e,
                };
                let n = r.tpm2b()?.to_vec();
                if n.len() * 8 != usize::from(bits) {
                    return Err(StructError::Invalid {
                        what: WHAT,
                        detail: format!("RSA modulus is {} bytes for keyBits {bits}", n.len()),
                    });
                }
                (scheme, PublicKey::Rsa { n, e }, bits)
            }
            alg::ECC => {
                let scheme = read_scheme(&mut r)?;
                let c = match r.u16()? {
                    curve::NIST_P256 => Curve::P256,
                    curve::NIST_P384 => Curve::P384,
                    v => return Err(unsupported("curveID", v)),
                };
                let kdf = r.u16()?;
                if kdf != alg::NULL {
                    r.u16()?;
                }
                let x = r.tpm2b()?.to_vec();
                let y = r.tpm2b()?.to_vec();
                if x.len() != c.coord_size() || y.len() != c.coord_size() {
                    return Err(StructError::Invalid {
                        what: WHAT,
                        detail: format!("ECC point coordinates of {}/{} bytes", x.len(), y.len()),
                    });
                }
                (scheme, PublicKey::Ecc { curve: c, x, y }, 0)
            }
            v => return Err(unsupported("type", v)),
        };
        r.finish()?;
        Ok(TpmPublic {
            raw: buf.to_vec(),
            name_alg,
            attributes,
            auth_policy,
            symmetric,
            scheme,
            rsa_bits,
            key,
        })
    }

    /// The object's name: nameAlg (u16) || H_nameAlg(TPMT_PUBLIC).
    pub fn name(&self) -> Vec<u8> {
        let mut n = Vec::with_capacity(2 + self.name_alg.size());
        n.put_u16(self.name_alg.alg_id());
        n.extend_from_slice(&self.name_alg.digest(&[&self.raw]));
        n
    }

    /// The marshalled TPM2B_PUBLIC.
    pub fn to_tpm2b(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.raw.len() + 2);
        v.put_tpm2b(&self.raw);
        v
    }

    /// True when every bit of `mask` is set.
    pub fn has(&self, mask: u32) -> bool {
        self.attributes & mask == mask
    }

    /// The key as a DER SubjectPublicKeyInfo (what `openssl pkey -pubin
    /// -outform DER` prints), e.g. for fingerprints and certificate comparison.
    pub fn spki_der(&self) -> Result<Vec<u8>, StructError> {
        use p256::pkcs8::EncodePublicKey;
        let bad = |detail: String| StructError::Invalid { what: WHAT, detail };
        let doc = match &self.key {
            PublicKey::Rsa { .. } => self.rsa_key()?.to_public_key_der(),
            PublicKey::Ecc {
                curve: Curve::P256, ..
            } => self.p256_key()?.to_public_key_der(),
            PublicKey::Ecc {
                curve: Curve::P384, ..
            } => self.p384_key()?.to_public_key_der(),
        };
        doc.map(|d| d.as_bytes().to_vec())
            .map_err(|e| bad(e.to_string()))
    }

    /// The RSA key.
    pub fn rsa_key(&self) -> Result<rsa::RsaPublicKey, StructError> {
        match &self.key {
            PublicKey::Rsa { n, e } => {
                rsa::RsaPublicKey::new(rsa::BigUint::from_bytes_be(n), rsa::BigUint::from(*e))
                    .map_err(|e| StructError::Invalid {
                        what: WHAT,
                        detail: format!("RSA key: {e}"),
                    })
            }
            PublicKey::Ecc { .. } => Err(unsupported("type (want RSA)", alg::ECC)),
        }
    }

    /// The P-256 key.
    pub fn p256_key(&self) -> Result<p256::PublicKey, StructError> {
        match &self.key {
            PublicKey::Ecc {
                curve: Curve::P256,
                x,
                y,
            } => {
                let pt = p256::EncodedPoint::from_affine_coordinates(
                    p256::FieldBytes::from_slice(x),
                    p256::FieldBytes::from_slice(y),
                    false,
                );
                Option::from(p256::PublicKey::from_encoded_point(&pt)).ok_or(StructError::Invalid {
                    what: WHAT,
                    detail: "ECC point is not on P-256".into(),
                })
            }
            _ => Err(unsupported("curve (want P-256)", 0)),
        }
    }

    /// The P-384 key.
    pub fn p384_key(&self) -> Result<p384::PublicKey, StructError> {
        match &self.key {
            PublicKey::Ecc {
                curve: Curve::P384,
                x,
                y,
            } => {
                let pt = p384::EncodedPoint::from_affine_coordinates(
                    p384::FieldBytes::from_slice(x),
                    p384::FieldBytes::from_slice(y),
                    false,
                );
                Option::from(p384::PublicKey::from_encoded_point(&pt)).ok_or(StructError::Invalid {
                    what: WHAT,
                    detail: "ECC point is not on P-384".into(),
                })
            }
            _ => Err(unsupported("curve (want P-384)", 0)),
        }
    }
}

fn read_sym(r: &mut Reader<'_>) -> Result<Option<SymDef>, StructError> {
    let a = r.u16()?;
    if a == alg::NULL {
        return Ok(None);
    }
    if a != alg::AES {
        return Err(unsupported("symmetric.algorithm", a));
    }
    Ok(Some(SymDef {
        alg: a,
        key_bits: r.u16()?,
        mode: r.u16()?,
    }))
}

fn read_scheme(r: &mut Reader<'_>) -> Result<(u16, u16), StructError> {
    let s = r.u16()?;
    match s {
        alg::NULL | alg::RSAES => Ok((s, alg::NULL)),
        alg::ECDAA => {
            let h = r.u16()?;
            r.u16()?;
            Ok((s, h))
        }
        alg::RSASSA | alg::RSAPSS | alg::OAEP | alg::ECDSA | alg::ECDH | alg::ECSCHNORR => {
            Ok((s, r.u16()?))
        }
        v => Err(unsupported("scheme", v)),
    }
}

use p256::elliptic_curve::sec1::FromEncodedPoint as _;
