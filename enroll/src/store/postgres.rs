//! PostgreSQL backend for fleets served by several replicas. Sessions live in
//! the database so a finish may reach another replica than its start; admission
//! and audit appends take one transaction-scoped advisory lock, which keeps the
//! hash chain linear across replicas.

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, PoolError, Runtime};

use super::schema::{fill_decision, MIGRATIONS, PG_AUDIT_GUARD};
use super::{NodeKey, SessionRow, Store, StoreError, Taken};
use crate::admission::{
    decide, AllowEntry, Claim, EkCertInfo, Facts, NodeRow, NodeStatus, Outcome, TokenRow, Verdict,
};
use crate::audit::{next_row, now_rfc3339, Entry, Row};
use crate::audit_sign::SignedHead;

/// Advisory lock key serializing chain appends (ASCII "keelaud").
const AUDIT_LOCK: i64 = 0x006b_6565_6c61_7564;

/// The PostgreSQL store.
pub struct PgStore {
    pub(super) pool: Pool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgStore")
    }
}

pub(super) fn pool_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Pool(e.to_string())
}

/// An error and its causes, `: `-joined.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl PgStore {
    /// Connects (pool, TLS as the URL's `sslmode` says, see
    /// [`super::pg_url`]) and migrates.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let (pg, settings) = super::pg_url::parse(url)?;
        let tls = super::pg_tls::RustlsConnect::new(settings.clone())?;
        let mgr = Manager::from_config(pg, tls, ManagerConfig::default());
        let pool = Pool::builder(mgr)
            .max_size(16)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(pool_err)?;
        let s = Self { pool };
        // The first connection: a failure here gets the cause and the fix.
        if let Err(e) = s.pool.get().await {
            let cause = match &e {
                PoolError::Backend(b) => error_chain(b),
                other => other.to_string(),
            };
            let hint = super::pg_url::hint(&settings, &cause);
            return Err(StoreError::Connect {
                target: settings.target.clone(),
                mode: if settings.explicit {
                    settings.mode.as_str().to_owned()
                } else {
                    format!(
                        "{}, the default for this host as the URL sets none",
                        settings.mode.as_str()
                    )
                },
                cause,
                hint: if hint.is_empty() {
                    hint
                } else {
                    format!("; {hint}")
                },
            });
        }
        s.migrate().await?;
        Ok(s)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&AUDIT_LOCK])
            .await?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS keel_schema (version BIGINT NOT NULL)")
            .await?;
        let version: i64 = tx
            .query_opt("SELECT version FROM keel_schema", &[])
            .await?
            .map(|r| r.get(0))
            .unwrap_or(0);
        for m in MIGRATIONS.iter().skip(version as usize) {
            tx.batch_execute(m).await?;
        }
        tx.execute("DELETE FROM keel_schema", &[]).await?;
        tx.execute(
            "INSERT INTO keel_schema (version) VALUES ($1)",
            &[&(MIGRATIONS.len() as i64)],
        )
        .await?;
        tx.batch_execute(PG_AUDIT_GUARD).await?;
        tx.commit().await?;
        Ok(())
    }
}

fn node_from(r: &tokio_postgres::Row) -> NodeRow {
    let status: String = r.get(3);
    NodeRow {
        node_id: r.get(0),
        store_id: r.get(1),
        ek_sha256: r.get(2),
        status: NodeStatus::parse(&status).unwrap_or(NodeStatus::Revoked),
        release: r.get(4),
        updated_at: r.get(5),
        revision: r.get(6),
        report: r.get(7),
        ek_cert: ek_cert_from(r, 8),
    }
}

/// The EK certificate names in columns `at`, `at + 1`, `at + 2`.
fn ek_cert_from(r: &tokio_postgres::Row, at: usize) -> Option<EkCertInfo> {
    let subject: Option<String> = r.get(at);
    subject.map(|subject| EkCertInfo {
        subject,
        issuer: r.get::<_, Option<String>>(at + 1).unwrap_or_default(),
        serial: r.get::<_, Option<String>>(at + 2).unwrap_or_default(),
    })
}

/// The EK certificate names as three nullable columns.
fn ek_cols(ek: &Option<EkCertInfo>) -> [Option<String>; 3] {
    match ek {
        Some(e) => [
            Some(e.subject.clone()),
            Some(e.issuer.clone()),
            Some(e.serial.clone()),
        ],
        None => [None, None, None],
    }
}

const NODE_COLS: &str = "node_id, store_id, ek_sha256, status, release, updated_at, revision, \
     report, ek_subject, ek_issuer, ek_serial";

const SESSION_COLS: &str = "id, node_id, store_id, ek_sha256, ek_certified, token_hash, release, \
     csr_der, secrets_json, expires_at, ek_subject, ek_issuer, ek_serial";

/// `NotFound` unless the node exists and is in one of `from` (locks its row).
async fn status_in(
    c: &impl GenericClient,
    node: &NodeKey,
    from: &[NodeStatus],
) -> Result<(), StoreError> {
    let cur: Option<String> = c
        .query_opt(
            "SELECT status FROM nodes WHERE store_id = $1 AND node_id = $2 FOR UPDATE",
            &[&node.store_id, &node.node_id],
        )
        .await?
        .map(|r| r.get(0));
    super::check_status(node, cur.as_deref(), from)
}

async fn facts(c: &impl GenericClient, claim: &Claim) -> Result<Facts, StoreError> {
    let node = c
        .query_opt(
            &format!("SELECT {NODE_COLS} FROM nodes WHERE store_id = $1 AND node_id = $2"),
            &[&claim.store_id, &claim.node_id],
        )
        .await?
        .map(|r| node_from(&r));
    let allow = c
        .query_opt(
            "SELECT ek_sha256, serial, store_id FROM allowlist WHERE ek_sha256 = $1",
            &[&claim.ek_sha256],
        )
        .await?
        .map(|r| AllowEntry {
            ek_sha256: r.get(0),
            serial: r.get(1),
            store_id: r.get(2),
        });
    let token = match &claim.token_hash {
        Some(h) => c
            .query_opt(
                "SELECT store_id, expires_at, used_at, ek_sha256 FROM tokens WHERE hash = $1",
                &[h],
            )
            .await?
            .map(|r| TokenRow {
                store_id: r.get(0),
                expires_at: r.get(1),
                used: r.get::<_, Option<i64>>(2).is_some(),
                ek_sha256: r.get(3),
            }),
        None => None,
    };
    Ok(Facts { node, allow, token })
}

/// Appends under the advisory lock (the caller is inside a transaction).
pub(super) async fn append(c: &impl GenericClient, entry: Entry) -> Result<Row, StoreError> {
    c.execute("SELECT pg_advisory_xact_lock($1)", &[&AUDIT_LOCK])
        .await?;
    let prev = c
        .query_opt("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", &[])
        .await?
        .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1)));
    let row = next_row(
        prev.as_ref().map(|(s, h)| (*s, h.as_str())),
        now_rfc3339(),
        entry,
    );
    let e = &row.entry;
    c.execute(
        "INSERT INTO audit (seq, at, actor, action, node_id, store_id, ek_sha256, decision, detail, config_sha256, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        &[&row.seq, &row.at, &e.actor, &e.action, &e.node_id, &e.store_id, &e.ek_sha256, &e.decision, &e.detail, &e.config_sha256, &row.prev_hash, &row.hash],
    )
    .await?;
    Ok(row)
}

fn session_from(r: &tokio_postgres::Row) -> SessionRow {
    SessionRow {
        id: r.get(0),
        node_id: r.get(1),
        store_id: r.get(2),
        ek_sha256: r.get(3),
        ek_certified: r.get(4),
        token_hash: r.get(5),
        release: r.get(6),
        csr_der: r.get(7),
        secrets_json: r.get(8),
        expires_at: r.get(9),
        ek_cert: ek_cert_from(r, 10),
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn put_session(&self, s: SessionRow) -> Result<(), StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let st = c
            .prepare_cached(&format!(
                "INSERT INTO sessions ({SESSION_COLS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            ))
            .await?;
        let [subject, issuer, serial] = ek_cols(&s.ek_cert);
        c.execute(
            &st,
            &[
                &s.id,
                &s.node_id,
                &s.store_id,
                &s.ek_sha256,
                &s.ek_certified,
                &s.token_hash,
                &s.release,
                &s.csr_der,
                &s.secrets_json,
                &s.expires_at,
                &subject,
                &issuer,
                &serial,
            ],
        )
        .await?;
        Ok(())
    }

    async fn take_session(&self, id: &str) -> Result<Taken, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let st = c
            .prepare_cached(&format!(
                "UPDATE sessions SET consumed = TRUE WHERE id = $1 AND consumed = FALSE
                 RETURNING {SESSION_COLS}"
            ))
            .await?;
        if let Some(r) = c.query_opt(&st, &[&id]).await? {
            return Ok(Taken::Fresh(Box::new(session_from(&r))));
        }
        let exists = c
            .query_opt("SELECT 1 FROM sessions WHERE id = $1", &[&id])
            .await?;
        Ok(if exists.is_some() {
            Taken::Replayed
        } else {
            Taken::Unknown
        })
    }

    async fn purge_sessions(&self, before: i64) -> Result<u64, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        Ok(
            c.execute("DELETE FROM sessions WHERE expires_at < $1", &[&before])
                .await?,
        )
    }

    async fn precheck(&self, claim: &Claim, now: i64) -> Result<Outcome, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        Ok(decide(claim, &facts(&c, claim).await?, now))
    }

    async fn admit(
        &self,
        claim: &Claim,
        release: &str,
        now: i64,
        audit: Entry,
    ) -> Result<Outcome, StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await?;
        // Serialize admissions: two replicas must not both admit one node.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&AUDIT_LOCK])
            .await?;
        let out = decide(claim, &facts(&tx, claim).await?, now);
        let status = match &out.verdict {
            Verdict::Admit { .. } => Some(NodeStatus::Admitted),
            Verdict::Queue(_) => Some(NodeStatus::Pending),
            Verdict::Reject(..) => None,
        };
        if let Some(st) = status {
            let [subject, issuer, serial] = ek_cols(&claim.ek_cert);
            tx.execute(
                "INSERT INTO nodes (node_id, store_id, ek_sha256, status, release, updated_at, ek_subject, ek_issuer, ek_serial)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (store_id, node_id) DO UPDATE SET status = excluded.status, release = excluded.release,
                     updated_at = excluded.updated_at,
                     ek_subject = COALESCE(excluded.ek_subject, nodes.ek_subject),
                     ek_issuer = COALESCE(excluded.ek_issuer, nodes.ek_issuer),
                     ek_serial = COALESCE(excluded.ek_serial, nodes.ek_serial)",
                &[&claim.node_id, &claim.store_id, &claim.ek_sha256, &st.as_str(), &release, &now, &subject, &issuer, &serial],
            )
            .await?;
        }
        if out.consume_token {
            if let Some(h) = &claim.token_hash {
                tx.execute(
                    "UPDATE tokens SET used_at = $2 WHERE hash = $1 AND used_at IS NULL",
                    &[h, &now],
                )
                .await?;
            }
        }
        append(&tx, fill_decision(audit, &out)).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn audit(&self, entry: Entry) -> Result<Row, StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await?;
        let row = append(&tx, entry).await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn audit_rows_after(&self, after: i64) -> Result<Vec<Row>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let rows = c
            .query(
                "SELECT seq, at, actor, action, node_id, store_id, ek_sha256, decision, detail, config_sha256, prev_hash, hash FROM audit WHERE seq > $1 ORDER BY seq",
                &[&after],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Row {
                seq: r.get(0),
                at: r.get(1),
                entry: Entry {
                    actor: r.get(2),
                    action: r.get(3),
                    node_id: r.get(4),
                    store_id: r.get(5),
                    ek_sha256: r.get(6),
                    decision: r.get(7),
                    detail: r.get(8),
                    config_sha256: r.get(9),
                },
                prev_hash: r.get(10),
                hash: r.get(11),
            })
            .collect())
    }

    async fn put_head(&self, head: SignedHead) -> Result<(), StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        super::heads::pg_put(&c, &head).await
    }

    async fn audit_heads(&self) -> Result<Vec<SignedHead>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        super::heads::pg_list(&c, false).await
    }

    async fn last_head(&self) -> Result<Option<SignedHead>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        Ok(super::heads::pg_list(&c, true).await?.pop())
    }

    async fn import_allow(&self, entries: Vec<AllowEntry>, audit: Entry) -> Result<(), StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await?;
        for e in &entries {
            tx.execute(
                "INSERT INTO allowlist (ek_sha256, serial, store_id) VALUES ($1, $2, $3)
                 ON CONFLICT (ek_sha256) DO UPDATE SET serial = excluded.serial, store_id = excluded.store_id",
                &[&e.ek_sha256, &e.serial, &e.store_id],
            )
            .await?;
        }
        append(&tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_token(
        &self,
        hash: &str,
        store_id: &str,
        ek_sha256: Option<&str>,
        expires_at: i64,
        audit: Entry,
    ) -> Result<(), StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await?;
        tx.execute(
            "INSERT INTO tokens (hash, store_id, expires_at, ek_sha256) VALUES ($1, $2, $3, $4)",
            &[&hash, &store_id, &expires_at, &ek_sha256],
        )
        .await?;
        append(&tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn nodes(&self, status: Option<NodeStatus>) -> Result<Vec<NodeRow>, StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let status = status.map(|s| s.as_str().to_owned());
        let rows = c
            .query(
                &format!("SELECT {NODE_COLS} FROM nodes WHERE $1::TEXT IS NULL OR status = $1 ORDER BY store_id, node_id"),
                &[&status],
            )
            .await?;
        Ok(rows.iter().map(node_from).collect())
    }

    async fn set_status(
        &self,
        node: &NodeKey,
        from: &[NodeStatus],
        to: NodeStatus,
        new_ek: Option<&str>,
        audit: Entry,
    ) -> Result<(), StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await?;
        status_in(&tx, node, from).await?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        tx.execute(
            "UPDATE nodes SET status = $3, ek_sha256 = COALESCE($4, ek_sha256), updated_at = $5 WHERE store_id = $1 AND node_id = $2",
            &[&node.store_id, &node.node_id, &to.as_str(), &new_ek, &now],
        )
        .await?;
        append(&tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_node(
        &self,
        node: &NodeKey,
        from: &[NodeStatus],
        audit: Entry,
    ) -> Result<(), StoreError> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await?;
        status_in(&tx, node, from).await?;
        tx.execute(
            "DELETE FROM nodes WHERE store_id = $1 AND node_id = $2",
            &[&node.store_id, &node.node_id],
        )
        .await?;
        append(&tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn report(
        &self,
        node: &NodeKey,
        revision: &str,
        status: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let n = c
            .execute(
                "UPDATE nodes SET revision = $3, report = $4, updated_at = $5 WHERE store_id = $1 AND node_id = $2 AND status = 'admitted'",
                &[&node.store_id, &node.node_id, &revision, &status, &now],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("no admitted node {node}")));
        }
        Ok(())
    }
}
