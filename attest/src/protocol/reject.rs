//! Why the enrollment service refused a node: a stable machine code, a human
//! message and what the person at the console should do about it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Stable reason codes. They appear in the audit log and on the node console,
/// so existing names never change; new codes may be added. A node that gets a
/// code it does not know reads it as [`RejectCode::Unknown`] and still shows
/// the message and action the service sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RejectCode {
    /// The request's protocol version is not served.
    UnsupportedVersion,
    /// The request did not parse or a field has the wrong size/shape.
    MalformedRequest,
    /// The EK certificate does not chain to a trusted TPM vendor root.
    EkCertUntrusted,
    /// The EK public key differs from the key in the EK certificate.
    EkCertMismatch,
    /// No EK certificate and the EK is not on the allow-list (and no token).
    EkNotAllowed,
    /// The one-time token is unknown, expired or for another store.
    TokenInvalid,
    /// The one-time token has already been used.
    TokenReused,
    /// The AK's attributes are not those of a restricted TPM signing key.
    AkAttributes,
    /// The AK name does not match the AK public area.
    AkNameMismatch,
    /// The EK or AK public area did not parse or uses unsupported algorithms.
    TpmStructure,
    /// The CSR did not parse or its signature is wrong.
    CsrInvalid,
    /// The session id is unknown to the service.
    SessionUnknown,
    /// The challenge expired before the finish request arrived.
    SessionExpired,
    /// The session was already finished (replayed finish request).
    SessionReplayed,
    /// The proof of the activated credential is wrong: the AK and EK are not
    /// in the same TPM.
    ActivationFailed,
    /// The quote structure did not parse, is not a quote, or its signature is wrong.
    QuoteInvalid,
    /// The quote does not carry this session's qualifying data (nonce).
    QuoteNonce,
    /// The quote covers other PCRs than the ones the challenge asked for.
    PcrSelection,
    /// The PCR values sent do not hash to the quoted PCR digest.
    PcrDigest,
    /// The event log did not parse.
    EventLogMalformed,
    /// The event log does not replay to the quoted PCR values.
    EventLogReplay,
    /// The PCR values are not among the reference values for the release.
    PcrPolicy,
    /// The claimed release is unknown to the service.
    UnknownRelease,
    /// The claimed release is below the store's minimum or on the deny-list.
    ReleaseDenied,
    /// Another EK already holds this node's identity.
    IdentityConflict,
    /// This node (or EK, or the node certificate presented) has been revoked.
    Revoked,
    /// The node certificate presented has expired (or is not yet valid).
    CertExpired,
    /// The node certificate presented was not issued by this service (wrong
    /// CA, or no record of it).
    CertUnknown,
    /// A signed node request carries no valid signature by the node key.
    SignatureInvalid,
    /// Too many attempts; retry later.
    RateLimited,
    /// The service failed internally; retry later.
    Internal,
    /// A code this version of the node does not know.
    #[serde(other)]
    Unknown,
}

impl RejectCode {
    /// Every code, in [`RejectCode::index`] order (for tables and counters).
    pub const ALL: [RejectCode; 32] = {
        use RejectCode::*;
        [
            UnsupportedVersion,
            MalformedRequest,
            EkCertUntrusted,
            EkCertMismatch,
            EkNotAllowed,
            TokenInvalid,
            TokenReused,
            AkAttributes,
            AkNameMismatch,
            TpmStructure,
            CsrInvalid,
            SessionUnknown,
            SessionExpired,
            SessionReplayed,
            ActivationFailed,
            QuoteInvalid,
            QuoteNonce,
            PcrSelection,
            PcrDigest,
            EventLogMalformed,
            EventLogReplay,
            PcrPolicy,
            UnknownRelease,
            ReleaseDenied,
            IdentityConflict,
            Revoked,
            RateLimited,
            Internal,
            SignatureInvalid,
            CertUnknown,
            CertExpired,
            Unknown,
        ]
    };

    /// This code's position in [`RejectCode::ALL`]. An exhaustive match: a
    /// new code does not compile until it has a place there too.
    pub fn index(self) -> usize {
        use RejectCode::*;
        match self {
            UnsupportedVersion => 0,
            MalformedRequest => 1,
            EkCertUntrusted => 2,
            EkCertMismatch => 3,
            EkNotAllowed => 4,
            TokenInvalid => 5,
            TokenReused => 6,
            AkAttributes => 7,
            AkNameMismatch => 8,
            TpmStructure => 9,
            CsrInvalid => 10,
            SessionUnknown => 11,
            SessionExpired => 12,
            SessionReplayed => 13,
            ActivationFailed => 14,
            QuoteInvalid => 15,
            QuoteNonce => 16,
            PcrSelection => 17,
            PcrDigest => 18,
            EventLogMalformed => 19,
            EventLogReplay => 20,
            PcrPolicy => 21,
            UnknownRelease => 22,
            ReleaseDenied => 23,
            IdentityConflict => 24,
            Revoked => 25,
            RateLimited => 26,
            Internal => 27,
            SignatureInvalid => 28,
            CertUnknown => 29,
            CertExpired => 30,
            Unknown => 31,
        }
    }
    /// The kebab-case code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        use RejectCode::*;
        match self {
            UnsupportedVersion => "unsupported-version",
            MalformedRequest => "malformed-request",
            EkCertUntrusted => "ek-cert-untrusted",
            EkCertMismatch => "ek-cert-mismatch",
            EkNotAllowed => "ek-not-allowed",
            TokenInvalid => "token-invalid",
            TokenReused => "token-reused",
            AkAttributes => "ak-attributes",
            AkNameMismatch => "ak-name-mismatch",
            TpmStructure => "tpm-structure",
            CsrInvalid => "csr-invalid",
            SessionUnknown => "session-unknown",
            SessionExpired => "session-expired",
            SessionReplayed => "session-replayed",
            ActivationFailed => "activation-failed",
            QuoteInvalid => "quote-invalid",
            QuoteNonce => "quote-nonce",
            PcrSelection => "pcr-selection",
            PcrDigest => "pcr-digest",
            EventLogMalformed => "event-log-malformed",
            EventLogReplay => "event-log-replay",
            PcrPolicy => "pcr-policy",
            UnknownRelease => "unknown-release",
            ReleaseDenied => "release-denied",
            IdentityConflict => "identity-conflict",
            Revoked => "revoked",
            CertExpired => "cert-expired",
            CertUnknown => "cert-unknown",
            SignatureInvalid => "signature-invalid",
            RateLimited => "rate-limited",
            Internal => "internal",
            Unknown => "unknown",
        }
    }

    /// What a technician should do, in one sentence, when the service gives
    /// no more specific advice.
    pub fn default_action(self) -> &'static str {
        use RejectCode::*;
        match self {
            UnsupportedVersion => "Update the node image or the enrollment service so their protocol versions match.",
            MalformedRequest | TpmStructure | QuoteInvalid | PcrSelection | PcrDigest => {
                "Reboot the node to retry; if it repeats, the node software or TPM is faulty: contact support with the node's log."
            }
            EkCertUntrusted => "This TPM's vendor is not trusted: add its root CA to the service, or allow-list the EK.",
            EkCertMismatch => "The TPM presents a certificate for another key: the hardware may be tampered with. Quarantine the node and contact security.",
            EkNotAllowed => "Ask the enrollment admin to approve this node or give you a one-time token for this store.",
            TokenInvalid => "Ask the enrollment admin for a new one-time token for this store.",
            TokenReused => "Each token works once: ask the enrollment admin for a new one-time token.",
            AkAttributes | AkNameMismatch | ActivationFailed => {
                "The TPM's proof of identity failed: reboot to retry; if it repeats, quarantine the node and contact security."
            }
            CsrInvalid => "Reboot the node to retry; if it repeats, contact support with the node's log.",
            SessionUnknown | SessionExpired | SessionReplayed => "Nothing to do: the node starts a new enrollment automatically.",
            QuoteNonce => "Nothing to do: the node starts a new enrollment automatically; if it repeats, contact security.",
            EventLogMalformed | EventLogReplay => {
                "The boot measurements are inconsistent: re-image the node with a signed release; if it repeats, contact security."
            }
            PcrPolicy => "The node booted software that is not an approved release (or firmware settings changed): re-image it with a signed release and check Secure Boot settings.",
            UnknownRelease => "The image release is not known to the service: publish its reference values or re-image with an approved release.",
            ReleaseDenied => "This release is withdrawn or older than the store's minimum: re-image the node with a current signed release.",
            IdentityConflict => "Another TPM already holds this node's identity: if the node was replaced (RMA), ask the admin to re-enroll it.",
            Revoked => "This node has been revoked: contact the enrollment admin.",
            CertExpired => "The node certificate expired before it was renewed: ask the enrollment admin to re-enroll the node (`keel-enroll nodes reenroll NODE`), then reboot it.",
            CertUnknown => "The node certificate is not one this service issued (another service, or a database restored from before it was issued): ask the admin to re-enroll the node.",
            SignatureInvalid => "The request was not signed by the node key that matches its certificate: check that node-key.pem and node-cert.pem belong together; re-enroll the node if they do not.",
            RateLimited | Internal => "Nothing to do: the node retries automatically.",
            Unknown => "Contact the enrollment admin with the message shown.",
        }
    }
}

impl fmt::Display for RejectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal as the node receives it and shows it on its console.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RejectReason {
    /// Machine-readable code.
    pub code: RejectCode,
    /// What went wrong, for a human (no secrets).
    pub message: String,
    /// What to do about it, for the technician at the console.
    pub action: String,
}

impl RejectReason {
    /// A reason with the code's default action.
    pub fn new(code: RejectCode, message: impl Into<String>) -> Self {
        RejectReason {
            code,
            message: message.into(),
            action: code.default_action().to_string(),
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.message, self.code, self.action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_roundtrip_and_unknown_is_tolerated() {
        for code in [
            RejectCode::PcrPolicy,
            RejectCode::EkCertUntrusted,
            RejectCode::SessionReplayed,
        ] {
            let j = serde_json::to_string(&code).unwrap();
            assert_eq!(j, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<RejectCode>(&j).unwrap(), code);
        }
        assert_eq!(
            serde_json::from_str::<RejectCode>("\"some-future-code\"").unwrap(),
            RejectCode::Unknown
        );
        for (i, c) in RejectCode::ALL.iter().enumerate() {
            assert_eq!(c.index(), i, "{c}");
        }
        let r = RejectReason::new(RejectCode::TokenReused, "token already used");
        assert!(r.to_string().contains("token-reused"));
    }
}
