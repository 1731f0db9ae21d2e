//! Signing the chain tip and checking signed exports. The signer never signs
//! blindly: the rows since the last signed head must link to it (each row's
//! hash recomputes, each `prev_hash` is its predecessor's hash), so a chain
//! rewritten below a signed head is refused, not blessed.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::{row_hash, DayExport, Row, GENESIS};
use crate::audit_sign::{verify_file, AuditKey, AuditPub, SignError, SignedHead};
use crate::store::{Store, StoreError};

/// Why the tip was not signed, or an export does not check out.
#[derive(Debug, thiserror::Error)]
pub enum TipError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The chain does not continue the last signed head.
    #[error("{0}; run `keel-enroll audit verify`")]
    Chain(String),
    /// A signature or key problem.
    #[error(transparent)]
    Sign(#[from] SignError),
}

/// Checks that `rows` continue the head `(seq, hash)`.
fn check_link(from: (i64, &str), rows: &[Row]) -> Result<(), TipError> {
    let (mut seq, mut prev) = (from.0, from.1.to_owned());
    for r in rows {
        if r.seq != seq + 1 || r.prev_hash != prev {
            return Err(TipError::Chain(format!(
                "audit row {} does not continue row {seq} (signed or checked before): refusing to sign",
                r.seq
            )));
        }
        if row_hash(&r.prev_hash, r.seq, &r.at, &r.entry) != r.hash {
            return Err(TipError::Chain(format!(
                "audit row {}: content does not match its hash: refusing to sign",
                r.seq
            )));
        }
        seq = r.seq;
        prev = r.hash.clone();
    }
    Ok(())
}

/// Signs the chain's tip if it moved since the last signed head; returns the
/// new head (None: nothing new to sign). An empty chain gets the genesis head
/// (row 0); a chain with rows but no signed head at all is refused (the heads
/// were deleted, or the log predates signed heads: see [`adopt`]).
pub async fn sign_tip(store: &dyn Store, key: &AuditKey) -> Result<Option<SignedHead>, TipError> {
    Ok(sign_from(store, key, false, 0).await?.0)
}

/// `audit adopt`: signs the tip of a chain that has no signed head yet (a log
/// written before signed heads existed), after checking the whole chain.
pub async fn adopt(store: &dyn Store, key: &AuditKey) -> Result<Option<SignedHead>, TipError> {
    Ok(sign_from(store, key, true, 0).await?.0)
}

/// The signing step; `floor` is the highest head this process saw before (a
/// lower last head now means heads were deleted). Returns the new head and
/// the last signed row.
async fn sign_from(
    store: &dyn Store,
    key: &AuditKey,
    adopt: bool,
    floor: i64,
) -> Result<(Option<SignedHead>, i64), TipError> {
    let last = store.last_head().await?;
    let from = match &last {
        Some(h) if !h.verifies(key.public()) => {
            return Err(TipError::Chain(format!(
                "the last signed head (row {}) does not verify against the audit key {}: \
                 refusing to sign on top of it",
                h.seq,
                key.public().key_id
            )))
        }
        Some(h) if h.seq < floor => {
            return Err(TipError::Chain(format!(
                "signed heads were deleted: this service saw a signed head at row {floor}, the \
                 last one now is row {}: refusing to sign",
                h.seq
            )))
        }
        Some(h) => (h.seq, h.hash.as_str()),
        None if floor > 0 => {
            return Err(TipError::Chain(format!(
                "signed heads were deleted: this service saw a signed head at row {floor}, none \
                 is left: refusing to sign"
            )))
        }
        None => (0, GENESIS),
    };
    let rows = store.audit_rows_after(from.0).await?;
    if last.is_none() && !rows.is_empty() && !adopt {
        return Err(TipError::Chain(format!(
            "{} audit rows and no signed head: the heads were deleted, or this log predates \
             signed heads; check it with `keel-enroll audit verify` and sign it with \
             `keel-enroll audit adopt`: refusing to sign",
            rows.len()
        )));
    }
    check_link(from, &rows)?;
    let (seq, hash) = match rows.last() {
        Some(tip) => (tip.seq, tip.hash.as_str()),
        None if last.is_none() => (0, GENESIS),
        None => return Ok((None, from.0)),
    };
    let head = key.sign_head(seq, hash);
    store.put_head(head.clone()).await?;
    Ok((Some(head), seq))
}

/// The service's signer. It remembers the highest signed head it saw, so
/// heads deleted while it runs are refused, not re-signed.
#[derive(Debug)]
pub struct Signer {
    key: Arc<AuditKey>,
    floor: i64,
}

impl Signer {
    /// A signer that has seen no head yet.
    pub fn new(key: Arc<AuditKey>) -> Signer {
        Signer { key, floor: 0 }
    }

    /// One round: signs the tip if it moved (see [`sign_tip`]).
    pub async fn tick(&mut self, store: &dyn Store) -> Result<Option<SignedHead>, TipError> {
        let (head, last) = sign_from(store, &self.key, false, self.floor).await?;
        self.floor = self.floor.max(last);
        Ok(head)
    }
}

/// Runs a [`Signer`] every `every` until the store is the last reference
/// left (the service stopped).
pub fn spawn_signer(
    store: Arc<dyn Store>,
    key: Arc<AuditKey>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    let weak = Arc::downgrade(&store);
    drop(store);
    tokio::spawn(async move {
        let mut signer = Signer::new(key);
        loop {
            let Some(store) = weak.upgrade() else { return };
            match signer.tick(&*store).await {
                Ok(Some(h)) => tracing::debug!(seq = h.seq, "signed audit chain head"),
                Ok(None) => {}
                Err(e) => tracing::error!("audit chain head not signed: {e}"),
            }
            drop(store);
            tokio::time::sleep(every).await;
        }
    })
}

/// What [`check_export`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    /// The day.
    pub day: String,
    /// Rows in the export.
    pub rows: usize,
    /// Nodes in its inventory snapshot.
    pub nodes: usize,
    /// The configuration hash it records as in force at export time.
    pub config_sha256: Option<String>,
    /// The signed chain head it carries.
    pub head: SignedHead,
}

/// Checks an export: its detached signature (`FILE.sig`), every row's hash,
/// the links between consecutive rows and the signed chain head it carries.
pub fn check_export(file: &Path, key: &AuditPub) -> Result<ExportReport, TipError> {
    verify_file(key, file)?;
    let bytes = std::fs::read(file).map_err(|source| SignError::Io {
        path: file.display().to_string(),
        source,
    })?;
    let doc: DayExport = serde_json::from_slice(&bytes)
        .map_err(|e| TipError::Chain(format!("{}: not an audit export: {e}", file.display())))?;
    for (i, r) in doc.rows.iter().enumerate() {
        if row_hash(&r.prev_hash, r.seq, &r.at, &r.entry) != r.hash {
            return Err(TipError::Chain(format!(
                "{}: row {}: content does not match its hash",
                file.display(),
                r.seq
            )));
        }
        if let Some(p) = i.checked_sub(1).and_then(|j| doc.rows.get(j)) {
            if p.seq + 1 == r.seq && p.hash != r.prev_hash {
                return Err(TipError::Chain(format!(
                    "{}: row {}: link to row {} broken",
                    file.display(),
                    r.seq,
                    p.seq
                )));
            }
        }
    }
    let head = doc.signed_head.clone().ok_or_else(|| {
        TipError::Chain(format!("{}: carries no signed chain head", file.display()))
    })?;
    if !head.verifies(key) || head.seq != doc.chain_head_seq || head.hash != doc.chain_head_hash {
        return Err(TipError::Chain(format!(
            "{}: the signed chain head does not verify or does not match chain-head-seq/hash",
            file.display()
        )));
    }
    Ok(ExportReport {
        day: doc.day,
        rows: doc.rows.len(),
        nodes: doc.nodes.len(),
        config_sha256: doc.config.map(|c| c.config_sha256),
        head,
    })
}
