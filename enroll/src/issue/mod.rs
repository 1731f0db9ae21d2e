//! Join-material issuers: small pluggable parts, one per kind of material.
//!
//! After every attestation check passed and the admission policy admitted a node,
//! the service asks each configured [`Issuer`] for its piece of the node's join
//! material (node identity certificate, Ceph key, ACME account binding, GitOps
//! source). An issuer that has nothing configured for the node's store returns
//! `Ok(None)`; an error aborts the enrollment (the node sees the reason and retries).
//!
//! Issuers are synchronous on purpose: some talk to blocking interfaces (librados,
//! files). The server calls them inline, or from `tokio::task::spawn_blocking`
//! when one of them blocks on I/O ([`Issuer::blocks`]).
//!
//! `ceph.rs` holds `CephConfig` (the `[stores.<id>.ceph]` table of the
//! service config) and `CephIssuer`, which returns [`Material::Ceph`] (a
//! `CephJoin`).

pub mod acme_eab;
pub mod ceph;
pub mod gitops;
pub mod node_cert;

use keel_attest::protocol::{AcmeJoin, CephJoin, GitopsJoin, NodeIdentity};

/// What an issuer gets to know about the admitted node.
#[derive(Debug, Clone)]
pub struct IssueRequest<'a> {
    /// The node's identity (stable across re-imaging; the node cert's SAN).
    pub node_id: &'a str,
    /// The store the node belongs to (keys per-store configuration).
    pub store: &'a str,
    /// Hex SHA-256 of the node's EK public key (its hardware identity).
    pub ek_sha256: &'a str,
    /// The node's PKCS#10 certificate signing request, DER.
    pub csr_der: &'a [u8],
}

/// One piece of join material, in the protocol's own types (keel-attest
/// `protocol::JoinMaterial` fields), so issuers build exactly what the node gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Material {
    /// Node identity certificate for mTLS to central services.
    Identity(NodeIdentity),
    /// Ceph join material for the store's cluster (per-node cephx key).
    Ceph(CephJoin),
    /// ACME External Account Binding for the store's ACME server.
    Acme(AcmeJoin),
    /// Where the node pulls its signed GitOps bundle from.
    Gitops(GitopsJoin),
}

/// Why an issuer could not issue.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The node's request was bad (e.g. a CSR that does not parse or is not self-signed).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The issuer's configuration is wrong (missing file, bad key).
    #[error("issuer configuration: {0}")]
    Config(String),
    /// A backend (Ceph, a file system) failed; retrying later may help.
    #[error("{kind} backend unavailable: {reason}")]
    Backend {
        /// Issuer kind.
        kind: &'static str,
        /// What went wrong.
        reason: String,
    },
}

/// A kind of join material. Implementations must be cheap to share across threads.
pub trait Issuer: Send + Sync {
    /// Short stable name: `node-cert`, `ceph`, `acme-eab`, `gitops`.
    fn kind(&self) -> &'static str;

    /// Issue this kind of material for an admitted node; `Ok(None)` when nothing is
    /// configured for the node's store. May block if [`Issuer::blocks`] says so.
    fn issue(&self, req: &IssueRequest<'_>) -> Result<Option<Material>, IssueError>;

    /// True when `issue` waits on I/O (a cluster, a remote service): the server
    /// then calls the issuers from `spawn_blocking` instead of inline.
    fn blocks(&self) -> bool {
        false
    }

    /// Withdraw what was issued to a node (on revoke / before re-enrolling).
    /// Default: nothing to withdraw (short-lived or shared material).
    fn revoke(&self, _node_id: &str, _store: &str) -> Result<(), IssueError> {
        Ok(())
    }
}
