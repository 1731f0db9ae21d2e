//! The verifier's two protocol steps: checking a start request and issuing a
//! challenge, then checking the finish request against the session secrets.

use std::collections::BTreeMap;

use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use zeroize::Zeroize;

use super::ekcert::{self, TrustStore};
use super::eventlog::EventLog;
use super::policy::PcrPolicy;
use super::{credential, quote, VerifyError};
use crate::protocol::{
    self, Bytes32, Challenge, FinishRequest, PcrSelection, ReleaseRef, StartRequest, B64,
    PROTOCOL_VERSION,
};
use crate::tpm2::public::{attr, Curve, PublicKey, TpmPublic};
use crate::tpm2::{alg, HashAlg, StructError};

/// Verifier configuration.
#[derive(Debug, Clone, Default)]
pub struct Verifier {
    /// Trusted TPM vendor roots and intermediates.
    pub trust: TrustStore,
    /// Reference PCR values per release.
    pub policy: PcrPolicy,
    /// Refuse nodes that send no event log.
    pub require_event_log: bool,
}

/// What a valid start request established.
#[derive(Debug, Clone)]
pub struct StartEvidence {
    /// The EK.
    pub ek: TpmPublic,
    /// True when the EK certificate chained to a trusted root and matched the
    /// EK. False when no certificate was sent: the caller must then find the
    /// EK on its allow-list (by [`StartEvidence::ek_sha256`]) or refuse.
    pub ek_certified: bool,
    /// Subject, issuer and serial (hex) of the trusted EK certificate.
    pub ek_cert_names: Option<(String, String, String)>,
    /// SHA-256 (hex) of the EK's SubjectPublicKeyInfo DER, the allow-list key
    /// (`openssl x509 -in ek.pem -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum`).
    pub ek_sha256: String,
    /// The AK.
    pub ak: TpmPublic,
    /// The CSR's SubjectPublicKeyInfo (DER).
    pub csr_spki: Vec<u8>,
}

/// What the service must keep between challenge and finish. It holds no
/// secret that could stand in for the TPM: the credential secret is dropped
/// once wrapped to the EK, and only the SHA-256 of the proof it yields is
/// kept. Whoever reads the session store learns a hash they cannot invert
/// into a proof; only the TPM holding the EK can activate the credential.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SessionSecrets {
    /// Session id.
    pub session_id: String,
    /// SHA-256 of the expected activation proof
    /// ([`protocol::activation_proof`] of the secret, session id and nonce).
    pub proof_sha256: Bytes32,
    /// The nonce.
    pub nonce: Bytes32,
    /// AK TPM2B_PUBLIC.
    pub ak_public: B64,
    /// CSR SubjectPublicKeyInfo (DER).
    pub csr_spki: B64,
    /// Requested PCRs.
    pub pcr_selection: PcrSelection,
    /// Release the node claimed.
    pub release: ReleaseRef,
    /// Expiry.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

impl std::fmt::Debug for SessionSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSecrets")
            .field("session_id", &self.session_id)
            .field("release", &self.release)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// What a valid finish request established.
#[derive(Debug, Clone)]
pub struct FinishEvidence {
    /// Quoted PCR values.
    pub pcrs: BTreeMap<u8, Vec<u8>>,
    /// Number of events replayed, when a log was sent.
    pub event_count: Option<usize>,
    /// TPM reset count from the quote.
    pub reset_count: u32,
}

/// Checks that `ak` is a restricted signing key that never left its TPM.
pub fn check_ak_attributes(ak: &TpmPublic) -> Result<(), VerifyError> {
    let required = attr::FIXED_TPM
        | attr::FIXED_PARENT
        | attr::SENSITIVE_DATA_ORIGIN
        | attr::USER_WITH_AUTH
        | attr::RESTRICTED
        | attr::SIGN;
    let forbidden = attr::DECRYPT | attr::ENCRYPTED_DUPLICATION;
    let bad = |problem: &str| VerifyError::AkAttributes {
        attributes: ak.attributes,
        problem: problem.to_string(),
    };
    if !ak.has(required) {
        return Err(bad("missing one of fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, restricted, sign"));
    }
    if ak.attributes & forbidden != 0 {
        return Err(bad("decrypt or encryptedDuplication is set"));
    }
    let (scheme, hash) = ak.scheme;
    let ok_scheme = match &ak.key {
        PublicKey::Rsa { .. } => matches!(scheme, alg::RSASSA | alg::RSAPSS) && ak.rsa_bits >= 2048,
        PublicKey::Ecc { curve, .. } => {
            scheme == alg::ECDSA && matches!(curve, Curve::P256 | Curve::P384)
        }
    };
    if !ok_scheme || HashAlg::from_alg(hash, "AK", "scheme hash").is_err() {
        return Err(bad(
            "signing scheme is not RSASSA/RSAPSS/ECDSA with SHA-256/384",
        ));
    }
    if ak.symmetric.is_some() {
        return Err(bad("a signing key must not have a symmetric algorithm"));
    }
    Ok(())
}

impl Verifier {
    /// Checks a start request: EK (and certificate if sent), AK attributes and
    /// name, CSR. Does not consult allow-lists or tokens.
    pub fn verify_start(&self, req: &StartRequest) -> Result<StartEvidence, VerifyError> {
        if req.version != PROTOCOL_VERSION {
            return Err(VerifyError::Version(req.version));
        }
        let ek = TpmPublic::from_tpm2b(&req.ek_public).map_err(VerifyError::EkPublic)?;
        if !ek.has(attr::RESTRICTED | attr::DECRYPT | attr::FIXED_TPM | attr::FIXED_PARENT)
            || ek.has(attr::SIGN)
        {
            return Err(VerifyError::EkPublic(StructError::Invalid {
                what: "EK",
                detail: "not a restricted, fixed decryption key".into(),
            }));
        }
        let ek_cert_names = match &req.ek_cert {
            Some(raw) => {
                let cert = ekcert::validate_ek_cert(raw, &self.trust)?;
                ekcert::check_ek_matches_cert(&ek, &cert)?;
                let tbs = &cert.tbs_certificate;
                Some((
                    tbs.subject.to_string(),
                    tbs.issuer.to_string(),
                    hex::encode(tbs.serial_number.as_bytes()),
                ))
            }
            None => None,
        };
        let ek_certified = ek_cert_names.is_some();
        let ek_sha256 =
            hex::encode(HashAlg::Sha256.digest(&[&ek.spki_der().map_err(VerifyError::EkPublic)?]));
        let ak = TpmPublic::from_tpm2b(&req.ak_public).map_err(VerifyError::AkPublic)?;
        check_ak_attributes(&ak)?;
        if !bool::from(ak.name().as_slice().ct_eq(req.ak_name.as_bytes())) {
            return Err(VerifyError::AkName);
        }
        let csr_spki =
            protocol::csr_public_key_der(&req.csr).map_err(|e| VerifyError::Csr(e.to_string()))?;
        Ok(StartEvidence {
            ek,
            ek_certified,
            ek_cert_names,
            ek_sha256,
            ak,
            csr_spki,
        })
    }

    /// Makes the challenge for a verified start: a fresh secret wrapped to the
    /// EK for the AK's name, and a fresh nonce.
    pub fn challenge<R: RngCore + CryptoRng>(
        &self,
        ev: &StartEvidence,
        session_id: String,
        pcr_selection: PcrSelection,
        release: ReleaseRef,
        expires_at: OffsetDateTime,
        rng: &mut R,
    ) -> Result<(Challenge, SessionSecrets), VerifyError> {
        let mut secret = [0u8; 32];
        let mut nonce = [0u8; 32];
        rng.fill_bytes(&mut secret);
        rng.fill_bytes(&mut nonce);
        let cred = credential::make_credential(&ev.ek, &ev.ak.name(), &secret, rng)?;
        let ch = Challenge {
            version: PROTOCOL_VERSION,
            session_id: session_id.clone(),
            credential_blob: B64(cred.id_object),
            encrypted_secret: B64(cred.encrypted_secret),
            nonce: Bytes32(nonce),
            pcr_selection: pcr_selection.clone(),
            expires_at,
        };
        let proof = protocol::activation_proof(&secret, &session_id, &nonce);
        let proof_sha256: [u8; 32] = sha2::Sha256::digest(proof).into();
        secret.zeroize();
        let s = SessionSecrets {
            session_id,
            proof_sha256: Bytes32(proof_sha256),
            nonce: Bytes32(nonce),
            ak_public: B64(ev.ak.to_tpm2b()),
            csr_spki: B64(ev.csr_spki.clone()),
            pcr_selection,
            release,
            expires_at,
        };
        Ok((ch, s))
    }

    /// Checks a finish request against the session: expiry, activation proof,
    /// quote, event log replay, PCR policy.
    pub fn verify_finish(
        &self,
        s: &SessionSecrets,
        req: &FinishRequest,
        now: OffsetDateTime,
    ) -> Result<FinishEvidence, VerifyError> {
        if req.version != PROTOCOL_VERSION {
            return Err(VerifyError::Version(req.version));
        }
        if !bool::from(s.session_id.as_bytes().ct_eq(req.session_id.as_bytes())) {
            return Err(VerifyError::SessionMismatch);
        }
        if now >= s.expires_at {
            return Err(VerifyError::Expired);
        }
        let presented: [u8; 32] = sha2::Sha256::digest(req.proof.0).into();
        if !bool::from(presented.ct_eq(&s.proof_sha256.0)) {
            return Err(VerifyError::Activation);
        }
        let ak = TpmPublic::from_tpm2b(&s.ak_public).map_err(VerifyError::AkPublic)?;
        let pcrs = req
            .pcr_values()
            .map_err(|e| VerifyError::Malformed(e.to_string()))?;
        let qd = protocol::qualifying_data(&s.nonce.0, &s.csr_spki, &s.session_id);
        let q = quote::verify_quote(
            &ak,
            &req.quote.attest,
            &req.quote.signature,
            &qd,
            &s.pcr_selection,
            &pcrs,
        )?;
        let event_count = match &req.event_log {
            Some(raw) => {
                let log = EventLog::parse(raw)?;
                let replayed = log.replay();
                for (idx, quoted) in &pcrs {
                    let want = replayed.get(idx).copied().unwrap_or_else(|| {
                        super::eventlog::initial_value(*idx, log.startup_locality)
                    });
                    // PCR values are public (they are in the quote): no
                    // constant-time compare needed. PCR 11 may carry the
                    // user-space boot phases on top of what the log has.
                    if super::eventlog::explains(*idx, &want, quoted).is_none() {
                        return Err(VerifyError::EventLogReplay {
                            pcr: *idx,
                            replayed: hex::encode(want),
                            quoted: hex::encode(quoted),
                        });
                    }
                }
                Some(log.events.len())
            }
            None if self.require_event_log => return Err(VerifyError::EventLogMissing),
            None => None,
        };
        self.policy.evaluate(&s.release, &pcrs)?;
        Ok(FinishEvidence {
            pcrs,
            event_count,
            reset_count: q.reset_count,
        })
    }
}
