//! The enrollment protocol's messages, shared by the node (keel-bootstrap) and
//! the service (keel-enroll), and the two cryptographic bindings both sides
//! must compute identically: the quote's qualifying data and the proof of the
//! activated credential.
//!
//! The exchange (JSON over HTTPS, protocol version [`PROTOCOL_VERSION`]):
//!
//! ```text
//! node                                                        service
//!  | POST /v1/enroll/start   StartRequest ------------------------> |
//!  | <----------------------------- StartResponse::Challenge        |
//!  |   (TPM: ActivateCredential -> secret, Quote over              |
//!  |    qualifying_data(nonce, CSR key, session id))               |
//!  | POST /v1/enroll/finish  FinishRequest -----------------------> |
//!  | <------------------------ Decision (admitted/pending/rejected) |
//! ```
//!
//! Compatibility: fields are only ever added (as optional fields); a change
//! that is not additive bumps [`PROTOCOL_VERSION`]. Unknown fields are
//! ignored so older peers accept newer messages. Binary fields are base64
//! ([`B64`]); TPM structures are in the TPM's own marshalled big-endian form.

mod b64;
mod join;
mod reject;
mod report;

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

pub use b64::{Bytes32, B64};
pub use join::{AcmeJoin, CephJoin, EnrollInfo, GitopsJoin, JoinMaterial, NodeIdentity};
pub use reject::{RejectCode, RejectReason};
pub use report::{
    NodeReport, RenewRequest, RenewResponse, CERT_HEADER, CRL_PATH, RENEW_PATH, REPORT_PATH,
    SIGNATURE_HEADER,
};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest request body a service should accept (an event log is usually
/// well below 100 KiB).
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// HTTP paths of the two calls, relative to the service's base URL.
pub mod paths {
    /// Where [`super::StartRequest`] is posted.
    pub const START: &str = "/v1/enroll/start";
    /// Where [`super::FinishRequest`] is posted.
    pub const FINISH: &str = "/v1/enroll/finish";
}

/// Errors from the binding helpers.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The CSR is not a DER PKCS#10 request.
    #[error("CSR is not a valid DER PKCS#10 request")]
    CsrParse(#[source] x509_cert::der::Error),
    /// A PCR value is not hex.
    #[error("PCR {index} value is not hex")]
    PcrHex {
        /// PCR index.
        index: u8,
    },
}

/// First message: the node introduces its TPM and what it wants certified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct StartRequest {
    /// Always [`PROTOCOL_VERSION`] for messages built by this crate.
    pub version: u32,
    /// The EK public area, a marshalled TPM2B_PUBLIC (with its 2-byte size).
    pub ek_public: B64,
    /// The EK certificate (DER) as read from the TPM's NV, if it has one.
    /// Trailing NV padding is allowed; the service trims it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ek_cert: Option<B64>,
    /// The AK public area, a marshalled TPM2B_PUBLIC (with its 2-byte size).
    pub ak_public: B64,
    /// The AK name as the TPM reports it: nameAlg (2 bytes) || H(TPMT_PUBLIC).
    pub ak_name: B64,
    /// A one-time enrollment token for this store, if the technician has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// PKCS#10 request (DER) for the node identity key; its public key is bound
    /// into the quote (see [`qualifying_data`]).
    pub csr: B64,
    /// What the node says about itself (from its seed config and image).
    pub claims: NodeClaims,
}

/// Claims the node makes about itself. They are only trusted as far as the
/// attestation and the allow-list/token back them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct NodeClaims {
    /// Host name from the seed.
    pub hostname: String,
    /// /etc/machine-id.
    pub machine_id: String,
    /// The store this node belongs to, from the seed.
    pub store_id: String,
    /// The image release the node booted.
    pub release: ReleaseRef,
}

/// A release of a Keel image.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ReleaseRef {
    /// Image name, e.g. `store-node`.
    pub name: String,
    /// Release version, e.g. `2026.11.3`.
    pub version: String,
}

/// The service's answer to a [`StartRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartResponse {
    /// Prove the AK lives in that TPM and quote.
    Challenge(Challenge),
    /// Decided already (normally a rejection, e.g. untrusted EK certificate).
    Decision(Decision),
}

/// Which PCR bank the challenge asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PcrBank {
    /// The SHA-256 bank, the only one Keel uses.
    Sha256,
}

/// A set of PCRs in one bank.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PcrSelection {
    /// The bank.
    pub bank: PcrBank,
    /// PCR indices (0..=23), ascending, no duplicates.
    pub pcrs: Vec<u8>,
}

/// The credential challenge and quote request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Challenge {
    /// Protocol version.
    pub version: u32,
    /// Opaque session id; echo it in the [`FinishRequest`].
    pub session_id: String,
    /// TPM2B_ID_OBJECT contents (without the outer size): integrityHMAC
    /// (TPM2B) || encIdentity, for TPM2_ActivateCredential.
    pub credential_blob: B64,
    /// TPM2B_ENCRYPTED_SECRET contents (without the outer size): the seed
    /// encrypted to the EK.
    pub encrypted_secret: B64,
    /// Fresh, single-use nonce.
    pub nonce: Bytes32,
    /// The PCRs to quote.
    pub pcr_selection: PcrSelection,
    /// After this instant the session is dead.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// A TPM2_Quote result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Quote {
    /// Marshalled TPMS_ATTEST (the TPM2B_ATTEST contents, no size prefix).
    pub attest: B64,
    /// Marshalled TPMT_SIGNATURE by the AK over `attest`.
    pub signature: B64,
}

/// Second message: proof of activation, the quote and the evidence behind it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FinishRequest {
    /// Protocol version.
    pub version: u32,
    /// From the [`Challenge`].
    pub session_id: String,
    /// [`activation_proof`] of the activated secret.
    pub proof: Bytes32,
    /// The quote over [`qualifying_data`].
    pub quote: Quote,
    /// The PCR values read right after the quote: index -> lowercase hex digest.
    pub pcrs: BTreeMap<u8, String>,
    /// The TCG event log (binary_bios_measurements), if the node has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_log: Option<B64>,
}

impl FinishRequest {
    /// The PCR values decoded from hex.
    pub fn pcr_values(&self) -> Result<BTreeMap<u8, Vec<u8>>, ProtocolError> {
        decode_pcrs(&self.pcrs)
    }
}

/// Decodes an index -> hex map.
pub fn decode_pcrs(pcrs: &BTreeMap<u8, String>) -> Result<BTreeMap<u8, Vec<u8>>, ProtocolError> {
    pcrs.iter()
        .map(|(i, h)| {
            hex::decode(h)
                .map(|v| (*i, v))
                .map_err(|_| ProtocolError::PcrHex { index: *i })
        })
        .collect()
}

/// Encodes PCR values as index -> lowercase hex.
pub fn encode_pcrs(pcrs: &BTreeMap<u8, Vec<u8>>) -> BTreeMap<u8, String> {
    pcrs.iter().map(|(i, v)| (*i, hex::encode(v))).collect()
}

/// The service's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Decision {
    /// All checks passed; here is what the node needs.
    Admitted {
        /// The node's id in the inventory.
        #[serde(rename = "node-id")]
        node_id: String,
        /// Join material.
        join: Box<JoinMaterial>,
    },
    /// Attestation passed but a person must approve; start again later.
    Pending {
        /// Why, for the console.
        reason: String,
        /// Seconds to wait before starting again.
        #[serde(rename = "retry-after")]
        retry_after: u64,
    },
    /// Refused.
    Rejected {
        /// Why and what to do.
        reason: RejectReason,
    },
}

/// The quote's qualifying data (extraData), binding the quote to this
/// session's nonce, the node identity key of the CSR and the session:
/// `SHA256(nonce || SHA256(csr_spki_der) || session_id)`.
/// `csr_spki_der` is the CSR's SubjectPublicKeyInfo in DER.
pub fn qualifying_data(nonce: &[u8; 32], csr_spki_der: &[u8], session_id: &str) -> [u8; 32] {
    let key_hash = Sha256::digest(csr_spki_der);
    let mut h = Sha256::new();
    h.update(nonce);
    h.update(key_hash);
    h.update(session_id.as_bytes());
    h.finalize().into()
}

/// The SubjectPublicKeyInfo (DER) of a DER PKCS#10 request.
pub fn csr_public_key_der(csr_der: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    use x509_cert::der::{Decode, Encode};
    let req = x509_cert::request::CertReq::from_der(csr_der).map_err(ProtocolError::CsrParse)?;
    req.info
        .public_key
        .to_der()
        .map_err(ProtocolError::CsrParse)
}

/// [`qualifying_data`] computed straight from the DER CSR.
pub fn qualifying_data_for_csr(
    nonce: &[u8; 32],
    csr_der: &[u8],
    session_id: &str,
) -> Result<[u8; 32], ProtocolError> {
    Ok(qualifying_data(
        nonce,
        &csr_public_key_der(csr_der)?,
        session_id,
    ))
}

/// Proof that the node activated the credential:
/// `HMAC-SHA256(key = secret, session_id || nonce)`.
pub fn activation_proof(secret: &[u8], session_id: &str, nonce: &[u8; 32]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(session_id.as_bytes());
    mac.update(nonce);
    mac.finalize().into_bytes().into()
}

/// Checks an [`activation_proof`] in constant time.
pub fn verify_activation_proof(
    secret: &[u8],
    session_id: &str,
    nonce: &[u8; 32],
    proof: &[u8; 32],
) -> bool {
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret) else {
        return false;
    };
    mac.update(session_id.as_bytes());
    mac.update(nonce);
    mac.verify_slice(proof).is_ok()
}

#[cfg(test)]
#[path = "protocol/tests.rs"]
mod tests;
