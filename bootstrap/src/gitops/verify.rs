//! Signature check of a bundle manifest against the trust root from
//! enrollment: one or more ECDSA P-256 public keys in PEM (`cosign.pub`
//! format, as `keel key generate` and `cosign generate-key-pair` write).
//!
//! The signature is what `cosign sign-blob --key cosign.key .keel/manifest`
//! prints: base64 of an ASN.1 DER ECDSA signature over SHA-256 of the
//! manifest bytes. Any one trusted key verifying it is enough (key rotation).

use base64::Engine;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{DerSignature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;

use super::GitopsError;

/// The keys a bundle signature may come from.
#[derive(Debug, Clone)]
pub struct TrustRoot {
    keys: Vec<VerifyingKey>,
}

impl TrustRoot {
    /// Parses every `PUBLIC KEY` PEM block in `pem_text`.
    pub fn parse(pem_text: &str) -> Result<Self, GitopsError> {
        const BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
        const END: &str = "-----END PUBLIC KEY-----";
        let mut keys = Vec::new();
        let mut rest = pem_text;
        while let Some(start) = rest.find(BEGIN) {
            let tail = &rest[start..];
            let end = tail
                .find(END)
                .ok_or_else(|| GitopsError::TrustRoot("unterminated PUBLIC KEY block".into()))?;
            let block = &tail[..end + END.len()];
            let key = VerifyingKey::from_public_key_pem(block).map_err(|e| {
                GitopsError::TrustRoot(format!("not an ECDSA P-256 public key: {e}"))
            })?;
            keys.push(key);
            rest = &tail[end + END.len()..];
        }
        if keys.is_empty() {
            return Err(GitopsError::TrustRoot("no PUBLIC KEY block found".into()));
        }
        Ok(TrustRoot { keys })
    }

    /// Checks `signature_b64` (cosign format) over `message`.
    pub fn verify(&self, message: &[u8], signature_b64: &str) -> Result<(), GitopsError> {
        let compact: String = signature_b64.split_whitespace().collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|e| GitopsError::BadSignature(format!("signature is not base64: {e}")))?;
        let sig = DerSignature::try_from(der.as_slice())
            .map_err(|e| GitopsError::BadSignature(format!("signature is not DER ECDSA: {e}")))?;
        if self.keys.iter().any(|k| k.verify(message, &sig).is_ok()) {
            Ok(())
        } else {
            Err(GitopsError::BadSignature(
                "signature does not verify with any trusted key".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::SigningKey;
    use p256::pkcs8::{EncodePublicKey, LineEnding};

    fn key() -> (SigningKey, String) {
        let sk = SigningKey::random(&mut rand::rngs::OsRng);
        let pem = sk
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("pem");
        (sk, pem)
    }

    fn sign(sk: &SigningKey, msg: &[u8]) -> String {
        let sig: p256::ecdsa::Signature = sk.sign(msg);
        base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes())
    }

    #[test]
    fn verify_table() {
        let (sk, pem) = key();
        let (other, other_pem) = key();
        let root = TrustRoot::parse(&pem).expect("root");
        let both = TrustRoot::parse(&format!("{other_pem}\n{pem}")).expect("two keys");
        let msg = b"keel-bundle-manifest v1\n";
        let good = sign(&sk, msg);
        assert!(root.verify(msg, &good).is_ok());
        assert!(
            root.verify(msg, &format!("{good}\n")).is_ok(),
            "trailing newline ok"
        );
        assert!(both.verify(msg, &good).is_ok(), "any trusted key");
        let cases = [
            (sign(&other, msg), "any trusted key"),
            (sign(&sk, b"other message"), "any trusted key"),
            ("!!!".to_string(), "base64"),
            ("AAAA".to_string(), "DER"),
            (String::new(), "DER"),
        ];
        for (sig, want) in cases {
            let e = root.verify(msg, &sig).expect_err(want).to_string();
            assert!(e.contains(want), "{e} vs {want}");
        }
    }

    #[test]
    fn trust_root_parse_errors() {
        assert!(TrustRoot::parse("").is_err());
        assert!(TrustRoot::parse("-----BEGIN PUBLIC KEY-----\nAAAA\n").is_err());
        assert!(
            TrustRoot::parse("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
                .is_err()
        );
    }
}
