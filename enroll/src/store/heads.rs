//! The `audit_heads` table (signed chain heads, see [`crate::audit_sign`]) for
//! both backends. Appends only; a second head for a row already signed (two
//! replicas signing the same tip) is ignored.

use rusqlite::{params, Connection};

use super::StoreError;
use crate::audit_sign::SignedHead;

const COLS: &str = "seq, hash, signed_at, key_id, signature";

pub(super) fn sqlite_put(c: &Connection, h: &SignedHead) -> Result<(), StoreError> {
    c.prepare_cached(&format!(
        "INSERT INTO audit_heads ({COLS}) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (seq) DO NOTHING"
    ))?
    .execute(params![h.seq, h.hash, h.signed_at, h.key_id, h.signature])?;
    Ok(())
}

/// All heads by row, or (`last`) only the highest.
pub(super) fn sqlite_list(c: &Connection, last: bool) -> Result<Vec<SignedHead>, StoreError> {
    let sql = if last {
        format!("SELECT {COLS} FROM audit_heads ORDER BY seq DESC LIMIT 1")
    } else {
        format!("SELECT {COLS} FROM audit_heads ORDER BY seq")
    };
    let mut st = c.prepare_cached(&sql)?;
    let rows = st
        .query_map([], |r| {
            Ok(SignedHead {
                seq: r.get(0)?,
                hash: r.get(1)?,
                signed_at: r.get(2)?,
                key_id: r.get(3)?,
                signature: r.get(4)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub(super) async fn pg_put(c: &tokio_postgres::Client, h: &SignedHead) -> Result<(), StoreError> {
    c.execute(
        &format!(
            "INSERT INTO audit_heads ({COLS}) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (seq) DO NOTHING"
        ),
        &[&h.seq, &h.hash, &h.signed_at, &h.key_id, &h.signature],
    )
    .await?;
    Ok(())
}

pub(super) async fn pg_list(
    c: &tokio_postgres::Client,
    last: bool,
) -> Result<Vec<SignedHead>, StoreError> {
    let sql = if last {
        format!("SELECT {COLS} FROM audit_heads ORDER BY seq DESC LIMIT 1")
    } else {
        format!("SELECT {COLS} FROM audit_heads ORDER BY seq")
    };
    Ok(c.query(&sql, &[])
        .await?
        .iter()
        .map(|r| SignedHead {
            seq: r.get(0),
            hash: r.get(1),
            signed_at: r.get(2),
            key_id: r.get(3),
            signature: r.get(4),
        })
        .collect())
}
