//! The public-key operations on the verifier's hot path, done with `ring`
//! (constant-time, assembly-backed P-256/P-384 and RSA), which is several
//! times faster than the pure-Rust `p256`/`rsa` crates: the service's side of
//! an enrollment is two ECDSA verifications (EK certificate, quote) and one
//! ECDH (MakeCredential), see `keel-enroll-bench` in docs/enrollment.md. The
//! combinations ring does not offer (ECDSA with a hash
//! that does not match the curve, RSA keys under 2048 bits) return `None`
//! and the caller uses the pure-Rust path; a `Some(Err)` is a final "no".

use ring::agreement;
use ring::rand::SystemRandom;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey, VerificationAlgorithm};

use crate::tpm2::public::Curve;
use crate::tpm2::HashAlg;

/// An uncompressed SEC1 point, `04 ‖ x ‖ y`.
pub fn sec1_uncompressed(x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(1 + x.len() + y.len());
    p.push(4);
    p.extend_from_slice(x);
    p.extend_from_slice(y);
    p
}

fn ecdsa_fixed(curve: Curve, hash: HashAlg) -> Option<&'static dyn VerificationAlgorithm> {
    match (curve, hash) {
        (Curve::P256, HashAlg::Sha256) => Some(&signature::ECDSA_P256_SHA256_FIXED),
        (Curve::P384, HashAlg::Sha384) => Some(&signature::ECDSA_P384_SHA384_FIXED),
        _ => None,
    }
}

fn ecdsa_asn1(curve: Curve, hash: HashAlg) -> &'static dyn VerificationAlgorithm {
    match (curve, hash) {
        (Curve::P256, HashAlg::Sha256) => &signature::ECDSA_P256_SHA256_ASN1,
        (Curve::P256, HashAlg::Sha384) => &signature::ECDSA_P256_SHA384_ASN1,
        (Curve::P384, HashAlg::Sha256) => &signature::ECDSA_P384_SHA256_ASN1,
        (Curve::P384, HashAlg::Sha384) => &signature::ECDSA_P384_SHA384_ASN1,
    }
}

/// ECDSA over `msg` (hashed with `hash` here) with the fixed-width `r ‖ s`
/// signature, each already left-padded to the coordinate size.
pub fn ecdsa_verify_fixed(
    curve: Curve,
    hash: HashAlg,
    point: &[u8],
    r: &[u8],
    s: &[u8],
    msg: &[u8],
) -> Option<Result<(), ()>> {
    let alg = ecdsa_fixed(curve, hash)?;
    let mut sig = Vec::with_capacity(r.len() + s.len());
    sig.extend_from_slice(r);
    sig.extend_from_slice(s);
    Some(
        UnparsedPublicKey::new(alg, point)
            .verify(msg, &sig)
            .map_err(|_| ()),
    )
}

/// ECDSA over `msg` with a DER `Ecdsa-Sig-Value` (X.509 signatures).
/// `point` must be an uncompressed SEC1 point.
pub fn ecdsa_verify_der(
    curve: Curve,
    hash: HashAlg,
    point: &[u8],
    der_sig: &[u8],
    msg: &[u8],
) -> Option<Result<(), ()>> {
    if point.first() != Some(&4) {
        return None;
    }
    Some(
        UnparsedPublicKey::new(ecdsa_asn1(curve, hash), point)
            .verify(msg, der_sig)
            .map_err(|_| ()),
    )
}

/// RSASSA-PKCS1-v1_5 over `msg` with the key `(n, e)`, both big-endian.
pub fn rsa_pkcs1_verify(
    hash: HashAlg,
    n: &[u8],
    e: &[u8],
    sig: &[u8],
    msg: &[u8],
) -> Option<Result<(), ()>> {
    // ring wants minimal big-endian encodings (no leading zero bytes).
    let trim = |v: &[u8]| v[v.iter().position(|b| *b != 0).unwrap_or(v.len())..].to_vec();
    let (n, e) = (trim(n), trim(e));
    if n.len() * 8 < 2048 {
        return None;
    }
    let params = match hash {
        HashAlg::Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        HashAlg::Sha384 => &signature::RSA_PKCS1_2048_8192_SHA384,
    };
    Some(
        RsaPublicKeyComponents { n: &n, e: &e }
            .verify(params, msg, sig)
            .map_err(|_| ()),
    )
}

/// `(Z, ephemeral x, ephemeral y)`.
pub type EcdhResult = (Vec<u8>, Vec<u8>, Vec<u8>);

/// Ephemeral-static ECDH against `peer` (uncompressed point): returns
/// `(Z, ephemeral x, ephemeral y)`, Z being the shared point's x coordinate
/// (what TPM2's KDFe takes). The ephemeral key comes from the system RNG and
/// is consumed by the agreement. `Err` when `peer` is not a point on the curve.
pub fn ecdh_ephemeral(curve: Curve, peer: &[u8]) -> Result<EcdhResult, String> {
    let alg = match curve {
        Curve::P256 => &agreement::ECDH_P256,
        Curve::P384 => &agreement::ECDH_P384,
    };
    let rng = SystemRandom::new();
    let eph = agreement::EphemeralPrivateKey::generate(alg, &rng)
        .map_err(|_| "ephemeral key generation failed".to_string())?;
    let public = eph
        .compute_public_key()
        .map_err(|_| "ephemeral public key".to_string())?;
    let public = public.as_ref();
    let n = curve.coord_size();
    if public.len() != 1 + 2 * n {
        return Err("ephemeral public key has the wrong size".into());
    }
    let (ex, ey) = (public[1..=n].to_vec(), public[1 + n..].to_vec());
    let z = agreement::agree_ephemeral(eph, &agreement::UnparsedPublicKey::new(alg, peer), |z| {
        z.to_vec()
    })
    .map_err(|_| "the EK's point is not on its curve".to_string())?;
    Ok((z, ex, ey))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::elliptic_curve::sec1::ToEncodedPoint;

    #[test]
    fn ecdh_matches_the_pure_rust_side() {
        let sk = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let pk = sk.public_key().to_encoded_point(false);
        let (z, ex, ey) = ecdh_ephemeral(Curve::P256, pk.as_bytes()).unwrap();
        let eph = p256::PublicKey::from_sec1_bytes(&sec1_uncompressed(&ex, &ey)).unwrap();
        let z2 = p256::ecdh::diffie_hellman(sk.to_nonzero_scalar(), eph.as_affine());
        assert_eq!(z, z2.raw_secret_bytes().to_vec());
    }

    #[test]
    fn ecdh_refuses_a_point_off_the_curve() {
        let sk = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let mut pk = sk.public_key().to_encoded_point(false).as_bytes().to_vec();
        pk[40] ^= 1;
        assert!(ecdh_ephemeral(Curve::P256, &pk).is_err());
    }

    #[test]
    fn ecdsa_fixed_accepts_good_and_refuses_tampered() {
        use ecdsa::signature::Signer;
        let sk = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let point = sk.verifying_key().to_encoded_point(false);
        let sig: p256::ecdsa::Signature = sk.sign(b"attest");
        let (r, s) = sig.split_bytes();
        let v = |m: &[u8]| {
            ecdsa_verify_fixed(Curve::P256, HashAlg::Sha256, point.as_bytes(), &r, &s, m).unwrap()
        };
        assert!(v(b"attest").is_ok());
        assert!(v(b"attesT").is_err());
        assert!(
            ecdsa_verify_fixed(Curve::P256, HashAlg::Sha384, point.as_bytes(), &r, &s, b"x")
                .is_none()
        );
    }

    #[test]
    fn rsa_pkcs1_accepts_good_and_refuses_tampered_or_wrong_key() {
        use rsa::traits::PublicKeyParts;
        use sha2::Digest;
        let rng = &mut rand::rngs::OsRng;
        let k = rsa::RsaPrivateKey::new(rng, 2048).unwrap();
        let other = rsa::RsaPrivateKey::new(rng, 2048).unwrap();
        let sig = k
            .sign(
                rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
                &sha2::Sha256::digest(b"attest"),
            )
            .unwrap();
        let v = |key: &rsa::RsaPrivateKey, sig: &[u8], m: &[u8]| {
            let (n, e) = (key.n().to_bytes_be(), key.e().to_bytes_be());
            // A leading zero byte, as TPMs and DER may carry, is accepted.
            let mut n0 = vec![0u8];
            n0.extend_from_slice(&n);
            rsa_pkcs1_verify(HashAlg::Sha256, &n0, &e, sig, m).unwrap()
        };
        assert!(v(&k, &sig, b"attest").is_ok());
        assert!(v(&k, &sig, b"attesT").is_err());
        assert!(v(&other, &sig, b"attest").is_err());
        let mut bad = sig.clone();
        bad[100] ^= 1;
        assert!(v(&k, &bad, b"attest").is_err());
        assert!(v(&k, &sig[..255], b"attest").is_err());
    }

    #[test]
    fn rsa_under_2048_bits_is_left_to_the_fallback() {
        assert!(
            rsa_pkcs1_verify(HashAlg::Sha256, &[0xff; 128], &[1, 0, 1], &[0; 128], b"m").is_none()
        );
    }
}
