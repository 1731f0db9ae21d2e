//! [`RevocationStore`] on SQLite.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::certs::{CertRow, RevocationStore};
use super::sqlite::SqliteStore;
use super::StoreError;

const CERT_COLS: &str = "serial, node_id, store_id, not_after, issued_at, revoked_at";

fn cert_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<CertRow> {
    Ok(CertRow {
        serial: r.get(0)?,
        node_id: r.get(1)?,
        store_id: r.get(2)?,
        not_after: r.get(3)?,
        issued_at: r.get(4)?,
        revoked_at: r.get(5)?,
    })
}

#[async_trait]
impl RevocationStore for SqliteStore {
    async fn record_cert(&self, c: &CertRow) -> Result<bool, StoreError> {
        let c = c.clone();
        self.run(move |conn| {
            let n = conn.execute(
                "INSERT INTO node_certs (serial, node_id, store_id, not_after, issued_at)
                 SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS
                 (SELECT 1 FROM nodes WHERE node_id = ?2 AND store_id = ?3 AND status = 'admitted')",
                params![c.serial, c.node_id, c.store_id, c.not_after, c.issued_at],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn cert(&self, serial: &str) -> Result<Option<CertRow>, StoreError> {
        let serial = serial.to_owned();
        self.run(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {CERT_COLS} FROM node_certs WHERE serial = ?1"
                ))?
                .query_row([serial], cert_from)
                .optional()?)
        })
        .await
    }

    async fn revoke_certs(
        &self,
        node_id: &str,
        store_id: &str,
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        let node_id = node_id.to_owned();
        let store_id = store_id.to_owned();
        self.run(move |conn| {
            let mut st = conn.prepare(
                "UPDATE node_certs SET revoked_at = ?3
                 WHERE node_id = ?1 AND store_id = ?2 AND revoked_at IS NULL RETURNING serial",
            )?;
            let mut v = st
                .query_map(params![node_id, store_id, now], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            v.sort();
            Ok(v)
        })
        .await
    }

    async fn revoked_certs(&self, now: i64) -> Result<Vec<CertRow>, StoreError> {
        self.run(move |conn| {
            let mut st = conn.prepare(&format!(
                "SELECT {CERT_COLS} FROM node_certs
                 WHERE revoked_at IS NOT NULL AND not_after >= ?1 ORDER BY serial"
            ))?;
            let v = st
                .query_map([now], cert_from)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(v)
        })
        .await
    }

    async fn eab_assign(
        &self,
        store_id: &str,
        node_id: &str,
        pool: &[String],
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let store_id = store_id.to_owned();
        let node_id = node_id.to_owned();
        let pool = pool.to_vec();
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let held: Option<String> = tx
                .query_row(
                    "SELECT key_id FROM eab_keys WHERE store_id = ?1 AND node_id = ?2 AND revoked_at IS NULL",
                    params![store_id, node_id],
                    |r| r.get(0),
                )
                .optional()?;
            if held.is_some() {
                return Ok(held);
            }
            for kid in pool {
                let n = tx.execute(
                    "INSERT INTO eab_keys (store_id, key_id, node_id, assigned_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT DO NOTHING",
                    params![store_id, kid, node_id, now],
                )?;
                if n == 1 {
                    tx.commit()?;
                    return Ok(Some(kid.clone()));
                }
            }
            Ok(None)
        })
        .await
    }

    async fn eab_revoke(
        &self,
        store_id: &str,
        node_id: &str,
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        let store_id = store_id.to_owned();
        let node_id = node_id.to_owned();
        self.run(move |conn| {
            let mut st = conn.prepare(
                "UPDATE eab_keys SET revoked_at = ?3
                 WHERE store_id = ?1 AND node_id = ?2 AND revoked_at IS NULL RETURNING key_id",
            )?;
            let v = st
                .query_map(params![store_id, node_id, now], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            Ok(v)
        })
        .await
    }
}
