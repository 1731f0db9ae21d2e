//! ACME External Account Binding: the key id + HMAC key a store's ACME server
//! (pebble in tests: `externalAccountMACKeys`) expects, handed to the node so it
//! can open its ACME account.

use std::collections::BTreeMap;

use keel_attest::protocol::AcmeJoin;
use serde::Deserialize;

use super::{IssueError, IssueRequest, Issuer, Material};

/// The `[stores.<id>.acme-eab]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AcmeEabConfig {
    /// ACME directory URL the node talks to.
    pub directory_url: String,
    /// EAB key id configured on the ACME server.
    pub key_id: String,
    /// EAB HMAC key, base64url (as pebble's config holds it).
    pub hmac_key: String,
    /// PEM CA bundle for the ACME server's TLS (absent: system roots).
    #[serde(default)]
    pub ca_bundle: Option<std::path::PathBuf>,
}

/// Hands out the configured per-store EAB credentials.
#[derive(Debug)]
pub struct AcmeEabIssuer {
    stores: BTreeMap<String, AcmeEabConfig>,
}

impl AcmeEabIssuer {
    /// An issuer for the stores that have an `acme-eab` table.
    pub fn new(stores: BTreeMap<String, AcmeEabConfig>) -> Self {
        Self { stores }
    }
}

impl Issuer for AcmeEabIssuer {
    fn kind(&self) -> &'static str {
        "acme-eab"
    }

    fn issue(&self, req: &IssueRequest<'_>) -> Result<Option<Material>, IssueError> {
        let Some(c) = self.stores.get(req.store) else {
            return Ok(None);
        };
        let ca_bundle_pem = match &c.ca_bundle {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| IssueError::Config(format!("reading {}: {e}", p.display())))?,
            ),
            None => None,
        };
        Ok(Some(Material::Acme(AcmeJoin {
            directory_url: c.directory_url.clone(),
            ca_bundle_pem,
            eab_kid: c.key_id.clone(),
            eab_hmac_key: c.hmac_key.clone(),
        })))
    }
}
