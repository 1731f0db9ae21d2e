//! The node's progress report after enrollment (`POST /v1/nodes/report`):
//! the applied GitOps bundle revision and a status line. It is authenticated by
//! the node identity: the request carries the node certificate (issued at
//! enrollment) and a signature over the exact body bytes made with the node key.
//! The body carries a timestamp; the service refuses reports older than a few
//! minutes, so a captured report cannot be replayed later.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Path of the node certificate renewal call (authenticated like a report).
pub const RENEW_PATH: &str = "/v1/nodes/renew";
/// Path of the node certificate revocation list (DER, signed by the node CA).
pub const CRL_PATH: &str = "/v1/crl";

/// Path of the report call.
pub const REPORT_PATH: &str = "/v1/nodes/report";
/// Header carrying the node certificate, base64 DER.
pub const CERT_HEADER: &str = "x-keel-node-cert";
/// Header carrying the signature over the body, base64 (ECDSA: ASN.1 DER;
/// RSA: PKCS#1 v1.5 SHA-256; Ed25519: raw).
pub const SIGNATURE_HEADER: &str = "x-keel-signature";

/// What the node reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct NodeReport {
    /// The node id (must equal the certificate's name).
    pub node_id: String,
    /// The GitOps bundle revision applied (commit id or tag).
    pub revision: String,
    /// Short status, e.g. `applied`, `failed: <why>`.
    pub status: String,
    /// When the node made the report.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// The two header values for a report body: (certificate, signature).
pub fn sign_report_headers(
    body: &[u8],
    cert_der: &[u8],
    sign: impl FnOnce(&[u8]) -> Vec<u8>,
) -> (String, String) {
    (STANDARD.encode(cert_der), STANDARD.encode(sign(body)))
}

/// A node certificate renewal request (`POST /v1/nodes/renew`), signed like a
/// report with the current, valid node key and certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RenewRequest {
    /// The node id (must equal the certificate's name).
    pub node_id: String,
    /// PKCS#10 CSR for the new certificate, DER.
    pub csr: crate::protocol::B64,
    /// When the node made the request (refused when minutes off).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// The renewed identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RenewResponse {
    /// The new certificate (and the node CA).
    pub identity: crate::protocol::NodeIdentity,
}
