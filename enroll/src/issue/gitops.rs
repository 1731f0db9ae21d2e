//! GitOps source: where a store's nodes pull their signed bundle from, the
//! trust root they check its signature against, and the store id the
//! bundle's signed header must name.

use std::collections::BTreeMap;
use std::path::PathBuf;

use keel_attest::protocol::GitopsJoin;
use serde::Deserialize;

use super::{IssueError, IssueRequest, Issuer, Material};

/// The `[stores.<id>.gitops]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GitopsConfig {
    /// Repository URL.
    pub url: String,
    /// Branch, tag or commit.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// PEM file with the bundle signing public key.
    pub trust_root: PathBuf,
    /// PEM CA bundle for the Git server's TLS (absent: system roots).
    #[serde(default)]
    pub ca_bundle: Option<PathBuf>,
}

/// Resolved per-store GitOps sources (files read once at start-up).
#[derive(Debug)]
pub struct GitopsIssuer {
    stores: BTreeMap<String, Material>,
}

impl GitopsIssuer {
    /// Reads the trust roots and CA bundles named by the config.
    pub fn load(stores: &BTreeMap<String, GitopsConfig>) -> Result<Self, IssueError> {
        let read = |p: &PathBuf| {
            std::fs::read_to_string(p)
                .map_err(|e| IssueError::Config(format!("reading {}: {e}", p.display())))
        };
        let mut out = BTreeMap::new();
        for (store, c) in stores {
            let ca_bundle_pem = match &c.ca_bundle {
                Some(p) => Some(read(p)?),
                None => None,
            };
            out.insert(
                store.clone(),
                Material::Gitops(GitopsJoin {
                    store: Some(store.clone()),
                    url: c.url.clone(),
                    reference: c.git_ref.clone(),
                    trust_root: read(&c.trust_root)?,
                    ca_bundle_pem,
                }),
            );
        }
        Ok(Self { stores: out })
    }
}

impl Issuer for GitopsIssuer {
    fn kind(&self) -> &'static str {
        "gitops"
    }

    fn issue(&self, req: &IssueRequest<'_>) -> Result<Option<Material>, IssueError> {
        Ok(self.stores.get(req.store).cloned())
    }
}
