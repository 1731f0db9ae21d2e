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

use std::collections::BTreeMap;
use std::sync::Arc;

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

    /// Withdraw what was issued to a node (`nodes revoke`, `nodes reenroll`),
    /// after the node's status changed. `Ok(Some(note))` tells the admin what
    /// was withdrawn or what is left to do by hand (e.g. deactivate an EAB key
    /// at the CA); an error is shown to the admin and audited. Must be safe to
    /// repeat. May block like [`Issuer::issue`]; callers run it off the async
    /// workers. Default: nothing to withdraw (short-lived or shared material).
    fn revoke(&self, _node_id: &str, _store: &str) -> Result<Option<String>, IssueError> {
        Ok(None)
    }
}

/// The issuers besides the node certificate, from the service configuration:
/// ACME EAB, GitOps and (when a store has a `ceph` table) Ceph. Shared by the
/// server and the admin commands (which call their `revoke`). Must be called
/// inside a tokio runtime (the EAB pool reaches the store through it).
pub fn from_config(
    c: &crate::config::Config,
    store: Arc<dyn crate::store::Store>,
) -> Result<Vec<Arc<dyn Issuer>>, IssueError> {
    let acme = c
        .stores
        .iter()
        .filter_map(|(k, v)| v.acme_eab.clone().map(|a| (k.clone(), a)))
        .collect();
    let gitops: BTreeMap<_, _> = c
        .stores
        .iter()
        .filter_map(|(k, v)| v.gitops.clone().map(|a| (k.clone(), a)))
        .collect();
    let ceph: BTreeMap<_, _> = c
        .stores
        .iter()
        .filter_map(|(k, v)| v.ceph.clone().map(|a| (k.clone(), a)))
        .collect();
    let rt = tokio::runtime::Handle::try_current()
        .map_err(|e| IssueError::Config(format!("issuers need a tokio runtime: {e}")))?;
    let mut issuers: Vec<Arc<dyn Issuer>> = vec![
        Arc::new(acme_eab::AcmeEabIssuer::new(acme, store, rt)?),
        Arc::new(gitops::GitopsIssuer::load(&gitops)?),
    ];
    if !ceph.is_empty() {
        issuers.push(Arc::new(ceph::CephIssuer::new(ceph)));
    }
    Ok(issuers)
}
