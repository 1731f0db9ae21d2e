//! ACME External Account Binding: the key id + HMAC key a store's ACME server
//! (pebble in tests: `externalAccountMACKeys`) expects, handed to the node so it
//! can open its ACME account.
//!
//! Two ways to configure a store (exactly one):
//! - `keys = [{ id = "...", hmac = "..." }, ...]`, a **pool** (recommended):
//!   each admitted node gets a key of its own, recorded in the database
//!   (`eab_keys`); a retried or repeated enrollment gets the same key back.
//!   Revoking or re-enrolling the node marks its key revoked: it is never
//!   handed out again, and the admin is told to deactivate it at the CA (an
//!   ACME CA only learns keys from its own configuration, so the service
//!   cannot do that itself). Add keys to the CA and the pool before it runs
//!   out; an exhausted pool fails the enrollment with a message saying so.
//! - `key-id` + `hmac-key`, one key **shared** by the store's nodes: nothing
//!   can be taken back from one node; revoking tells the admin to rotate it.

use std::collections::BTreeMap;
use std::sync::Arc;

use keel_attest::protocol::AcmeJoin;
use serde::Deserialize;

use super::{IssueError, IssueRequest, Issuer, Material};
use crate::store::Store;

/// The `[stores.<id>.acme-eab]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AcmeEabConfig {
    /// ACME directory URL the node talks to.
    pub directory_url: String,
    /// Shared EAB key id configured on the ACME server (with `hmac-key`).
    #[serde(default)]
    pub key_id: Option<String>,
    /// Shared EAB HMAC key, base64url (as pebble's config holds it).
    #[serde(default)]
    pub hmac_key: Option<String>,
    /// Pool of per-node EAB keys (instead of `key-id`/`hmac-key`).
    #[serde(default)]
    pub keys: Vec<EabKey>,
    /// PEM CA bundle for the ACME server's TLS (absent: system roots).
    #[serde(default)]
    pub ca_bundle: Option<std::path::PathBuf>,
}

/// One EAB key of a pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EabKey {
    /// Key id as configured at the CA.
    pub id: String,
    /// HMAC key, base64url.
    pub hmac: String,
}

/// A store's keys, checked.
#[derive(Debug, Clone)]
enum Keys {
    Shared { id: String, hmac: String },
    Pool(BTreeMap<String, String>, Vec<String>),
}

#[derive(Debug, Clone)]
struct StoreEab {
    directory_url: String,
    ca_bundle: Option<std::path::PathBuf>,
    keys: Keys,
}

/// Hands out per-node (pool) or per-store (shared) EAB credentials.
pub struct AcmeEabIssuer {
    stores: BTreeMap<String, StoreEab>,
    store: Arc<dyn Store>,
    rt: tokio::runtime::Handle,
}

impl std::fmt::Debug for AcmeEabIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeEabIssuer")
            .field("stores", &self.stores.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl AcmeEabIssuer {
    /// An issuer for the stores that have an `acme-eab` table; pool
    /// assignments live in `store`, reached through the runtime `rt`.
    pub fn new(
        stores: BTreeMap<String, AcmeEabConfig>,
        store: Arc<dyn Store>,
        rt: tokio::runtime::Handle,
    ) -> Result<Self, IssueError> {
        let mut out = BTreeMap::new();
        for (id, c) in stores {
            let keys = match (c.key_id, c.hmac_key, c.keys.is_empty()) {
                (Some(id), Some(hmac), true) => Keys::Shared { id, hmac },
                (None, None, false) => {
                    let order: Vec<String> = c.keys.iter().map(|k| k.id.clone()).collect();
                    let map: BTreeMap<String, String> =
                        c.keys.into_iter().map(|k| (k.id, k.hmac)).collect();
                    if map.len() != order.len() {
                        return Err(IssueError::Config(format!(
                            "[stores.{id}.acme-eab] keys: a key id appears twice"
                        )));
                    }
                    Keys::Pool(map, order)
                }
                _ => {
                    return Err(IssueError::Config(format!(
                        "[stores.{id}.acme-eab] needs either keys = [{{ id, hmac }}, ...] \
                         (one key per node) or key-id and hmac-key (one shared key), not both"
                    )))
                }
            };
            out.insert(
                id,
                StoreEab {
                    directory_url: c.directory_url,
                    ca_bundle: c.ca_bundle,
                    keys,
                },
            );
        }
        Ok(Self {
            stores: out,
            store,
            rt,
        })
    }
}

fn db(e: impl std::fmt::Display) -> IssueError {
    IssueError::Backend {
        kind: "acme-eab",
        reason: format!("database: {e}"),
    }
}

impl Issuer for AcmeEabIssuer {
    fn kind(&self) -> &'static str {
        "acme-eab"
    }

    /// Pool assignments wait on the database (`Handle::block_on`), which
    /// must not run on an async worker.
    fn blocks(&self) -> bool {
        self.stores
            .values()
            .any(|s| matches!(s.keys, Keys::Pool(..)))
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
        let (kid, hmac) = match &c.keys {
            Keys::Shared { id, hmac } => (id.clone(), hmac.clone()),
            Keys::Pool(map, order) => {
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                let got = self
                    .rt
                    .block_on(self.store.eab_assign(req.store, req.node_id, order, now))
                    .map_err(db)?;
                let Some(kid) = got else {
                    return Err(IssueError::Config(format!(
                        "the EAB key pool of store {} is used up ({} keys, each handed out or revoked): \
                         add new keys at the ACME CA and to [stores.{}.acme-eab] keys",
                        req.store,
                        order.len(),
                        req.store
                    )));
                };
                let hmac = map.get(&kid).cloned().ok_or_else(|| {
                    IssueError::Config(format!(
                        "node {} holds EAB key {kid}, which is no longer in [stores.{}.acme-eab] keys: \
                         run `keel-enroll nodes reenroll {}` to give it a new key",
                        req.node_id, req.store, req.node_id
                    ))
                })?;
                (kid, hmac)
            }
        };
        tracing::info!(node = req.node_id, store = req.store, eab_kid = %kid, "issued EAB key");
        Ok(Some(Material::Acme(AcmeJoin {
            directory_url: c.directory_url.clone(),
            ca_bundle_pem,
            eab_kid: kid,
            eab_hmac_key: hmac,
        })))
    }

    fn revoke(&self, node_id: &str, store: &str) -> Result<Option<String>, IssueError> {
        let Some(c) = self.stores.get(store) else {
            return Ok(None);
        };
        match &c.keys {
            Keys::Shared { id, .. } => Ok(Some(format!(
                "store {store} shares one EAB key ({id}) among its nodes, so it cannot be taken \
                 back from {node_id} alone: rotate it (new key at the ACME CA and in \
                 [stores.{store}.acme-eab], then deactivate {id}), or switch the store to a key pool"
            ))),
            Keys::Pool(..) => {
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                let ids = self
                    .rt
                    .block_on(self.store.eab_revoke(store, node_id, now))
                    .map_err(db)?;
                Ok((!ids.is_empty()).then(|| {
                    format!(
                        "EAB key {} of {node_id} revoked (never handed out again): \
                         deactivate it at store {store}'s ACME CA (remove it from the CA's \
                         EAB key configuration) and from [stores.{store}.acme-eab] keys",
                        ids.join(", ")
                    )
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> AcmeEabConfig {
        toml::from_str(&format!("directory-url = \"https://acme/dir\"\n{extra}")).expect("toml")
    }

    async fn issuer(c: AcmeEabConfig) -> Result<AcmeEabIssuer, IssueError> {
        let dir = tempfile::tempdir().expect("tmp");
        let store = crate::store::open(&format!("sqlite:{}", dir.path().join("db").display()))
            .await
            .expect("store");
        let mut m = BTreeMap::new();
        m.insert("s1".to_string(), c);
        AcmeEabIssuer::new(m, store, tokio::runtime::Handle::current())
    }

    #[tokio::test]
    async fn exactly_one_kind_of_key_is_configured() {
        let shared = issuer(cfg("key-id = \"k\"\nhmac-key = \"h\"\n"))
            .await
            .expect("shared");
        assert!(!shared.blocks(), "a shared key needs no database");
        let pool = issuer(cfg(
            "keys = [{ id = \"a\", hmac = \"h1\" }, { id = \"b\", hmac = \"h2\" }]\n",
        ))
        .await
        .expect("pool");
        assert!(pool.blocks(), "pool assignments wait on the database");
        for bad in [
            "",
            "key-id = \"k\"\n",
            "key-id = \"k\"\nhmac-key = \"h\"\nkeys = [{ id = \"a\", hmac = \"h\" }]\n",
            "keys = [{ id = \"a\", hmac = \"h1\" }, { id = \"a\", hmac = \"h2\" }]\n",
        ] {
            let e = issuer(cfg(bad)).await.expect_err(bad);
            assert!(matches!(e, IssueError::Config(_)), "{bad:?}: {e}");
            eprintln!("{bad:?}: {e}");
        }
        assert!(toml::from_str::<AcmeEabConfig>(
            "directory-url = \"x\"\nkeys = [{ id = \"a\", hmac = \"h\", extra = 1 }]\n"
        )
        .is_err());
    }

    #[tokio::test]
    async fn shared_key_revoke_tells_the_admin_to_rotate() {
        let shared = issuer(cfg("key-id = \"k1\"\nhmac-key = \"h\"\n"))
            .await
            .expect("shared");
        let note = shared.revoke("n1", "s1").expect("revoke").expect("note");
        assert!(note.contains("rotate") && note.contains("k1"), "{note}");
        assert_eq!(shared.revoke("n1", "other").expect("revoke"), None);
    }
}
