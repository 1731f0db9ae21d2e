//! The append-only, hash-chained audit log (PCI DSS Req 10): every decision the
//! service or an admin makes becomes a row whose `hash = SHA-256(prev_hash || row)`,
//! `row` being the canonical JSON of the row without its hash. Editing or deleting
//! any row breaks the chain from there on; `audit verify` recomputes it, and the
//! daily export records the chain head so that truncation is caught as well.
//! Chain heads are signed with the audit key ([`crate::audit_sign`]), so that a
//! chain rewritten with recomputed hashes is caught too.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The chain's starting `prev_hash`.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A decision to record (the backend adds seq, time and hashes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Entry {
    /// Who decided: `service` or `admin:<user>`.
    pub actor: String,
    /// What: `enroll-start`, `enroll-finish`, `approve`, `revoke`, `reenroll`,
    /// `token-create`, `allowlist-import`, `report`.
    pub action: String,
    /// Node id, if any.
    pub node_id: String,
    /// Store id, if any.
    pub store_id: String,
    /// EK SHA-256, if any.
    pub ek_sha256: String,
    /// `admitted`, `pending`, `rejected:<code>`, `ok`.
    pub decision: String,
    /// Human-readable detail.
    pub detail: String,
    /// SHA-256 of the service configuration in force.
    pub config_sha256: String,
}

/// Longest value of a short field (ids, actor, action, decision) kept in a
/// row, bytes; longer input is cut (see [`bounded`]).
pub const FIELD_MAX: usize = 256;
/// Longest `detail` kept in a row, bytes.
pub const DETAIL_MAX: usize = 1024;

impl Entry {
    /// The entry with every field made safe to store and to show: control
    /// and invisible formatting characters escaped, long values cut (see
    /// [`bounded`]). Applied to every row before it is hashed and written,
    /// because fields quote what a client sent (its host name, a parser's
    /// error about its body).
    pub fn bounded(self) -> Entry {
        let f = |s: String| bounded(&s, FIELD_MAX);
        Entry {
            actor: f(self.actor),
            action: f(self.action),
            node_id: f(self.node_id),
            store_id: f(self.store_id),
            ek_sha256: f(self.ek_sha256),
            decision: f(self.decision),
            detail: bounded(&self.detail, DETAIL_MAX),
            config_sha256: f(self.config_sha256),
        }
    }
}

/// Characters that would let a value rewrite a terminal line or hide text
/// when the log is shown: C0/C1 controls, bidi overrides and zero-width marks.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}')
}

/// `s` with control and invisible formatting characters escaped (`\n`,
/// `\u{1b}`, ...) and, when longer than `max` bytes, cut at a character
/// boundary and ended with a marker `…[cut, N bytes]` giving the original
/// length, all within `max` bytes. Idempotent: what it returns it returns
/// unchanged, so a value bounded by a handler and again by the audit append
/// is not escaped twice.
pub fn bounded(s: &str, max: usize) -> String {
    if !s.chars().any(needs_escape) && s.len() <= max {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
        if out.len() > max {
            break;
        }
    }
    if out.len() <= max {
        return out;
    }
    let marker = format!("…[cut, {} bytes]", s.len());
    let mut keep = max.saturating_sub(marker.len());
    while !out.is_char_boundary(keep) {
        keep -= 1;
    }
    // Do not leave half an escape (`\u{1` ...) before the marker.
    if let Some(i) = out[..keep].rfind('\\') {
        let open_u = !out[i..keep].contains('}') && out[i..].starts_with("\\u{");
        if open_u || i + 1 == keep {
            keep = i;
        }
    }
    out.truncate(keep);
    out.push_str(&marker);
    out
}

/// A stored row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Row {
    /// Position in the chain, 1-based, contiguous.
    pub seq: i64,
    /// RFC 3339 UTC time.
    pub at: String,
    /// The decision.
    #[serde(flatten)]
    pub entry: Entry,
    /// Hash of the previous row (or [`GENESIS`]).
    pub prev_hash: String,
    /// `SHA-256(prev_hash || canonical(row))`, hex.
    pub hash: String,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Canonical<'a> {
    seq: i64,
    at: &'a str,
    entry: &'a Entry,
}

/// Computes a row's hash.
pub fn row_hash(prev_hash: &str, seq: i64, at: &str, entry: &Entry) -> String {
    // Serializing plain strings and integers cannot fail.
    let body = serde_json::to_vec(&Canonical { seq, at, entry }).unwrap_or_default();
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(&body);
    hex::encode(h.finalize())
}

/// Builds the next row after `prev` (None: first row).
pub fn next_row(prev: Option<(i64, &str)>, at: String, entry: Entry) -> Row {
    let (seq, prev_hash) = match prev {
        Some((s, h)) => (s + 1, h.to_owned()),
        None => (1, GENESIS.to_owned()),
    };
    let entry = entry.bounded();
    let hash = row_hash(&prev_hash, seq, &at, &entry);
    Row {
        seq,
        at,
        entry,
        prev_hash,
        hash,
    }
}

/// The current UTC time in RFC 3339 (seconds precision).
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Why the chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A row is missing (deleted) or rows were reordered.
    #[error("audit row {expected} is missing (found seq {found})")]
    Gap {
        /// Expected seq.
        expected: i64,
        /// Found seq.
        found: i64,
    },
    /// A row's prev_hash is not the previous row's hash.
    #[error("audit row {seq}: link to previous row broken")]
    Link {
        /// Row.
        seq: i64,
    },
    /// A row's content does not match its hash (edited).
    #[error("audit row {seq}: content does not match its hash (edited)")]
    Hash {
        /// Row.
        seq: i64,
    },
}

/// Verifies a whole chain; returns (rows, head hash).
pub fn verify(rows: &[Row]) -> Result<(usize, String), ChainError> {
    let mut prev = GENESIS.to_owned();
    for (i, r) in rows.iter().enumerate() {
        let expected = i as i64 + 1;
        if r.seq != expected {
            return Err(ChainError::Gap {
                expected,
                found: r.seq,
            });
        }
        if r.prev_hash != prev {
            return Err(ChainError::Link { seq: r.seq });
        }
        if row_hash(&r.prev_hash, r.seq, &r.at, &r.entry) != r.hash {
            return Err(ChainError::Hash { seq: r.seq });
        }
        prev = r.hash.clone();
    }
    Ok((rows.len(), prev))
}

/// The daily export document.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DayExport {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// Chain head (seq, hash) over the whole log at export time.
    pub chain_head_seq: i64,
    /// Hash of the chain head.
    pub chain_head_hash: String,
    /// Distinct configuration hashes in force that day.
    pub config_sha256: Vec<String>,
    /// That day's rows.
    pub rows: Vec<Row>,
    /// When the export was written (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub exported_at: String,
    /// The inventory at export time (absent in exports made before it was added).
    #[serde(default)]
    pub nodes: Vec<crate::evidence::NodeState>,
    /// The configuration in force at export time and its trust inputs' hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<crate::evidence::ConfigEvidence>,
    /// The chain head above, signed by the audit key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_head: Option<crate::audit_sign::SignedHead>,
}

/// Builds the export of `day` (`YYYY-MM-DD`) from the full, verified chain.
pub fn export_day(all: &[Row], day: &str) -> Result<DayExport, ChainError> {
    verify(all)?;
    let rows: Vec<Row> = all
        .iter()
        .filter(|r| r.at.starts_with(day))
        .cloned()
        .collect();
    let mut cfg: Vec<String> = rows
        .iter()
        .map(|r| r.entry.config_sha256.clone())
        .filter(|c| !c.is_empty())
        .collect();
    cfg.sort();
    cfg.dedup();
    let (seq, hash) = all
        .last()
        .map(|r| (r.seq, r.hash.clone()))
        .unwrap_or((0, GENESIS.to_owned()));
    Ok(DayExport {
        day: day.to_owned(),
        chain_head_seq: seq,
        chain_head_hash: hash,
        config_sha256: cfg,
        rows,
        exported_at: String::new(),
        nodes: Vec::new(),
        config: None,
        signed_head: None,
    })
}

/// `DIR/audit/edge/YYYYMMDD.json`.
pub fn export_path(dir: &Path, day: &str) -> PathBuf {
    dir.join("audit")
        .join("edge")
        .join(format!("{}.json", day.replace('-', "")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> Vec<Row> {
        let mut rows: Vec<Row> = Vec::new();
        for i in 0..n {
            let prev = rows.last().map(|r| (r.seq, r.hash.as_str()));
            let day = if i < 2 { "2026-11-22" } else { "2026-11-23" };
            let row = next_row(
                prev,
                format!("{day}T10:00:0{i}Z"),
                Entry {
                    actor: "service".into(),
                    action: "enroll-finish".into(),
                    node_id: format!("n{i}"),
                    decision: "admitted".into(),
                    config_sha256: format!("cfg{}", i % 2),
                    ..Default::default()
                },
            );
            rows.push(row);
        }
        rows
    }

    #[test]
    fn detects_edit_delete_reorder() {
        let rows = chain(4);
        assert_eq!(verify(&rows).expect("valid").0, 4);
        let mut edited = rows.clone();
        edited[1].entry.decision = "rejected".into();
        assert_eq!(verify(&edited), Err(ChainError::Hash { seq: 2 }));
        let mut deleted = rows.clone();
        deleted.remove(1);
        assert!(matches!(verify(&deleted), Err(ChainError::Gap { .. })));
        let mut relinked = rows.clone();
        relinked.remove(1);
        relinked[1].seq = 2;
        assert!(verify(&relinked).is_err());
        let mut rehashed = rows.clone();
        rehashed[2].entry.detail = "x".into();
        rehashed[2].hash = row_hash(
            &rehashed[2].prev_hash,
            3,
            &rehashed[2].at,
            &rehashed[2].entry,
        );
        assert_eq!(verify(&rehashed), Err(ChainError::Link { seq: 4 }));
    }

    #[test]
    fn bounded_escapes_and_cuts() {
        assert_eq!(bounded("store-042-node-1", 256), "store-042-node-1");
        assert_eq!(
            bounded("a\nb\x1b[2Jc\\d\u{202e}e", 256),
            "a\\nb\\u{1b}[2Jc\\d\\u{202e}e"
        );
        let long = "é".repeat(50_000);
        let b = bounded(&long, 256);
        assert!(b.len() <= 256, "{}", b.len());
        assert!(b.ends_with("…[cut, 100000 bytes]"), "{b}");
        assert!(b.starts_with("éé"));
        assert_eq!(bounded(&b, 256), b, "idempotent");
        // No half escape before the marker.
        let bells = bounded(&"\u{7}".repeat(100), 40);
        assert!(bells.ends_with("}…[cut, 100 bytes]"), "{bells}");
        let e = Entry {
            node_id: "x".repeat(100_000),
            detail: "\u{7}".repeat(5000),
            ..Default::default()
        }
        .bounded();
        assert!(e.node_id.len() <= FIELD_MAX);
        assert!(e.detail.len() <= DETAIL_MAX);
        assert!(!e.detail.contains('\u{7}'));
        // What was stored is what was hashed: the chain verifies.
        let row = next_row(None, "2026-12-02T00:00:00Z".into(), e.clone());
        assert_eq!(row.entry, e);
        assert!(verify(&[row]).is_ok());
    }

    #[test]
    fn export_filters_day() {
        let rows = chain(4);
        let e = export_day(&rows, "2026-11-23").expect("export");
        assert_eq!(e.rows.len(), 2);
        assert_eq!(e.chain_head_seq, 4);
        assert_eq!(
            e.config_sha256,
            vec!["cfg0".to_string(), "cfg1".to_string()]
        );
        assert_eq!(
            export_path(Path::new("/x"), "2026-11-23"),
            PathBuf::from("/x/audit/edge/20261123.json")
        );
    }
}
