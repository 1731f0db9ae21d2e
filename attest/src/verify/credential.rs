//! TPM2_MakeCredential in software (TPM 2.0 Part 1 §24, Part 3 §12.6): wraps
//! a secret so that only the TPM holding the EK can recover it, and only for
//! an object with the given name (the AK). What `tpm2_makecredential` does,
//! without a TPM.

use aes::cipher::{AsyncStreamCipher as _, KeyIvInit as _};
use hmac::{Hmac, Mac};
use rand::{CryptoRng, RngCore};

use crate::tpm2::public::{PublicKey, TpmPublic};
use crate::tpm2::wire::Writer;
use crate::tpm2::{alg, HashAlg, StructError};

/// The two blobs TPM2_ActivateCredential takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// TPM2B_ID_OBJECT contents: TPM2B(integrityHMAC) || encIdentity.
    pub id_object: Vec<u8>,
    /// TPM2B_ENCRYPTED_SECRET contents: the seed, encrypted to the EK.
    pub encrypted_secret: Vec<u8>,
}

/// MakeCredential failed.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The EK public area is not a storage key Keel can wrap for.
    #[error("EK is not a usable storage key: {0}")]
    Ek(String),
    /// Bad EK structure.
    #[error(transparent)]
    Struct(#[from] StructError),
    /// The secret is too long for the EK's name algorithm.
    #[error("credential of {0} bytes is longer than the EK's name digest")]
    SecretTooLong(usize),
}

/// KDFa (Part 1 §11.4.10.2) with HMAC-`hash`.
pub fn kdfa(
    hash: HashAlg,
    key: &[u8],
    label: &[u8],
    ctx_u: &[u8],
    ctx_v: &[u8],
    bits: u32,
) -> Vec<u8> {
    let bytes = (bits as usize).div_ceil(8);
    let mut out = Vec::with_capacity(bytes + 48);
    let mut counter: u32 = 1;
    while out.len() < bytes {
        let mut parts: Vec<&[u8]> = Vec::new();
        let c = counter.to_be_bytes();
        let b = bits.to_be_bytes();
        parts.push(&c);
        parts.push(label);
        parts.push(&[0]);
        parts.push(ctx_u);
        parts.push(ctx_v);
        parts.push(&b);
        out.extend_from_slice(&hmac(hash, key, &parts));
        counter += 1;
    }
    out.truncate(bytes);
    out
}

/// KDFe (Part 1 §11.4.10.3) with `hash`.
pub fn kdfe(
    hash: HashAlg,
    z: &[u8],
    label: &[u8],
    party_u: &[u8],
    party_v: &[u8],
    bits: u32,
) -> Vec<u8> {
    let bytes = (bits as usize).div_ceil(8);
    let mut out = Vec::with_capacity(bytes + 48);
    let mut counter: u32 = 1;
    while out.len() < bytes {
        let c = counter.to_be_bytes();
        out.extend_from_slice(&hash.digest(&[&c, z, label, &[0], party_u, party_v]));
        counter += 1;
    }
    out.truncate(bytes);
    out
}

fn hmac(hash: HashAlg, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    macro_rules! run {
        ($h:ty) => {{
            // HMAC takes keys of any length.
            let mut m = <Hmac<$h> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
            parts.iter().for_each(|p| m.update(p));
            m.finalize().into_bytes().to_vec()
        }};
    }
    match hash {
        HashAlg::Sha256 => run!(sha2::Sha256),
        HashAlg::Sha384 => run!(sha2::Sha384),
    }
}

/// Wraps `secret` for the object named `ak_name` under `ek`.
pub fn make_credential<R: RngCore + CryptoRng>(
    ek: &TpmPublic,
    ak_name: &[u8],
    secret: &[u8],
    rng: &mut R,
) -> Result<Credential, CredentialError> {
    let h = ek.name_alg;
    if secret.len() > h.size() {
        return Err(CredentialError::SecretTooLong(secret.len()));
    }
    let sym = ek
        .symmetric
        .filter(|s| {
            s.alg == alg::AES && s.mode == alg::CFB && (s.key_bits == 128 || s.key_bits == 256)
        })
        .ok_or_else(|| CredentialError::Ek("EK symmetric algorithm is not AES-CFB".into()))?;
    if !ek.has(crate::tpm2::public::attr::RESTRICTED | crate::tpm2::public::attr::DECRYPT) {
        return Err(CredentialError::Ek(
            "EK is not a restricted decryption key".into(),
        ));
    }
    let seed_bits = u32::try_from(h.size() * 8).unwrap_or(256);
    let (seed, encrypted_secret) = match &ek.key {
        PublicKey::Rsa { .. } => {
            let mut seed = vec![0u8; h.size()];
            rng.fill_bytes(&mut seed);
            let key = ek.rsa_key()?;
            let padding = match h {
                HashAlg::Sha256 => rsa::Oaep::new_with_label::<sha2::Sha256, _>("IDENTITY\0"),
                HashAlg::Sha384 => rsa::Oaep::new_with_label::<sha2::Sha384, _>("IDENTITY\0"),
            };
            let enc = key
                .encrypt(rng, padding, &seed)
                .map_err(|e| CredentialError::Ek(format!("RSA-OAEP: {e}")))?;
            (seed, enc)
        }
        PublicKey::Ecc { x, .. } => {
            let (z, ex, ey) = ecdh(ek, rng)?;
            let seed = kdfe(h, &z, b"IDENTITY", &ex, x, seed_bits);
            let mut point = Vec::new();
            point.put_tpm2b(&ex);
            point.put_tpm2b(&ey);
            (seed, point)
        }
    };
    // encIdentity = CFB(symKey, IV = 0, TPM2B_DIGEST(secret))
    let sym_key = kdfa(h, &seed, b"STORAGE", ak_name, &[], u32::from(sym.key_bits));
    let mut enc_identity = Vec::with_capacity(secret.len() + 2);
    enc_identity.put_tpm2b(secret);
    let iv = [0u8; 16];
    match sym.key_bits {
        128 => cfb_mode::Encryptor::<aes::Aes128>::new_from_slices(&sym_key, &iv)
            .map_err(|_| CredentialError::Ek("AES key length".into()))?
            .encrypt(&mut enc_identity),
        _ => cfb_mode::Encryptor::<aes::Aes256>::new_from_slices(&sym_key, &iv)
            .map_err(|_| CredentialError::Ek("AES key length".into()))?
            .encrypt(&mut enc_identity),
    }
    let hmac_key = kdfa(h, &seed, b"INTEGRITY", &[], &[], seed_bits);
    let outer_hmac = hmac(h, &hmac_key, &[&enc_identity, ak_name]);
    let mut id_object = Vec::with_capacity(2 + outer_hmac.len() + enc_identity.len());
    id_object.put_tpm2b(&outer_hmac);
    id_object.extend_from_slice(&enc_identity);
    Ok(Credential {
        id_object,
        encrypted_secret,
    })
}

/// Shared secret Z, ephemeral x, ephemeral y.
type Ecdh = (Vec<u8>, Vec<u8>, Vec<u8>);

fn ecdh<R: RngCore + CryptoRng>(ek: &TpmPublic, _rng: &mut R) -> Result<Ecdh, CredentialError> {
    let PublicKey::Ecc { curve, x, y } = &ek.key else {
        return Err(CredentialError::Ek("EK is not an ECC key".into()));
    };
    let n = curve.coord_size();
    if x.len() > n || y.len() > n {
        return Err(CredentialError::Ek(
            "EK point coordinates are too long".into(),
        ));
    }
    let pad = |v: &[u8]| {
        let mut out = vec![0u8; n - v.len()];
        out.extend_from_slice(v);
        out
    };
    let point = crate::crypto::sec1_uncompressed(&pad(x), &pad(y));
    crate::crypto::ecdh_ephemeral(*curve, &point).map_err(CredentialError::Ek)
}
