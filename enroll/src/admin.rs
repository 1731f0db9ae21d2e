//! Admin operations behind the CLI: allow-list import, one-time tokens, node
//! approval, revocation, re-enrollment and the audit log. Each change is
//! recorded in the audit log by the store, in the same transaction.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use sha2::{Digest, Sha256};

use crate::admission::{AllowEntry, NodeRow, NodeStatus};
use crate::audit::{self, Entry};
use crate::issue::Issuer;
use crate::store::Store;

/// Parses the purchasing allow-list CSV: `ek_sha256,serial,store` per line; an
/// optional header line, blank lines and `#` comments are skipped.
pub fn parse_allowlist(text: &str) -> Result<Vec<AllowEntry>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line
            .split(',')
            .map(|s| s.trim().trim_matches('"'))
            .collect();
        if i == 0
            && f.first()
                .is_some_and(|h| h.eq_ignore_ascii_case("ek_sha256"))
        {
            continue;
        }
        let [ek, serial, store] = f.as_slice() else {
            return Err(format!(
                "line {}: want 3 fields ek_sha256,serial,store",
                i + 1
            ));
        };
        let ek = ek.to_ascii_lowercase();
        if ek.len() != 64 || !ek.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("line {}: {ek:?} is not a hex SHA-256", i + 1));
        }
        if !crate::server::valid_id(store) {
            return Err(format!("line {}: {store:?} is not a valid store id", i + 1));
        }
        out.push(AllowEntry {
            ek_sha256: ek,
            serial: serial.to_string(),
            store_id: store.to_string(),
        });
    }
    Ok(out)
}

/// Admin context: the store and the config hash for audit rows.
#[derive(Clone)]
pub struct Admin {
    /// Storage.
    pub store: Arc<dyn Store>,
    /// Config hash.
    pub config_sha256: String,
    /// Who (`admin:<user>`).
    pub actor: String,
    /// The join-material issuers whose `revoke` withdraws a node's material.
    pub issuers: Vec<Arc<dyn Issuer>>,
}

/// What revoking or re-enrolling a node took back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Withdrawn {
    /// Node certificate serials newly revoked (listed in `GET /v1/crl`).
    pub cert_serials: Vec<String>,
    /// Per issuer that withdrew something: (kind, what was done / is left to do).
    pub notes: Vec<(String, String)>,
    /// Per issuer whose revoke failed: (kind, error). The node's status has
    /// changed anyway; that material may still work until retried.
    pub failures: Vec<(String, String)>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").field("actor", &self.actor).finish()
    }
}

impl Admin {
    fn entry(&self, action: &str, node: &str, detail: String) -> Entry {
        Entry {
            actor: self.actor.clone(),
            action: action.into(),
            node_id: node.into(),
            decision: "ok".into(),
            detail,
            config_sha256: self.config_sha256.clone(),
            ..Default::default()
        }
    }

    /// Imports an allow-list CSV file; returns the number of entries.
    pub async fn import_allowlist(&self, path: &Path) -> anyhow::Result<usize> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let entries = parse_allowlist(&text).map_err(anyhow::Error::msg)?;
        let n = entries.len();
        let detail = format!(
            "{n} entries from {} (sha256 {})",
            path.display(),
            hex::encode(Sha256::digest(text.as_bytes()))
        );
        self.store
            .import_allow(entries, self.entry("allowlist-import", "", detail))
            .await?;
        Ok(n)
    }

    /// Creates a one-time token for `store` valid `ttl_secs`; returns it (shown
    /// once; only its SHA-256 is stored).
    pub async fn create_token(&self, store: &str, ttl_secs: i64) -> anyhow::Result<String> {
        anyhow::ensure!(
            crate::server::valid_id(store),
            "{store:?} is not a valid store id"
        );
        let token = format!("keel-{}", hex::encode(rand::random::<[u8; 20]>()));
        let hash = hex::encode(Sha256::digest(token.as_bytes()));
        let expires = time::OffsetDateTime::now_utc().unix_timestamp() + ttl_secs;
        let mut e = self.entry(
            "token-create",
            "",
            format!("token {}… valid {ttl_secs}s", &hash[..12]),
        );
        e.store_id = store.into();
        self.store.create_token(&hash, store, expires, e).await?;
        Ok(token)
    }

    /// Lists nodes.
    pub async fn nodes(&self, status: Option<NodeStatus>) -> anyhow::Result<Vec<NodeRow>> {
        Ok(self.store.nodes(status).await?)
    }

    /// Approves a pending node.
    pub async fn approve(&self, node: &str) -> anyhow::Result<()> {
        let e = self.entry("approve", node, "pending -> approved".into());
        self.store
            .set_status(node, &[NodeStatus::Pending], NodeStatus::Approved, None, e)
            .await?;
        Ok(())
    }

    /// Revokes a node, then takes its material back: its node certificates
    /// are marked revoked (CRL) and every issuer's `revoke` runs. Revoking a
    /// revoked node again retries the withdrawal (after a failure).
    pub async fn revoke(&self, node: &str) -> anyhow::Result<Withdrawn> {
        let store_id = self.store_of(node).await?;
        let e = self.entry("revoke", node, "-> revoked".into());
        use NodeStatus::*;
        self.store
            .set_status(
                node,
                &[Pending, Approved, Admitted, Revoked],
                Revoked,
                None,
                e,
            )
            .await?;
        self.withdraw(node, &store_id).await
    }

    /// Allows an enrolled (or revoked) node to enroll again: with the same EK
    /// after re-imaging, or bound to a new EK after an RMA. What the node held
    /// before is taken back as on revoke (it gets fresh material when it enrolls).
    pub async fn reenroll(&self, node: &str, new_ek: Option<&str>) -> anyhow::Result<Withdrawn> {
        if let Some(ek) = new_ek {
            anyhow::ensure!(
                ek.len() == 64 && ek.bytes().all(|b| b.is_ascii_hexdigit()),
                "{ek:?} is not a hex SHA-256"
            );
        }
        let store_id = self.store_of(node).await?;
        let new_ek = new_ek.map(|s| s.to_ascii_lowercase());
        let detail = match &new_ek {
            Some(ek) => format!("re-enroll with new EK {ek}"),
            None => "re-enroll with the same EK".into(),
        };
        let e = self.entry("reenroll", node, detail);
        use NodeStatus::*;
        self.store
            .set_status(
                node,
                &[Admitted, Revoked, Pending],
                Approved,
                new_ek.as_deref(),
                e,
            )
            .await?;
        self.withdraw(node, &store_id).await
    }

    async fn store_of(&self, node: &str) -> anyhow::Result<String> {
        let nodes = self.store.nodes(None).await?;
        let n = nodes
            .into_iter()
            .find(|n| n.node_id == node)
            .with_context(|| format!("no node {node} (see `keel-enroll nodes list`)"))?;
        Ok(n.store_id)
    }

    /// Revokes the node's certificates and calls every issuer's `revoke`
    /// (off the async workers: issuers may block); each outcome is audited.
    async fn withdraw(&self, node: &str, store_id: &str) -> anyhow::Result<Withdrawn> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut out = Withdrawn {
            cert_serials: self.store.revoke_certs(node, store_id, now).await?,
            ..Default::default()
        };
        let mut e = self.entry(
            "cert-revoke",
            node,
            format!(
                "node certificates revoked: [{}]",
                out.cert_serials.join(", ")
            ),
        );
        e.store_id = store_id.into();
        self.store.audit(e).await?;
        for issuer in &self.issuers {
            let (i, n, st) = (issuer.clone(), node.to_owned(), store_id.to_owned());
            let r = tokio::task::spawn_blocking(move || i.revoke(&n, &st))
                .await
                .map_err(|e| anyhow::anyhow!("{} revoke panicked: {e}", issuer.kind()))?;
            let kind = issuer.kind().to_string();
            let mut e = self.entry("issuer-revoke", node, String::new());
            e.store_id = store_id.into();
            match r {
                Ok(None) => continue,
                Ok(Some(note)) => {
                    e.detail = format!("{kind}: {note}");
                    out.notes.push((kind, note));
                }
                Err(err) => {
                    e.decision = format!("failed:{kind}");
                    e.detail = format!("{kind}: {err}");
                    out.failures.push((kind, err.to_string()));
                }
            }
            self.store.audit(e).await?;
        }
        Ok(out)
    }

    /// Verifies the audit chain; returns (rows, head hash).
    pub async fn audit_verify(&self) -> anyhow::Result<(usize, String)> {
        let rows = self.store.audit_rows().await?;
        Ok(audit::verify(&rows)?)
    }

    /// Writes `out/audit/edge/YYYYMMDD.json` for `day`; returns the path.
    pub async fn audit_export(&self, day: &str, out: &Path) -> anyhow::Result<std::path::PathBuf> {
        time::Date::parse(
            day,
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .with_context(|| format!("{day:?} is not YYYY-MM-DD"))?;
        let rows = self.store.audit_rows().await?;
        let doc = audit::export_day(&rows, day).context("audit chain does not verify")?;
        let path = audit::export_path(out, day);
        let json = serde_json::to_vec_pretty(&doc)?;
        audit::write_atomic(&path, &json).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_csv() {
        let ek = "AB".repeat(32);
        let text = format!("ek_sha256,serial,store\n# comment\n\n{ek},SN1,store-1\n");
        let v = parse_allowlist(&text).expect("parses");
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].ek_sha256, "ab".repeat(32));
        assert_eq!(v[0].store_id, "store-1");
        for bad in [
            format!("{ek},SN1"),
            "zz,SN,store-1".to_string(),
            format!("{ek},SN,Store 1"),
        ] {
            assert!(parse_allowlist(&bad).is_err(), "{bad}");
        }
    }
}
