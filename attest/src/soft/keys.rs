//! The simulated EK and AK: TCG default EK templates (L-1 RSA-2048, L-2 ECC
//! P-256) and the AK template tss-esapi uses (restricted ECDSA/RSASSA
//! SHA-256 signing key), with software private keys.

use std::collections::BTreeMap;

use aes::cipher::{AsyncStreamCipher as _, KeyIvInit as _};
use hmac::{Hmac, Mac};
use rand::{CryptoRng, RngCore};
use subtle::ConstantTimeEq;

use super::SoftError;
use crate::tpm2::attest::{PcrSelect, QuoteAttest};
use crate::tpm2::public::attr;
use crate::tpm2::signature::TpmSignature;
use crate::tpm2::wire::{Reader, Writer};
use crate::tpm2::{alg, curve, HashAlg, TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE};
use crate::verify::credential::{kdfa, kdfe};

/// PolicySecret(TPM_RH_ENDORSEMENT) digest, SHA-256 (TCG EK profile policy A).
const POLICY_A_SHA256: [u8; 32] = [
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
    0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
];

/// EK attributes of the default templates.
pub const EK_ATTRIBUTES: u32 = attr::FIXED_TPM
    | attr::FIXED_PARENT
    | attr::SENSITIVE_DATA_ORIGIN
    | attr::ADMIN_WITH_POLICY
    | attr::RESTRICTED
    | attr::DECRYPT;
/// AK attributes (as tss-esapi's `create_ak`).
pub const AK_ATTRIBUTES: u32 = attr::FIXED_TPM
    | attr::FIXED_PARENT
    | attr::SENSITIVE_DATA_ORIGIN
    | attr::USER_WITH_AUTH
    | attr::RESTRICTED
    | attr::SIGN;

#[derive(Clone)]
enum Key {
    Rsa(Box<rsa::RsaPrivateKey>),
    P256(P256Key),
}

/// A P-256 key with its public point computed once (deriving it is a scalar
/// multiplication) and a ring signer for fast quotes.
#[derive(Clone)]
struct P256Key {
    secret: p256::SecretKey,
    /// Uncompressed SEC1 point.
    point: Vec<u8>,
    signer: std::sync::Arc<ring::signature::EcdsaKeyPair>,
}

impl P256Key {
    fn random<R: RngCore + CryptoRng>(rng: &mut R) -> P256Key {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let secret = p256::SecretKey::random(rng);
        let point = secret
            .public_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        let signer = ring::signature::EcdsaKeyPair::from_private_key_and_public_key(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &secret.to_bytes(),
            &point,
            &ring::rand::SystemRandom::new(),
        )
        .unwrap_or_else(|_| unreachable!("a fresh P-256 key pair is consistent"));
        P256Key {
            secret,
            point,
            signer: std::sync::Arc::new(signer),
        }
    }

    fn x(&self) -> &[u8] {
        &self.point[1..33]
    }

    fn y(&self) -> &[u8] {
        &self.point[33..]
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Key::Rsa(_) => "Rsa(..)",
            Key::P256(_) => "P256(..)",
        })
    }
}

fn rsa_key<R: RngCore + CryptoRng>(rng: &mut R) -> Result<Key, SoftError> {
    rsa::RsaPrivateKey::new(rng, 2048)
        .map(|k| Key::Rsa(Box::new(k)))
        .map_err(|e| SoftError::Key(e.to_string()))
}

/// Marshals a TPMT_PUBLIC for `key` with the given template fields.
fn tpmt_public(
    key: &Key,
    attributes: u32,
    policy: &[u8],
    storage: bool,
    sign_scheme: u16,
) -> Vec<u8> {
    use rsa::traits::PublicKeyParts;
    let mut v = Vec::new();
    v.put_u16(match key {
        Key::Rsa(_) => alg::RSA,
        Key::P256(_) => alg::ECC,
    });
    v.put_u16(alg::SHA256);
    v.put_u32(attributes);
    v.put_tpm2b(policy);
    if storage {
        v.put_u16(alg::AES);
        v.put_u16(128);
        v.put_u16(alg::CFB);
    } else {
        v.put_u16(alg::NULL);
    }
    if sign_scheme == alg::NULL {
        v.put_u16(alg::NULL);
    } else {
        v.put_u16(sign_scheme);
        v.put_u16(alg::SHA256);
    }
    match key {
        Key::Rsa(k) => {
            v.put_u16(2048);
            v.put_u32(0);
            v.put_tpm2b(&k.n().to_bytes_be());
        }
        Key::P256(k) => {
            v.put_u16(curve::NIST_P256);
            v.put_u16(alg::NULL);
            v.put_tpm2b(k.x());
            v.put_tpm2b(k.y());
        }
    }
    v
}

fn name_of(tpmt: &[u8]) -> Vec<u8> {
    let mut n = Vec::new();
    n.put_u16(alg::SHA256);
    n.extend_from_slice(&HashAlg::Sha256.digest(&[tpmt]));
    n
}

fn tpm2b(tpmt: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.put_tpm2b(tpmt);
    v
}

/// A simulated endorsement key.
#[derive(Debug, Clone)]
pub struct SoftEk {
    key: Key,
}

impl SoftEk {
    /// ECC P-256 (template L-2).
    pub fn new_p256<R: RngCore + CryptoRng>(rng: &mut R) -> SoftEk {
        SoftEk {
            key: Key::P256(P256Key::random(rng)),
        }
    }

    /// RSA-2048 (template L-1).
    pub fn new_rsa<R: RngCore + CryptoRng>(rng: &mut R) -> Result<SoftEk, SoftError> {
        Ok(SoftEk { key: rsa_key(rng)? })
    }

    /// TPMT_PUBLIC.
    pub fn public_tpmt(&self) -> Vec<u8> {
        tpmt_public(&self.key, EK_ATTRIBUTES, &POLICY_A_SHA256, true, alg::NULL)
    }

    /// TPM2B_PUBLIC.
    pub fn public_tpm2b(&self) -> Vec<u8> {
        tpm2b(&self.public_tpmt())
    }

    /// TPM2_ActivateCredential in software: unwraps the seed with the EK,
    /// checks the integrity HMAC over the object name, decrypts the secret.
    pub fn activate_credential(
        &self,
        name: &[u8],
        id_object: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Vec<u8>, SoftError> {
        use p256::elliptic_curve::sec1::FromEncodedPoint;
        let fail = |m: &str| SoftError::Activation(m.to_string());
        let seed = match &self.key {
            Key::Rsa(k) => k
                .decrypt(
                    rsa::Oaep::new_with_label::<sha2::Sha256, _>("IDENTITY\0"),
                    encrypted_secret,
                )
                .map_err(|_| fail("seed does not decrypt"))?,
            Key::P256(k) => {
                let mut r = Reader::new(encrypted_secret, "TPMS_ECC_POINT");
                let x = r.tpm2b().map_err(|e| fail(&e.to_string()))?;
                let y = r.tpm2b().map_err(|e| fail(&e.to_string()))?;
                if x.len() != 32 || y.len() != 32 {
                    return Err(fail("bad ephemeral point"));
                }
                let pt = p256::EncodedPoint::from_affine_coordinates(
                    p256::FieldBytes::from_slice(x),
                    p256::FieldBytes::from_slice(y),
                    false,
                );
                let pk: p256::PublicKey = Option::from(p256::PublicKey::from_encoded_point(&pt))
                    .ok_or_else(|| fail("point not on curve"))?;
                let z = p256::ecdh::diffie_hellman(k.secret.to_nonzero_scalar(), pk.as_affine());
                kdfe(
                    HashAlg::Sha256,
                    z.raw_secret_bytes(),
                    b"IDENTITY",
                    x,
                    k.x(),
                    256,
                )
            }
        };
        let mut r = Reader::new(id_object, "TPM2B_ID_OBJECT");
        let outer = r.tpm2b().map_err(|e| fail(&e.to_string()))?;
        let enc = id_object.get(r.pos()..).unwrap_or(&[]);
        let hmac_key = kdfa(HashAlg::Sha256, &seed, b"INTEGRITY", &[], &[], 256);
        let mut m =
            <Hmac<sha2::Sha256> as Mac>::new_from_slice(&hmac_key).map_err(|_| fail("hmac key"))?;
        m.update(enc);
        m.update(name);
        let expect = m.finalize().into_bytes();
        if !bool::from(expect.as_slice().ct_eq(outer)) {
            return Err(fail("integrity check failed (TPM_RC_INTEGRITY)"));
        }
        let sym = kdfa(HashAlg::Sha256, &seed, b"STORAGE", name, &[], 128);
        let mut plain = enc.to_vec();
        cfb_mode::Decryptor::<aes::Aes128>::new_from_slices(&sym, &[0u8; 16])
            .map_err(|_| fail("aes key"))?
            .decrypt(&mut plain);
        let mut r = Reader::new(&plain, "TPM2B_DIGEST");
        let secret = r.tpm2b().map_err(|e| fail(&e.to_string()))?.to_vec();
        r.finish().map_err(|e| fail(&e.to_string()))?;
        Ok(secret)
    }
}

/// A simulated attestation key.
#[derive(Debug, Clone)]
pub struct SoftAk {
    key: Key,
    /// objectAttributes to publish (default [`AK_ATTRIBUTES`]); change it to
    /// craft keys a verifier must refuse.
    pub attributes: u32,
}

impl SoftAk {
    /// ECDSA P-256.
    pub fn new_p256<R: RngCore + CryptoRng>(rng: &mut R) -> SoftAk {
        SoftAk {
            key: Key::P256(P256Key::random(rng)),
            attributes: AK_ATTRIBUTES,
        }
    }

    /// RSASSA RSA-2048.
    pub fn new_rsa<R: RngCore + CryptoRng>(rng: &mut R) -> Result<SoftAk, SoftError> {
        Ok(SoftAk {
            key: rsa_key(rng)?,
            attributes: AK_ATTRIBUTES,
        })
    }

    /// TPMT_PUBLIC.
    pub fn public_tpmt(&self) -> Vec<u8> {
        let scheme = match self.key {
            Key::Rsa(_) => alg::RSASSA,
            Key::P256(_) => alg::ECDSA,
        };
        tpmt_public(&self.key, self.attributes, &[], false, scheme)
    }

    /// TPM2B_PUBLIC.
    pub fn public_tpm2b(&self) -> Vec<u8> {
        tpm2b(&self.public_tpmt())
    }

    /// The name (SHA-256 name algorithm).
    pub fn name(&self) -> Vec<u8> {
        name_of(&self.public_tpmt())
    }

    /// Signs `msg` and returns a marshalled TPMT_SIGNATURE (what the TPM
    /// would return; a real restricted key only signs TPM-generated data).
    pub fn sign<R: RngCore + CryptoRng>(
        &self,
        msg: &[u8],
        rng: &mut R,
    ) -> Result<Vec<u8>, SoftError> {
        let digest = HashAlg::Sha256.digest(&[msg]);
        let sig = match &self.key {
            Key::Rsa(k) => TpmSignature::RsaSsa {
                hash: HashAlg::Sha256,
                sig: k
                    .sign_with_rng(rng, rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest)
                    .map_err(|e| SoftError::Key(e.to_string()))?,
            },
            Key::P256(k) => {
                // ring signs SHA-256(msg), the digest a TPM signs for a quote.
                let sig = k
                    .signer
                    .sign(&ring::rand::SystemRandom::new(), msg)
                    .map_err(|_| SoftError::Key("ECDSA signing failed".into()))?;
                let (r, s) = sig.as_ref().split_at(32);
                TpmSignature::Ecdsa {
                    hash: HashAlg::Sha256,
                    r: r.to_vec(),
                    s: s.to_vec(),
                }
            }
        };
        Ok(sig.marshal())
    }

    /// A quote structure over `pcrs` with `qualifying_data`, unsigned (to
    /// modify before [`SoftAk::sign`] when crafting adversarial quotes).
    pub fn quote_attest(
        &self,
        qualifying_data: &[u8],
        pcrs: &BTreeMap<u8, Vec<u8>>,
    ) -> QuoteAttest {
        let parts: Vec<&[u8]> = pcrs.values().map(Vec::as_slice).collect();
        QuoteAttest {
            magic: TPM_GENERATED_VALUE,
            attest_type: TPM_ST_ATTEST_QUOTE,
            qualified_signer: self.name(),
            extra_data: qualifying_data.to_vec(),
            clock: 1_000_000,
            reset_count: 0,
            restart_count: 0,
            safe: 1,
            firmware_version: 0x2023_0101_0000_0000,
            pcr_select: vec![PcrSelect {
                hash: alg::SHA256,
                pcrs: pcrs.keys().copied().collect(),
            }],
            pcr_digest: HashAlg::Sha256.digest(&parts),
        }
    }

    /// TPM2_Quote: (TPMS_ATTEST, TPMT_SIGNATURE) marshalled.
    pub fn quote<R: RngCore + CryptoRng>(
        &self,
        qualifying_data: &[u8],
        pcrs: &BTreeMap<u8, Vec<u8>>,
        rng: &mut R,
    ) -> Result<(Vec<u8>, Vec<u8>), SoftError> {
        let attest = self.quote_attest(qualifying_data, pcrs).marshal();
        let sig = self.sign(&attest, rng)?;
        Ok((attest, sig))
    }
}
