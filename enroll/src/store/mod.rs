//! Storage behind one interface: embedded SQLite (default, one replica) and
//! PostgreSQL (several replicas). Both run the same admission policy
//! ([`crate::admission::decide`]) inside one transaction together with the
//! audit append, so a decision and its audit row are written together or not at all.

mod certs;
mod certs_pg;
mod certs_sqlite;
mod heads;
mod pg_tls;
pub mod pg_url;
pub mod postgres;
mod schema;
pub mod sqlite;
mod sqlite_thread;

pub use certs::{CertRow, RevocationStore};

use std::sync::Arc;

use async_trait::async_trait;

use crate::admission::{AllowEntry, Claim, EkCertInfo, NodeRow, NodeStatus, Outcome};
use crate::audit::{Entry, Row};
use crate::audit_sign::SignedHead;

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The PostgreSQL pool failed.
    #[error("postgres pool: {0}")]
    Pool(String),
    /// A row holds something unexpected.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The named node does not exist or is in the wrong state.
    #[error("{0}")]
    NotFound(String),
    /// The database URL is not understood.
    #[error("unsupported database URL {0:?} (want sqlite:PATH or postgres://...)")]
    Url(String),
    /// TLS settings of the PostgreSQL URL are wrong.
    #[error("postgres TLS: {0}")]
    Tls(String),
    /// The first connection to PostgreSQL failed.
    #[error("connecting to PostgreSQL at {target} (sslmode={mode}): {cause}{hint}")]
    Connect {
        /// `host:port`.
        target: String,
        /// The sslmode in force.
        mode: String,
        /// What failed.
        cause: String,
        /// What to do (`; ...`), may be empty.
        hint: String,
    },
    /// The database file is not private.
    #[error(transparent)]
    File(#[from] crate::secfile::SecFileError),
    /// A blocking task panicked.
    #[error("storage task failed: {0}")]
    Join(String),
}

/// A challenge in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// Session id (random, 128 bits, hex).
    pub id: String,
    /// The admission claim made at start.
    pub node_id: String,
    /// Store.
    pub store_id: String,
    /// EK hash.
    pub ek_sha256: String,
    /// EK certificate chained to a trusted root.
    pub ek_certified: bool,
    /// Token hash, when a token was presented.
    pub token_hash: Option<String>,
    /// `name version` of the claimed release.
    pub release: String,
    /// The CSR (DER).
    pub csr_der: Vec<u8>,
    /// keel-attest `SessionSecrets`, JSON.
    pub secrets_json: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// The EK certificate's names, when one was trusted.
    pub ek_cert: Option<EkCertInfo>,
}

impl SessionRow {
    /// The admission claim of this session (`require_approval` comes from
    /// the store's configuration, not from the session).
    pub fn claim(&self, require_approval: bool) -> Claim {
        Claim {
            node_id: self.node_id.clone(),
            store_id: self.store_id.clone(),
            ek_sha256: self.ek_sha256.clone(),
            ek_certified: self.ek_certified,
            token_hash: self.token_hash.clone(),
            ek_cert: self.ek_cert.clone(),
            require_approval,
        }
    }
}

/// A node's inventory key: node ids are unique within a store.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeKey {
    /// Store.
    pub store_id: String,
    /// Node id within the store.
    pub node_id: String,
}

impl NodeKey {
    /// A key.
    pub fn new(store_id: impl Into<String>, node_id: impl Into<String>) -> Self {
        NodeKey {
            store_id: store_id.into(),
            node_id: node_id.into(),
        }
    }
}

impl std::fmt::Display for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.store_id, self.node_id)
    }
}

/// Result of consuming a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// First use.
    Fresh(Box<SessionRow>),
    /// Already consumed (replayed finish).
    Replayed,
    /// No such session.
    Unknown,
}

/// The storage interface.
#[async_trait]
pub trait Store: RevocationStore + Send + Sync {
    /// Backend name (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;

    /// Saves a new session.
    async fn put_session(&self, s: SessionRow) -> Result<(), StoreError>;
    /// Consumes a session atomically (single use).
    async fn take_session(&self, id: &str) -> Result<Taken, StoreError>;
    /// Deletes sessions that expired before `before` (unix seconds).
    async fn purge_sessions(&self, before: i64) -> Result<u64, StoreError>;

    /// Evaluates the admission policy without writing (early refusal at start).
    async fn precheck(&self, claim: &Claim, now: i64) -> Result<Outcome, StoreError>;
    /// Evaluates the policy and applies it (node row, token, audit) in one transaction.
    async fn admit(
        &self,
        claim: &Claim,
        release: &str,
        now: i64,
        audit: Entry,
    ) -> Result<Outcome, StoreError>;

    /// Appends one audit row.
    async fn audit(&self, entry: Entry) -> Result<Row, StoreError>;
    /// All audit rows, in order.
    async fn audit_rows(&self) -> Result<Vec<Row>, StoreError> {
        self.audit_rows_after(0).await
    }
    /// The audit rows after row `seq`, in order.
    async fn audit_rows_after(&self, seq: i64) -> Result<Vec<Row>, StoreError>;
    /// Records a signed chain head (a second head for the same row is ignored).
    async fn put_head(&self, head: SignedHead) -> Result<(), StoreError>;
    /// All signed heads, by row.
    async fn audit_heads(&self) -> Result<Vec<SignedHead>, StoreError>;
    /// The signed head of the highest row, if any.
    async fn last_head(&self) -> Result<Option<SignedHead>, StoreError>;

    /// Adds or replaces allow-list entries.
    async fn import_allow(&self, entries: Vec<AllowEntry>, audit: Entry) -> Result<(), StoreError>;
    /// Stores a token hash, optionally bound to one EK (SHA-256 hex).
    async fn create_token(
        &self,
        hash: &str,
        store_id: &str,
        ek_sha256: Option<&str>,
        expires_at: i64,
        audit: Entry,
    ) -> Result<(), StoreError>;
    /// Nodes, optionally only those with one status.
    async fn nodes(&self, status: Option<NodeStatus>) -> Result<Vec<NodeRow>, StoreError>;
    /// Sets a node's status (and optionally binds a new EK), checking the
    /// allowed previous states; records the audit row.
    async fn set_status(
        &self,
        node: &NodeKey,
        from: &[NodeStatus],
        to: NodeStatus,
        new_ek: Option<&str>,
        audit: Entry,
    ) -> Result<(), StoreError>;
    /// Deletes a node's row when it is in one of the `from` states; records
    /// the audit row.
    async fn delete_node(
        &self,
        node: &NodeKey,
        from: &[NodeStatus],
        audit: Entry,
    ) -> Result<(), StoreError>;
    /// Records a node's report (GitOps revision, status).
    async fn report(
        &self,
        node: &NodeKey,
        revision: &str,
        status: &str,
        now: i64,
    ) -> Result<(), StoreError>;
}

/// `NotFound` unless the node exists (`current` is its status) and is in
/// one of the `from` states.
pub(crate) fn check_status(
    node: &NodeKey,
    current: Option<&str>,
    from: &[NodeStatus],
) -> Result<(), StoreError> {
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    match current {
        None => Err(StoreError::NotFound(format!("no node {node}"))),
        Some(s) if !from.contains(&s) => Err(StoreError::NotFound(format!(
            "node {node} is {s}, expected one of {}",
            from.join(", ")
        ))),
        Some(_) => Ok(()),
    }
}

/// Opens the store named by a database URL and applies migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(path.into()).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::open(url).await?))
    } else {
        Err(StoreError::Url(pg_url::redact(url)))
    }
}
