//! Embedded SQLite backend: one connection in WAL mode, owned by a dedicated
//! thread (`sqlite`) that runs the statements one after the other (a single
//! writer is what SQLite allows anyway, and it keeps the audit chain's appends
//! serialized).
//!
//! Async workers never touch the connection: each call sends a closure over
//! a bounded channel and awaits its answer, so a slow statement (a disk
//! stall, a lock held by an admin command through another connection, up to
//! `busy_timeout`) parks only that request, not a tokio worker and every
//! request scheduled on it. The hand-off costs two thread wake-ups per call;
//! `keel-enroll-bench` measures the whole path. When the channel is full
//! (the thread is behind), callers wait for room: back-pressure instead of
//! an unbounded queue. The one step that waits on the disk for long, the
//! checkpoint that copies the WAL into the database and fsyncs, is taken off
//! this thread too: automatic checkpoints are off and a background thread
//! with its own connection runs a passive checkpoint every second.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::schema::{fill_decision, MIGRATIONS, SQLITE_AUDIT_GUARD};
use super::sqlite_thread::Worker;
use super::{NodeKey, SessionRow, Store, StoreError, Taken};
use crate::admission::{
    decide, AllowEntry, Claim, EkCertInfo, Facts, NodeRow, NodeStatus, Outcome, TokenRow, Verdict,
};
use crate::audit::{next_row, now_rfc3339, Entry, Row};
use crate::audit_sign::SignedHead;

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    worker: Worker,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

impl SqliteStore {
    /// Opens (creating) the database file and migrates it.
    pub async fn open(path: PathBuf) -> Result<Self, StoreError> {
        let conn =
            tokio::task::spawn_blocking(move || -> Result<(Connection, PathBuf), StoreError> {
                private_files(&path)?;
                let mut conn = Connection::open(&path)?;
                // WAL + NORMAL: a power cut may roll back the last commits, but never
                // leaves a decision without its audit row (they share a transaction).
                conn.execute_batch(
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;",
                )?;
                migrate(&mut conn)?;
                conn.execute_batch("PRAGMA wal_autocheckpoint=0;")?;
                Ok((conn, path))
            })
            .await
            .map_err(|e| StoreError::Join(e.to_string()))??;
        let (conn, path) = conn;
        Ok(Self {
            worker: Worker::start(conn, &path)?,
        })
    }

    /// Runs `f` on the SQLite thread.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.worker.run(f).await
    }
}

/// Creates the database file 0600 before SQLite does (SQLite gives the -wal
/// and -shm files the database's mode), and refuses an existing database, WAL
/// or shared-memory file that group or others may read.
fn private_files(path: &Path) -> Result<(), StoreError> {
    use crate::secfile::{check_private, create_private_if_missing};
    if path.as_os_str() == ":memory:" {
        return Ok(());
    }
    create_private_if_missing("SQLite database", path)?;
    check_private("SQLite database", path)?;
    for suffix in ["-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let p = PathBuf::from(p);
        if p.exists() {
            check_private("SQLite database", &p)?;
        }
    }
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(m)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
    }
    tx.execute_batch(SQLITE_AUDIT_GUARD)?;
    tx.commit()?;
    Ok(())
}

fn node_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<NodeRow> {
    let status: String = r.get(3)?;
    Ok(NodeRow {
        node_id: r.get(0)?,
        store_id: r.get(1)?,
        ek_sha256: r.get(2)?,
        status: NodeStatus::parse(&status).unwrap_or(NodeStatus::Revoked),
        release: r.get(4)?,
        updated_at: r.get(5)?,
        revision: r.get(6)?,
        report: r.get(7)?,
        ek_cert: ek_cert_from(r, 8)?,
    })
}

/// The EK certificate names in columns `at`, `at + 1`, `at + 2`.
fn ek_cert_from(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Option<EkCertInfo>> {
    let subject: Option<String> = r.get(at)?;
    Ok(match subject {
        Some(subject) => Some(EkCertInfo {
            subject,
            issuer: r.get::<_, Option<String>>(at + 1)?.unwrap_or_default(),
            serial: r.get::<_, Option<String>>(at + 2)?.unwrap_or_default(),
        }),
        None => None,
    })
}

const NODE_COLS: &str = "node_id, store_id, ek_sha256, status, release, updated_at, revision, \
     report, ek_subject, ek_issuer, ek_serial";

const SESSION_COLS: &str = "id, node_id, store_id, ek_sha256, ek_certified, token_hash, release, \
     csr_der, secrets_json, expires_at, ek_subject, ek_issuer, ek_serial";

fn session_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id: r.get(0)?,
        node_id: r.get(1)?,
        store_id: r.get(2)?,
        ek_sha256: r.get(3)?,
        ek_certified: r.get(4)?,
        token_hash: r.get(5)?,
        release: r.get(6)?,
        csr_der: r.get(7)?,
        secrets_json: r.get(8)?,
        expires_at: r.get(9)?,
        ek_cert: ek_cert_from(r, 10)?,
    })
}

/// The node's status, or `NotFound` unless it is one of `from`.
fn status_in(c: &Connection, node: &NodeKey, from: &[NodeStatus]) -> Result<(), StoreError> {
    let cur: Option<String> = c
        .query_row(
            "SELECT status FROM nodes WHERE store_id = ?1 AND node_id = ?2",
            [&node.store_id, &node.node_id],
            |r| r.get(0),
        )
        .optional()?;
    super::check_status(node, cur.as_deref(), from)
}

fn facts(c: &Connection, claim: &Claim) -> Result<Facts, StoreError> {
    let node = c
        .prepare_cached(&format!(
            "SELECT {NODE_COLS} FROM nodes WHERE store_id = ?1 AND node_id = ?2"
        ))?
        .query_row([&claim.store_id, &claim.node_id], node_from)
        .optional()?;
    let allow = c
        .prepare_cached("SELECT ek_sha256, serial, store_id FROM allowlist WHERE ek_sha256 = ?1")?
        .query_row([&claim.ek_sha256], |r| {
            Ok(AllowEntry {
                ek_sha256: r.get(0)?,
                serial: r.get(1)?,
                store_id: r.get(2)?,
            })
        })
        .optional()?;
    let token = match &claim.token_hash {
        Some(h) => c
            .prepare_cached(
                "SELECT store_id, expires_at, used_at, ek_sha256 FROM tokens WHERE hash = ?1",
            )?
            .query_row([h], |r| {
                Ok(TokenRow {
                    store_id: r.get(0)?,
                    expires_at: r.get(1)?,
                    used: r.get::<_, Option<i64>>(2)?.is_some(),
                    ek_sha256: r.get(3)?,
                })
            })
            .optional()?,
        None => None,
    };
    Ok(Facts { node, allow, token })
}

pub(super) fn append(c: &Connection, entry: Entry) -> Result<Row, StoreError> {
    let prev: Option<(i64, String)> = c
        .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let row = next_row(
        prev.as_ref().map(|(s, h)| (*s, h.as_str())),
        now_rfc3339(),
        entry,
    );
    let e = &row.entry;
    c.prepare_cached(
        "INSERT INTO audit (seq, at, actor, action, node_id, store_id, ek_sha256, decision, detail, config_sha256, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![row.seq, row.at, e.actor, e.action, e.node_id, e.store_id, e.ek_sha256, e.decision, e.detail, e.config_sha256, row.prev_hash, row.hash])?;
    Ok(row)
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn put_session(&self, s: SessionRow) -> Result<(), StoreError> {
        self.run(move |c| {
            let ek = s.ek_cert.clone().unwrap_or_default();
            let some = |v: String| s.ek_cert.as_ref().map(|_| v);
            c.prepare_cached(&format!(
                "INSERT INTO sessions ({SESSION_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
            ))?
            .execute(params![s.id, s.node_id, s.store_id, s.ek_sha256, s.ek_certified, s.token_hash, s.release, s.csr_der, s.secrets_json, s.expires_at, some(ek.subject), some(ek.issuer), some(ek.serial)])?;
            Ok(())
        })
        .await
    }

    async fn take_session(&self, id: &str) -> Result<Taken, StoreError> {
        let id = id.to_owned();
        self.run(move |c| {
            let row = c
                .prepare_cached(&format!(
                    "UPDATE sessions SET consumed = TRUE WHERE id = ?1 AND consumed = FALSE
                     RETURNING {SESSION_COLS}"
                ))?
                .query_row([&id], session_from)
                .optional()?;
            if let Some(s) = row {
                return Ok(Taken::Fresh(Box::new(s)));
            }
            let exists = c
                .query_row("SELECT 1 FROM sessions WHERE id = ?1", [&id], |_| Ok(()))
                .optional()?;
            Ok(if exists.is_some() {
                Taken::Replayed
            } else {
                Taken::Unknown
            })
        })
        .await
    }

    async fn purge_sessions(&self, before: i64) -> Result<u64, StoreError> {
        self.run(move |c| {
            Ok(c.execute("DELETE FROM sessions WHERE expires_at < ?1", [before])? as u64)
        })
        .await
    }

    async fn precheck(&self, claim: &Claim, now: i64) -> Result<Outcome, StoreError> {
        let claim = claim.clone();
        self.run(move |c| Ok(decide(&claim, &facts(c, &claim)?, now)))
            .await
    }

    async fn admit(
        &self,
        claim: &Claim,
        release: &str,
        now: i64,
        audit: Entry,
    ) -> Result<Outcome, StoreError> {
        let claim = claim.clone();
        let release = release.to_owned();
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = decide(&claim, &facts(&tx, &claim)?, now);
            let status = match &out.verdict {
                Verdict::Admit { .. } => Some(NodeStatus::Admitted),
                Verdict::Queue(_) => Some(NodeStatus::Pending),
                Verdict::Reject(..) => None,
            };
            if let Some(st) = status {
                let ek = claim.ek_cert.clone().unwrap_or_default();
                let some = |v: String| claim.ek_cert.as_ref().map(|_| v);
                tx.prepare_cached(
                    "INSERT INTO nodes (node_id, store_id, ek_sha256, status, release, updated_at, ek_subject, ek_issuer, ek_serial)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (store_id, node_id) DO UPDATE SET status = excluded.status, release = excluded.release,
                         updated_at = excluded.updated_at,
                         ek_subject = COALESCE(excluded.ek_subject, nodes.ek_subject),
                         ek_issuer = COALESCE(excluded.ek_issuer, nodes.ek_issuer),
                         ek_serial = COALESCE(excluded.ek_serial, nodes.ek_serial)",
                )?
                .execute(params![claim.node_id, claim.store_id, claim.ek_sha256, st.as_str(), release, now, some(ek.subject), some(ek.issuer), some(ek.serial)])?;
            }
            if out.consume_token {
                if let Some(h) = &claim.token_hash {
                    tx.execute(
                        "UPDATE tokens SET used_at = ?2 WHERE hash = ?1 AND used_at IS NULL",
                        params![h, now],
                    )?;
                }
            }
            append(&tx, fill_decision(audit, &out))?;
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    async fn audit(&self, entry: Entry) -> Result<Row, StoreError> {
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let row = append(&tx, entry)?;
            tx.commit()?;
            Ok(row)
        })
        .await
    }

    async fn audit_rows_after(&self, after: i64) -> Result<Vec<Row>, StoreError> {
        self.run(move |c| {
            let mut st = c.prepare(
                "SELECT seq, at, actor, action, node_id, store_id, ek_sha256, decision, detail, config_sha256, prev_hash, hash FROM audit WHERE seq > ?1 ORDER BY seq",
            )?;
            let rows = st
                .query_map([after], |r| {
                    Ok(Row {
                        seq: r.get(0)?,
                        at: r.get(1)?,
                        entry: Entry {
                            actor: r.get(2)?,
                            action: r.get(3)?,
                            node_id: r.get(4)?,
                            store_id: r.get(5)?,
                            ek_sha256: r.get(6)?,
                            decision: r.get(7)?,
                            detail: r.get(8)?,
                            config_sha256: r.get(9)?,
                        },
                        prev_hash: r.get(10)?,
                        hash: r.get(11)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn put_head(&self, head: SignedHead) -> Result<(), StoreError> {
        self.run(move |c| super::heads::sqlite_put(c, &head)).await
    }

    async fn audit_heads(&self) -> Result<Vec<SignedHead>, StoreError> {
        self.run(move |c| super::heads::sqlite_list(c, false)).await
    }

    async fn last_head(&self) -> Result<Option<SignedHead>, StoreError> {
        self.run(move |c| Ok(super::heads::sqlite_list(c, true)?.pop()))
            .await
    }

    async fn import_allow(&self, entries: Vec<AllowEntry>, audit: Entry) -> Result<(), StoreError> {
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for e in &entries {
                tx.execute(
                    "INSERT INTO allowlist (ek_sha256, serial, store_id) VALUES (?1, ?2, ?3)
                     ON CONFLICT (ek_sha256) DO UPDATE SET serial = excluded.serial, store_id = excluded.store_id",
                    params![e.ek_sha256, e.serial, e.store_id],
                )?;
            }
            append(&tx, audit)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn create_token(
        &self,
        hash: &str,
        store_id: &str,
        ek_sha256: Option<&str>,
        expires_at: i64,
        audit: Entry,
    ) -> Result<(), StoreError> {
        let hash = hash.to_owned();
        let store_id = store_id.to_owned();
        let ek_sha256 = ek_sha256.map(str::to_owned);
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO tokens (hash, store_id, expires_at, ek_sha256) VALUES (?1, ?2, ?3, ?4)",
                params![hash, store_id, expires_at, ek_sha256],
            )?;
            append(&tx, audit)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn nodes(&self, status: Option<NodeStatus>) -> Result<Vec<NodeRow>, StoreError> {
        self.run(move |c| {
            let mut st = c.prepare(&format!(
                "SELECT {NODE_COLS} FROM nodes WHERE ?1 IS NULL OR status = ?1 ORDER BY store_id, node_id"
            ))?;
            let rows = st
                .query_map([status.map(|s| s.as_str())], node_from)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn set_status(
        &self,
        node: &NodeKey,
        from: &[NodeStatus],
        to: NodeStatus,
        new_ek: Option<&str>,
        audit: Entry,
    ) -> Result<(), StoreError> {
        let node = node.clone();
        let from = from.to_vec();
        let new_ek = new_ek.map(str::to_owned);
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            status_in(&tx, &node, &from)?;
            tx.execute(
                "UPDATE nodes SET status = ?3, ek_sha256 = COALESCE(?4, ek_sha256), updated_at = ?5 WHERE store_id = ?1 AND node_id = ?2",
                params![node.store_id, node.node_id, to.as_str(), new_ek, time::OffsetDateTime::now_utc().unix_timestamp()],
            )?;
            append(&tx, audit)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn delete_node(
        &self,
        node: &NodeKey,
        from: &[NodeStatus],
        audit: Entry,
    ) -> Result<(), StoreError> {
        let node = node.clone();
        let from = from.to_vec();
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            status_in(&tx, &node, &from)?;
            tx.execute(
                "DELETE FROM nodes WHERE store_id = ?1 AND node_id = ?2",
                params![node.store_id, node.node_id],
            )?;
            append(&tx, audit)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn report(
        &self,
        node: &NodeKey,
        revision: &str,
        status: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let node = node.clone();
        let revision = revision.to_owned();
        let status = status.to_owned();
        self.run(move |c| {
            let n = c.execute(
                "UPDATE nodes SET revision = ?3, report = ?4, updated_at = ?5 WHERE store_id = ?1 AND node_id = ?2 AND status = 'admitted'",
                params![node.store_id, node.node_id, revision, status, now],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("no admitted node {node}")));
            }
            Ok(())
        })
        .await
    }
}
