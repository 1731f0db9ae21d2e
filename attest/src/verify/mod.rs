//! The verifier: pure-software checks of everything a node sends, no TPM
//! needed. [`Verifier`] runs the five checks in protocol order:
//!
//! 1. EK: certificate chains to a trusted vendor root and carries the EK's key
//!    (or, without certificate, the caller's allow-list decides),
//! 2. AK: a restricted signing key of that TPM, proven by credential
//!    activation ([`credential::make_credential`] + [`crate::protocol::activation_proof`]),
//! 3. quote: signed by the AK over this session's qualifying data,
//! 4. PCR values: among the reference values of the claimed release,
//! 5. event log: replays to the quoted PCR values.
//!
//! Single use of a session is the caller's job (it owns the storage): mark a
//! session consumed atomically before or while calling [`Verifier::verify_finish`].

pub mod credential;
pub mod ekcert;
pub mod eventlog;
pub mod policy;
pub mod quote;

mod session;

pub use session::{FinishEvidence, SessionSecrets, StartEvidence, Verifier};

use crate::protocol::RejectCode;
use crate::tpm2::StructError;

/// Which check failed, and why. [`VerifyError::code`] gives the protocol's
/// reject code for the node.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Unsupported protocol version.
    #[error("protocol version {0} is not supported")]
    Version(u32),
    /// The EK public area did not parse or is not a storage key.
    #[error("EK public area: {0}")]
    EkPublic(StructError),
    /// EK certificate problems.
    #[error(transparent)]
    EkCert(#[from] ekcert::EkCertError),
    /// The AK public area did not parse.
    #[error("AK public area: {0}")]
    AkPublic(StructError),
    /// The AK's attributes are not exactly those of a restricted TPM signing key.
    #[error("AK attributes 0x{attributes:08x} are not a restricted signing key's: {problem}")]
    AkAttributes {
        /// objectAttributes.
        attributes: u32,
        /// What is wrong.
        problem: String,
    },
    /// The AK name does not match its public area.
    #[error("AK name does not match the AK public area")]
    AkName,
    /// The CSR is unusable.
    #[error("CSR: {0}")]
    Csr(String),
    /// MakeCredential could not wrap for this EK.
    #[error(transparent)]
    Credential(#[from] credential::CredentialError),
    /// The session id in the finish request is not this session's.
    #[error("session id does not match")]
    SessionMismatch,
    /// The challenge expired.
    #[error("session expired")]
    Expired,
    /// The activation proof is wrong.
    #[error("proof of credential activation is wrong (AK and EK are not in the same TPM)")]
    Activation,
    /// The quote failed a check.
    #[error(transparent)]
    Quote(#[from] quote::QuoteError),
    /// The event log did not parse.
    #[error("event log: {0}")]
    EventLog(#[from] eventlog::EventLogError),
    /// The event log is required but missing.
    #[error("no event log sent, but the policy requires one")]
    EventLogMissing,
    /// The event log does not replay to a quoted PCR.
    #[error("event log replays PCR {pcr} to {replayed}, quoted {quoted}")]
    EventLogReplay {
        /// PCR.
        pcr: u8,
        /// Replayed value (hex).
        replayed: String,
        /// Quoted value (hex).
        quoted: String,
    },
    /// PCR policy failed.
    #[error(transparent)]
    Policy(#[from] policy::PolicyError),
    /// A PCR value in the request is not hex.
    #[error("malformed request: {0}")]
    Malformed(String),
}

impl VerifyError {
    /// The reject code to send the node.
    pub fn code(&self) -> RejectCode {
        use quote::QuoteError as Q;
        match self {
            VerifyError::Version(_) => RejectCode::UnsupportedVersion,
            VerifyError::EkPublic(_) | VerifyError::AkPublic(_) | VerifyError::Credential(_) => {
                RejectCode::TpmStructure
            }
            VerifyError::EkCert(ekcert::EkCertError::KeyMismatch) => RejectCode::EkCertMismatch,
            VerifyError::EkCert(_) => RejectCode::EkCertUntrusted,
            VerifyError::AkAttributes { .. } => RejectCode::AkAttributes,
            VerifyError::AkName => RejectCode::AkNameMismatch,
            VerifyError::Csr(_) => RejectCode::CsrInvalid,
            VerifyError::SessionMismatch => RejectCode::SessionUnknown,
            VerifyError::Expired => RejectCode::SessionExpired,
            VerifyError::Activation => RejectCode::ActivationFailed,
            VerifyError::Quote(Q::Nonce) => RejectCode::QuoteNonce,
            VerifyError::Quote(Q::Selection { .. }) => RejectCode::PcrSelection,
            VerifyError::Quote(Q::PcrValues(_) | Q::PcrDigest) => RejectCode::PcrDigest,
            VerifyError::Quote(_) => RejectCode::QuoteInvalid,
            VerifyError::EventLog(_) | VerifyError::EventLogMissing => {
                RejectCode::EventLogMalformed
            }
            VerifyError::EventLogReplay { .. } => RejectCode::EventLogReplay,
            VerifyError::Policy(policy::PolicyError::UnknownRelease { .. }) => {
                RejectCode::UnknownRelease
            }
            VerifyError::Policy(_) => RejectCode::PcrPolicy,
            VerifyError::Malformed(_) => RejectCode::MalformedRequest,
        }
    }

    /// The protocol rejection for this error.
    pub fn to_reject(&self) -> crate::protocol::RejectReason {
        crate::protocol::RejectReason::new(self.code(), self.to_string())
    }
}

#[cfg(test)]
mod tests;
