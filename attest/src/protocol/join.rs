//! Join material: everything an admitted node receives to join its store's
//! services. Issued only after all five checks pass; it carries secrets, so it
//! travels only over the service's TLS connection and its `Debug` output hides
//! them.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// What the service hands an admitted node. Parts other than the node identity
/// are optional: a service issues those its issuers are configured for.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct JoinMaterial {
    /// The node identity certificate, issued from the CSR of the start request.
    pub identity: NodeIdentity,
    /// Ceph cluster configuration and this node's cephx key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceph: Option<CephJoin>,
    /// ACME account binding for the store's ACME server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme: Option<AcmeJoin>,
    /// Where the signed GitOps bundle comes from and who signs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitops: Option<GitopsJoin>,
    /// Where the node reports its progress after enrollment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enroll: Option<EnrollInfo>,
}

impl fmt::Debug for JoinMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinMaterial")
            .field("identity", &self.identity)
            .field("ceph", &self.ceph)
            .field("acme", &self.acme)
            .field("gitops", &self.gitops)
            .field("enroll", &self.enroll)
            .finish()
    }
}

/// The node's identity certificate (mTLS client/server certificate for
/// central services), its private key stays on the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct NodeIdentity {
    /// Leaf certificate first, then intermediates, PEM.
    pub cert_chain_pem: String,
    /// The CA that issued it (for verifying peers with the same identity CA), PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

/// Ceph cluster join material with a per-node cephx key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CephJoin {
    /// The cluster fsid (UUID).
    pub fsid: String,
    /// Monitor addresses as in ceph.conf's `mon_host`.
    pub mon_host: String,
    /// A complete minimal ceph.conf text.
    pub conf: String,
    /// The cephx entity name, e.g. `client.keel-node-<id>`.
    pub key_name: String,
    /// The cephx secret (base64 as printed by `ceph auth get-key`).
    pub key: String,
    /// The caps granted to the entity: service (`mon`, `osd`, `mgr`) -> cap string.
    pub caps: BTreeMap<String, String>,
}

impl fmt::Debug for CephJoin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CephJoin")
            .field("fsid", &self.fsid)
            .field("mon_host", &self.mon_host)
            .field("key_name", &self.key_name)
            .field("key", &"<redacted>")
            .field("caps", &self.caps)
            .finish()
    }
}

/// ACME external account binding (RFC 8555 §7.3.4) for the store's ACME server.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AcmeJoin {
    /// The ACME directory URL.
    pub directory_url: String,
    /// CA certificates to trust for the ACME server's TLS, PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle_pem: Option<String>,
    /// EAB key identifier.
    pub eab_kid: String,
    /// EAB HMAC key, base64url without padding (as ACME servers hand it out).
    pub eab_hmac_key: String,
}

impl fmt::Debug for AcmeJoin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcmeJoin")
            .field("directory_url", &self.directory_url)
            .field("eab_kid", &self.eab_kid)
            .field("eab_hmac_key", &"<redacted>")
            .finish()
    }
}

/// The signed GitOps bundle source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct GitopsJoin {
    /// The store the node was admitted to: bundles are signed for one store
    /// and the node refuses another store's. Absent from older services (the
    /// node then takes the store id from its seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// Repository URL (https).
    pub url: String,
    /// Branch or tag to follow.
    pub reference: String,
    /// Who may sign bundles: a public key PEM or an SSH allowed-signers text.
    pub trust_root: String,
    /// CA certificates to trust for the repository's TLS, PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle_pem: Option<String>,
}

/// Where to report after enrollment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct EnrollInfo {
    /// URL the node posts its progress reports to.
    pub report_url: String,
}
