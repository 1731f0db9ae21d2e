//! Admin operations behind the CLI: allow-list import, one-time tokens, node
//! approval, revocation, re-enrollment and the audit log. Each change is
//! recorded in the audit log by the store, in the same transaction.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use sha2::{Digest, Sha256};

use crate::admission::{AllowEntry, NodeRow, NodeStatus};
use crate::audit::{self, Entry};
use crate::audit_sign::{AuditKey, AuditPub, HeadReport, SignedHead};
use crate::issue::Issuer;
use crate::store::{NodeKey, Store};

/// The actor of admin commands: `admin:<name>` of the real user id (getuid,
/// looked up in the user database), never environment variables such as
/// `USER` or `SUDO_USER`, which the caller sets at will. When the kernel's
/// audit login uid (`/proc/self/loginuid`, set at login, not changeable by
/// the user) names someone else, as under sudo, ` (login <name>)` follows.
pub fn os_actor() -> String {
    use nix::unistd::{getuid, Uid, User};
    let name = |u: Uid| {
        User::from_uid(u)
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| format!("uid-{u}"))
    };
    let uid = getuid();
    let mut actor = format!("admin:{}", name(uid));
    let login = std::fs::read_to_string("/proc/self/loginuid")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|&l| l != u32::MAX)
        .map(Uid::from_raw);
    if let Some(l) = login.filter(|&l| l != uid) {
        actor.push_str(&format!(" (login {})", name(l)));
    }
    actor
}

/// What `audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Rows in the chain.
    pub rows: usize,
    /// Hash of the last row.
    pub head: String,
    /// The signed heads.
    pub heads: HeadReport,
}

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

/// An EK hash as an admin types it: 64 hex digits, returned lowercase.
pub fn parse_ek(ek: &str) -> anyhow::Result<String> {
    let ek = ek.trim().to_ascii_lowercase();
    anyhow::ensure!(
        ek.len() == 64 && ek.bytes().all(|b| b.is_ascii_hexdigit()),
        "{ek:?} is not a hex SHA-256 of an EK (64 hex digits)"
    );
    Ok(ek)
}

/// Admin context: the store and the config hash for audit rows.
#[derive(Clone)]
pub struct Admin {
    /// Storage.
    pub store: Arc<dyn Store>,
    /// Config hash.
    pub config_sha256: String,
    /// Who (`admin:<user>`, see [`os_actor`]).
    pub actor: String,
    /// The audit signing key (signs the chain tip after each change and exports).
    pub audit_key: Arc<AuditKey>,
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
        self.signed().await;
        Ok(n)
    }

    /// Creates a one-time token for `store` valid `ttl_secs`; returns it (shown
    /// once; only its SHA-256 is stored).
    pub async fn create_token(&self, store: &str, ttl_secs: i64) -> anyhow::Result<String> {
        self.create_token_for(store, ttl_secs, None).await
    }

    /// Creates a one-time token that, when `ek_sha256` is given, admits only
    /// the TPM with that EK (SHA-256 of its SubjectPublicKeyInfo, hex).
    pub async fn create_token_for(
        &self,
        store: &str,
        ttl_secs: i64,
        ek_sha256: Option<&str>,
    ) -> anyhow::Result<String> {
        anyhow::ensure!(
            crate::server::valid_id(store),
            "{store:?} is not a valid store id"
        );
        anyhow::ensure!(ttl_secs > 0, "a token must be valid for some time");
        let ek = ek_sha256.map(parse_ek).transpose()?;
        let token = format!("keel-{}", hex::encode(rand::random::<[u8; 20]>()));
        let hash = hex::encode(Sha256::digest(token.as_bytes()));
        let expires = time::OffsetDateTime::now_utc().unix_timestamp() + ttl_secs;
        let bound = match &ek {
            Some(ek) => format!(", bound to EK {ek}"),
            None => String::new(),
        };
        let mut e = self.entry(
            "token-create",
            "",
            format!("token {}… valid {ttl_secs}s{bound}", &hash[..12]),
        );
        e.store_id = store.into();
        self.store
            .create_token(&hash, store, ek.as_deref(), expires, e)
            .await?;
        self.signed().await;
        Ok(token)
    }

    /// Lists nodes.
    pub async fn nodes(&self, status: Option<NodeStatus>) -> anyhow::Result<Vec<NodeRow>> {
        Ok(self.store.nodes(status).await?)
    }

    /// Finds the node an admin names: `STORE/NODE`, or `NODE` when only one
    /// store has a node of that id.
    pub async fn resolve(&self, node: &str) -> anyhow::Result<NodeKey> {
        if let Some((store, id)) = node.split_once('/') {
            return Ok(NodeKey::new(store, id));
        }
        let found: Vec<NodeRow> = self
            .store
            .nodes(None)
            .await?
            .into_iter()
            .filter(|n| n.node_id == node)
            .collect();
        match found.as_slice() {
            [] => anyhow::bail!("no node {node} in any store (see `keel-enroll nodes list`)"),
            [one] => Ok(NodeKey::new(&one.store_id, &one.node_id)),
            many => {
                let stores: Vec<&str> = many.iter().map(|n| n.store_id.as_str()).collect();
                anyhow::bail!(
                    "node id {node} exists in stores {}: name it as STORE/{node}",
                    stores.join(", ")
                )
            }
        }
    }

    fn node_entry(&self, action: &str, key: &NodeKey, detail: String) -> Entry {
        let mut e = self.entry(action, &key.node_id, detail);
        e.store_id = key.store_id.clone();
        e
    }

    /// Approves a pending node.
    pub async fn approve(&self, node: &str) -> anyhow::Result<()> {
        let key = self.resolve(node).await?;
        let e = self.node_entry("approve", &key, "pending -> approved".into());
        self.store
            .set_status(&key, &[NodeStatus::Pending], NodeStatus::Approved, None, e)
            .await?;
        self.signed().await;
        Ok(())
    }

    /// Revokes a node, then takes its material back: its node certificates
    /// are marked revoked (CRL) and every issuer's `revoke` runs. Revoking a
    /// revoked node again retries the withdrawal (after a failure).
    pub async fn revoke(&self, node: &str) -> anyhow::Result<Withdrawn> {
        let key = self.resolve(node).await?;
        let e = self.node_entry("revoke", &key, "-> revoked".into());
        use NodeStatus::*;
        self.store
            .set_status(
                &key,
                &[Pending, Approved, Admitted, Revoked],
                Revoked,
                None,
                e,
            )
            .await?;
        let w = self.withdraw(&key).await;
        self.signed().await;
        w
    }

    /// Deletes a pending or revoked node's row, freeing its id in its store
    /// (an admitted node must be revoked first, so its secrets are taken back).
    pub async fn delete(&self, node: &str) -> anyhow::Result<()> {
        let key = self.resolve(node).await?;
        let e = self.node_entry("delete", &key, "row deleted".into());
        use NodeStatus::*;
        self.store
            .delete_node(&key, &[Pending, Revoked], e)
            .await
            .map_err(|e| anyhow::anyhow!("{e} (revoke an enrolled node before deleting it)"))?;
        self.signed().await;
        Ok(())
    }

    /// Allows an enrolled (or revoked) node to enroll again: with the same EK
    /// after re-imaging, or bound to a new EK after an RMA. What the node held
    /// before is taken back as on revoke (it gets fresh material when it enrolls).
    pub async fn reenroll(&self, node: &str, new_ek: Option<&str>) -> anyhow::Result<Withdrawn> {
        let key = self.resolve(node).await?;
        let new_ek = new_ek.map(parse_ek).transpose()?;
        let detail = match &new_ek {
            Some(ek) => format!("re-enroll with new EK {ek}"),
            None => "re-enroll with the same EK".into(),
        };
        let e = self.node_entry("reenroll", &key, detail);
        use NodeStatus::*;
        self.store
            .set_status(
                &key,
                &[Admitted, Revoked, Pending],
                Approved,
                new_ek.as_deref(),
                e,
            )
            .await?;
        let w = self.withdraw(&key).await;
        self.signed().await;
        w
    }

    /// Revokes the node's certificates and calls every issuer's `revoke`
    /// (off the async workers: issuers may block); each outcome is audited.
    async fn withdraw(&self, key: &NodeKey) -> anyhow::Result<Withdrawn> {
        let (node, store_id) = (key.node_id.as_str(), key.store_id.as_str());
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut out = Withdrawn {
            cert_serials: self.store.revoke_certs(node, store_id, now).await?,
            ..Default::default()
        };
        let e = self.node_entry(
            "cert-revoke",
            key,
            format!(
                "node certificates revoked: [{}]",
                out.cert_serials.join(", ")
            ),
        );
        self.store.audit(e).await?;
        for issuer in &self.issuers {
            let (i, n, st) = (issuer.clone(), node.to_owned(), store_id.to_owned());
            let r = tokio::task::spawn_blocking(move || i.revoke(&n, &st))
                .await
                .map_err(|e| anyhow::anyhow!("{} revoke panicked: {e}", issuer.kind()))?;
            let kind = issuer.kind().to_string();
            let mut e = self.node_entry("issuer-revoke", key, String::new());
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

    /// Signs the chain tip after a change; a failure is reported, the change stands.
    async fn signed(&self) {
        if let Err(e) = self.sign_head().await {
            tracing::warn!("audit chain head not signed: {e}");
        }
    }

    /// Signs the chain tip if it moved (see [`crate::audit_heads::sign_tip`]).
    pub async fn sign_head(&self) -> anyhow::Result<Option<SignedHead>> {
        Ok(crate::audit_heads::sign_tip(&*self.store, &self.audit_key).await?)
    }

    /// Signs the tip of a chain that has no signed head yet (written before
    /// signed heads existed), after verifying the whole chain.
    pub async fn audit_adopt(&self) -> anyhow::Result<Option<SignedHead>> {
        let rows = self.store.audit_rows().await?;
        audit::verify(&rows).context("audit chain does not verify; not adopting it")?;
        Ok(crate::audit_heads::adopt(&*self.store, &self.audit_key).await?)
    }

    /// Verifies the audit chain and its signed heads against the configured
    /// audit key; returns (rows, head hash).
    pub async fn audit_verify(&self) -> anyhow::Result<(usize, String)> {
        let r = self.audit_verify_with(None).await?;
        Ok((r.rows, r.head))
    }

    /// Verifies the hash chain, then every signed head against `key` (default:
    /// the public half of the configured audit key).
    pub async fn audit_verify_with(&self, key: Option<&AuditPub>) -> anyhow::Result<VerifyReport> {
        let key = key.unwrap_or(self.audit_key.public());
        let rows = self.store.audit_rows().await?;
        let (n, head) = audit::verify(&rows)?;
        let heads = self.store.audit_heads().await?;
        let heads = crate::audit_sign::verify_heads(&rows, &heads, key)?;
        Ok(VerifyReport {
            rows: n,
            head,
            heads,
        })
    }

    /// Writes `out/audit/edge/YYYYMMDD.json` for `day` (`YYYY-MM-DD`, `today`
    /// or `yesterday`, UTC): the day's rows, the signed chain head, the
    /// inventory as it stands and, given the loaded `config`, its hash and
    /// its trust inputs' hashes ([`crate::evidence`]); and its detached
    /// signature `YYYYMMDD.json.sig`. Returns the path.
    pub async fn audit_export(
        &self,
        day: &str,
        out: &Path,
        config: Option<&crate::config::Loaded>,
    ) -> anyhow::Result<std::path::PathBuf> {
        let day = crate::evidence::resolve_day(day, time::OffsetDateTime::now_utc())?;
        let day = day.as_str();
        // Collected first: a trust input that cannot be read stops the
        // export before anything is signed or written.
        let config = config
            .map(crate::evidence::ConfigEvidence::collect)
            .transpose()?;
        self.sign_head().await.context("signing the chain head")?;
        let rows = self.store.audit_rows().await?;
        let mut doc = audit::export_day(&rows, day).context("audit chain does not verify")?;
        doc.nodes = self.nodes(None).await?.iter().map(Into::into).collect();
        doc.config = config;
        doc.exported_at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)?;
        let heads = self.store.audit_heads().await?;
        crate::audit_sign::verify_heads(&rows, &heads, self.audit_key.public())
            .context("audit chain heads do not verify")?;
        let signed = heads
            .into_iter()
            .rev()
            .find(|h| h.seq == doc.chain_head_seq);
        doc.signed_head = match signed {
            Some(h) => Some(h),
            // Rows arrived since the signature above; the whole chain and
            // every head have just been verified, so the new tip may be signed.
            None if doc.chain_head_seq > 0 => {
                let h = self
                    .audit_key
                    .sign_head(doc.chain_head_seq, &doc.chain_head_hash);
                self.store.put_head(h.clone()).await?;
                Some(h)
            }
            None => None,
        };
        let path = audit::export_path(out, day);
        let json = serde_json::to_vec_pretty(&doc)?;
        keel_cmd::fs::write_atomic(&path, &json, 0o600)
            .with_context(|| format!("writing {}", path.display()))?;
        crate::audit_sign::sign_file(&self.audit_key, &path)?;
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
