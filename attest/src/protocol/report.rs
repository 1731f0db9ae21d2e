//! The calls a node makes after enrollment, authenticated by its node
//! identity: the progress report (`POST /v1/nodes/report`: the applied GitOps
//! bundle revision and a status line) and the certificate renewal
//! (`POST /v1/nodes/renew`), plus the CRL path. The request carries the node
//! certificate (issued at enrollment) and a signature over the exact body bytes
//! made with the node key. The body carries a timestamp; the service refuses
//! requests older than a few minutes, so a captured one cannot be replayed later.
//!
//! The messages live here, with the rest of the protocol, because both sides
//! need them: the node's client sends them, the service decodes them.

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
