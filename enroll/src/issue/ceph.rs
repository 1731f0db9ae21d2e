//! Ceph join material: a per-node cephx key with least-privilege caps.
//!
//! PLACEHOLDER owned by the testbed helper, who replaces it with the real
//! implementation (creating keys through the Ceph admin interface). Until then
//! it refuses to issue, so a store configured for Ceph fails enrollment loudly.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{IssueError, IssueRequest, Issuer, Material};

/// The `[stores.<id>.ceph]` table of the service configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CephConfig {
    /// ceph.conf of the store's cluster (as the admin sees it).
    pub conf: std::path::PathBuf,
    /// Keyring of the admin entity used to create node keys.
    pub admin_keyring: std::path::PathBuf,
}

/// Issues cephx keys, one per node, per store cluster.
#[derive(Debug)]
pub struct CephIssuer {
    stores: BTreeMap<String, CephConfig>,
}

impl CephIssuer {
    /// An issuer for the stores that have a Ceph table.
    pub fn new(stores: BTreeMap<String, CephConfig>) -> Self {
        Self { stores }
    }
}

impl Issuer for CephIssuer {
    fn kind(&self) -> &'static str {
        "ceph"
    }

    fn issue(&self, req: &IssueRequest<'_>) -> Result<Option<Material>, IssueError> {
        if !self.stores.contains_key(req.store) {
            return Ok(None);
        }
        Err(IssueError::Backend {
            kind: "ceph",
            reason: "ceph issuer not implemented yet".into(),
        })
    }
}
