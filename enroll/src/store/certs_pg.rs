//! [`RevocationStore`] on PostgreSQL.

use async_trait::async_trait;

use super::certs::{CertRow, RevocationStore};
use super::postgres::{pool_err, PgStore};
use super::StoreError;

const CERT_COLS: &str = "serial, node_id, store_id, not_after, issued_at, revoked_at";

fn cert_from(r: &tokio_postgres::Row) -> CertRow {
    CertRow {
        serial: r.get(0),
        node_id: r.get(1),
        store_id: r.get(2),
        not_after: r.get(3),
        issued_at: r.get(4),
        revoked_at: r.get(5),
    }
}

#[async_trait]
impl RevocationStore for PgStore {
    async fn record_cert(&self, c: &CertRow) -> Result<bool, StoreError> {
        let conn = self.pool.get().await.map_err(pool_err)?;
        let n = conn
            .execute(
                "INSERT INTO node_certs (serial, node_id, store_id, not_after, issued_at)
                 SELECT $1, $2, $3, $4, $5 WHERE EXISTS
                 (SELECT 1 FROM nodes WHERE node_id = $2 AND store_id = $3 AND status = 'admitted')",
                &[&c.serial, &c.node_id, &c.store_id, &c.not_after, &c.issued_at],
            )
            .await?;
        Ok(n == 1)
    }

    async fn cert(&self, serial: &str) -> Result<Option<CertRow>, StoreError> {
        let conn = self.pool.get().await.map_err(pool_err)?;
        let q = format!("SELECT {CERT_COLS} FROM node_certs WHERE serial = $1");
        Ok(conn
            .query_opt(&q, &[&serial])
            .await?
            .as_ref()
            .map(cert_from))
    }

    async fn revoke_certs(
        &self,
        node_id: &str,
        store_id: &str,
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        let conn = self.pool.get().await.map_err(pool_err)?;
        let rows = conn
            .query(
                "UPDATE node_certs SET revoked_at = $3
                 WHERE node_id = $1 AND store_id = $2 AND revoked_at IS NULL RETURNING serial",
                &[&node_id, &store_id, &now],
            )
            .await?;
        let mut v: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        v.sort();
        Ok(v)
    }

    async fn revoked_certs(&self, now: i64) -> Result<Vec<CertRow>, StoreError> {
        let conn = self.pool.get().await.map_err(pool_err)?;
        let q = format!(
            "SELECT {CERT_COLS} FROM node_certs
             WHERE revoked_at IS NOT NULL AND not_after >= $1 ORDER BY serial"
        );
        Ok(conn
            .query(&q, &[&now])
            .await?
            .iter()
            .map(cert_from)
            .collect())
    }

    async fn eab_assign(
        &self,
        store_id: &str,
        node_id: &str,
        pool: &[String],
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let mut conn = self.pool.get().await.map_err(pool_err)?;
        let tx = conn.transaction().await?;
        let held = "SELECT key_id FROM eab_keys WHERE store_id = $1 AND node_id = $2 AND revoked_at IS NULL";
        if let Some(r) = tx.query_opt(held, &[&store_id, &node_id]).await? {
            return Ok(Some(r.get(0)));
        }
        for kid in pool {
            // DO NOTHING also covers the one-active-key-per-node index: a
            // concurrent assignment to this node wins and is read back below.
            let n = tx
                .execute(
                    "INSERT INTO eab_keys (store_id, key_id, node_id, assigned_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT DO NOTHING",
                    &[&store_id, kid, &node_id, &now],
                )
                .await?;
            if n == 1 {
                tx.commit().await?;
                return Ok(Some(kid.clone()));
            }
        }
        let again = tx.query_opt(held, &[&store_id, &node_id]).await?;
        Ok(again.map(|r| r.get(0)))
    }

    async fn eab_revoke(
        &self,
        store_id: &str,
        node_id: &str,
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        let conn = self.pool.get().await.map_err(pool_err)?;
        let rows = conn
            .query(
                "UPDATE eab_keys SET revoked_at = $3
                 WHERE store_id = $1 AND node_id = $2 AND revoked_at IS NULL RETURNING key_id",
                &[&store_id, &node_id, &now],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}
