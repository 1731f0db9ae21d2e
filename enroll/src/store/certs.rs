//! What revocation needs from storage: the record of every node identity
//! certificate issued (serial, node, store, not-after, revoked-at) behind the
//! CRL and the report/renew checks, and the per-node ACME EAB keys handed out
//! from a store's pool. Both tables are keyed by their own (store, node)
//! columns, independent of the `nodes` table.

use async_trait::async_trait;

use super::StoreError;

/// One issued node identity certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRow {
    /// Certificate serial, lower-case hex of the DER INTEGER's content bytes.
    pub serial: String,
    /// The node it names.
    pub node_id: String,
    /// The node's store.
    pub store_id: String,
    /// Unix seconds.
    pub not_after: i64,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds; `None` while not revoked.
    pub revoked_at: Option<i64>,
}

/// Certificate and EAB key records (implemented by both backends).
#[async_trait]
pub trait RevocationStore {
    /// Records a certificate issued to a node, only if that node is admitted in
    /// that store (checked in the same statement); `false` when it is not.
    async fn record_cert(&self, cert: &CertRow) -> Result<bool, StoreError>;
    /// The record of one serial.
    async fn cert(&self, serial: &str) -> Result<Option<CertRow>, StoreError>;
    /// Marks every unrevoked certificate of a node revoked at `now`; returns
    /// the serials newly revoked.
    async fn revoke_certs(
        &self,
        node_id: &str,
        store_id: &str,
        now: i64,
    ) -> Result<Vec<String>, StoreError>;
    /// Revoked certificates not yet expired at `now` (what the CRL lists),
    /// ordered by serial.
    async fn revoked_certs(&self, now: i64) -> Result<Vec<CertRow>, StoreError>;

    /// The node's EAB key in `store_id`: the one it already holds, or else the
    /// first of `pool` never handed out (nor revoked); `None` when the pool is
    /// used up. One transaction; a key is never handed to two nodes.
    async fn eab_assign(
        &self,
        store_id: &str,
        node_id: &str,
        pool: &[String],
        now: i64,
    ) -> Result<Option<String>, StoreError>;
    /// Marks the node's EAB key(s) in `store_id` revoked; returns their ids.
    /// A revoked key is never handed out again.
    async fn eab_revoke(
        &self,
        store_id: &str,
        node_id: &str,
        now: i64,
    ) -> Result<Vec<String>, StoreError>;
}
