//! Pure-software parsing and construction of the TPM 2.0 structures Keel
//! exchanges (TPM 2.0 Part 2): public areas (TPMT_PUBLIC), attestation
//! structures (TPMS_ATTEST) and signatures (TPMT_SIGNATURE). Used by the
//! verifier (no TPM needed) and by the software signer.

pub mod attest;
pub mod public;
pub mod signature;
pub mod wire;

/// TPM_ALG_ID values used here.
pub mod alg {
    /// TPM_ALG_RSA
    pub const RSA: u16 = 0x0001;
    /// TPM_ALG_SHA1
    pub const SHA1: u16 = 0x0004;
    /// TPM_ALG_HMAC
    pub const HMAC: u16 = 0x0005;
    /// TPM_ALG_AES
    pub const AES: u16 = 0x0006;
    /// TPM_ALG_KEYEDHASH
    pub const KEYEDHASH: u16 = 0x0008;
    /// TPM_ALG_SHA256
    pub const SHA256: u16 = 0x000B;
    /// TPM_ALG_SHA384
    pub const SHA384: u16 = 0x000C;
    /// TPM_ALG_SHA512
    pub const SHA512: u16 = 0x000D;
    /// TPM_ALG_NULL
    pub const NULL: u16 = 0x0010;
    /// TPM_ALG_RSASSA
    pub const RSASSA: u16 = 0x0014;
    /// TPM_ALG_RSAES
    pub const RSAES: u16 = 0x0015;
    /// TPM_ALG_RSAPSS
    pub const RSAPSS: u16 = 0x0016;
    /// TPM_ALG_OAEP
    pub const OAEP: u16 = 0x0017;
    /// TPM_ALG_ECDSA
    pub const ECDSA: u16 = 0x0018;
    /// TPM_ALG_ECDH
    pub const ECDH: u16 = 0x0019;
    /// TPM_ALG_ECDAA
    pub const ECDAA: u16 = 0x001A;
    /// TPM_ALG_ECSCHNORR
    pub const ECSCHNORR: u16 = 0x001C;
    /// TPM_ALG_ECC
    pub const ECC: u16 = 0x0023;
    /// TPM_ALG_SYMCIPHER
    pub const SYMCIPHER: u16 = 0x0025;
    /// TPM_ALG_CFB
    pub const CFB: u16 = 0x0043;
}

/// TPM_ECC_CURVE values.
pub mod curve {
    /// TPM_ECC_NIST_P256
    pub const NIST_P256: u16 = 0x0003;
    /// TPM_ECC_NIST_P384
    pub const NIST_P384: u16 = 0x0004;
}

/// TPM_GENERATED_VALUE: the magic every TPM-made attestation starts with.
pub const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
/// TPM_ST_ATTEST_QUOTE
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;

/// A structure could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StructError {
    /// Input ended early.
    #[error("{what} is truncated at byte {at}")]
    Truncated {
        /// Structure name.
        what: &'static str,
        /// Offset where more bytes were needed.
        at: usize,
    },
    /// Bytes left over after the structure.
    #[error("{what} has {extra} trailing bytes")]
    TrailingBytes {
        /// Structure name.
        what: &'static str,
        /// Count.
        extra: usize,
    },
    /// A field holds a value Keel does not support or that is invalid.
    #[error("{what}: unsupported or invalid {field} 0x{value:04x}")]
    Unsupported {
        /// Structure name.
        what: &'static str,
        /// Field name.
        field: &'static str,
        /// Value found.
        value: u32,
    },
    /// A size field contradicts the content.
    #[error("{what}: {detail}")]
    Invalid {
        /// Structure name.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
}

/// Hash algorithms Keel accepts as name/quote algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlg {
    /// SHA-256
    Sha256,
    /// SHA-384
    Sha384,
}

impl HashAlg {
    /// From a TPM_ALG_ID.
    pub fn from_alg(v: u16, what: &'static str, field: &'static str) -> Result<Self, StructError> {
        match v {
            alg::SHA256 => Ok(HashAlg::Sha256),
            alg::SHA384 => Ok(HashAlg::Sha384),
            _ => Err(StructError::Unsupported {
                what,
                field,
                value: u32::from(v),
            }),
        }
    }

    /// The TPM_ALG_ID.
    pub fn alg_id(self) -> u16 {
        match self {
            HashAlg::Sha256 => alg::SHA256,
            HashAlg::Sha384 => alg::SHA384,
        }
    }

    /// Digest size in bytes.
    pub fn size(self) -> usize {
        match self {
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
        }
    }

    /// Hashes the concatenation of `parts`.
    pub fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        use sha2::Digest;
        match self {
            HashAlg::Sha256 => {
                let mut h = sha2::Sha256::new();
                parts.iter().for_each(|p| h.update(p));
                h.finalize().to_vec()
            }
            HashAlg::Sha384 => {
                let mut h = sha2::Sha384::new();
                parts.iter().for_each(|p| h.update(p));
                h.finalize().to_vec()
            }
        }
    }
}
