//! Nightly evidence: what the signed daily export carries besides the day's
//! audit rows. An auditor reading `YYYYMMDD.json` sees the inventory as it
//! stood at export time (every node's store, status, release and bundle
//! revision) and the configuration in force: the config file's hash and the
//! hash of every trust input it names (TLS and node CA certificates, TPM
//! vendor roots, release manifests and their key, the PCR policy). Private
//! keys are never hashed into evidence. The export is signed as a whole
//! (`YYYYMMDD.json.sig`), so these parts are covered by the same signature as
//! the rows.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::admission::NodeRow;
use crate::config::{Config, Loaded};

/// One node as the inventory had it at export time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct NodeState {
    /// Store.
    pub store_id: String,
    /// Node id (unique within its store).
    pub node_id: String,
    /// `pending`, `approved`, `admitted` or `revoked`.
    pub status: String,
    /// Release the node attested (`name version`).
    pub release: String,
    /// Last GitOps bundle revision it reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Its EK (SHA-256 hex).
    pub ek_sha256: String,
    /// Unix seconds of the row's last change.
    pub updated_at: i64,
}

impl From<&NodeRow> for NodeState {
    fn from(n: &NodeRow) -> Self {
        NodeState {
            store_id: n.store_id.clone(),
            node_id: n.node_id.clone(),
            status: n.status.as_str().to_owned(),
            release: n.release.clone(),
            revision: n.revision.clone(),
            ek_sha256: n.ek_sha256.clone(),
            updated_at: n.updated_at,
        }
    }
}

/// The configuration in force when the export was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ConfigEvidence {
    /// SHA-256 of the configuration file's text (the value audit rows carry).
    pub config_sha256: String,
    /// `role: path` → SHA-256 of each trust input the configuration names;
    /// a directory contributes each of its files.
    pub inputs: BTreeMap<String, String>,
}

/// The public trust inputs a configuration names, as (role, path). Secret
/// files (TLS key, node CA key, audit key) are left out on purpose.
fn trust_inputs(c: &Config) -> Vec<(&'static str, &Path)> {
    let mut v: Vec<(&'static str, &Path)> = vec![
        ("tls-cert", &c.tls_cert),
        ("node-ca-cert", &c.node_ca_cert),
        ("ek-roots", &c.ek_roots),
    ];
    if let Some(p) = &c.manifests_dir {
        v.push(("manifests-dir", p));
    }
    if let Some(p) = &c.manifest_key {
        v.push(("manifest-key", p));
    }
    if let Some(p) = &c.pcr_policy {
        v.push(("pcr-policy", p));
    }
    v
}

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

impl ConfigEvidence {
    /// Hashes the configuration's trust inputs as they are on disk now. A
    /// named input that cannot be read is an error: evidence with a hole in
    /// it would say less than it seems to.
    pub fn collect(loaded: &Loaded) -> anyhow::Result<ConfigEvidence> {
        let mut inputs = BTreeMap::new();
        for (role, path) in trust_inputs(&loaded.config) {
            if path.is_dir() {
                let mut files: Vec<_> = std::fs::read_dir(path)
                    .with_context(|| format!("listing {role} {}", path.display()))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_file())
                    .collect();
                files.sort();
                for f in files {
                    inputs.insert(format!("{role}: {}", f.display()), sha256_file(&f)?);
                }
            } else {
                let sum = sha256_file(path)
                    .with_context(|| format!("hashing {role} for the evidence export"))?;
                inputs.insert(format!("{role}: {}", path.display()), sum);
            }
        }
        Ok(ConfigEvidence {
            config_sha256: loaded.sha256.clone(),
            inputs,
        })
    }
}

/// Resolves an export day: `YYYY-MM-DD`, or `today` / `yesterday` (UTC), so a
/// timer can ask for "the day that just ended" without computing dates.
pub fn resolve_day(day: &str, now: time::OffsetDateTime) -> anyhow::Result<String> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let date = match day {
        "today" => now.date(),
        "yesterday" => now
            .date()
            .previous_day()
            .context("no day before the first representable date")?,
        d => time::Date::parse(d, fmt).with_context(|| {
            format!("{d:?} is not a day: give YYYY-MM-DD (UTC), `today` or `yesterday`")
        })?,
    };
    Ok(date.format(fmt)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_resolve_in_utc() {
        let now = time::macros::datetime!(2026-03-01 00:10 UTC);
        let day = |d: &str| resolve_day(d, now).expect("a day");
        assert_eq!(day("yesterday"), "2026-02-28");
        assert_eq!(day("today"), "2026-03-01");
        assert_eq!(day("2025-12-31"), "2025-12-31");
        for bad in ["2025-13-01", "last week", "20251231", ""] {
            let e = resolve_day(bad, now).expect_err("refused").to_string();
            assert!(e.contains("YYYY-MM-DD"), "{bad}: {e}");
        }
    }
}
