//! `build-record.json`: what went into a build (hashes of the definition,
//! lock, extra trees, rendered configuration, keel itself), which tools
//! built it, how long each step took, and what came out (artifact hashes,
//! verity root hash). A later `keel build` compares its inputs with the
//! record to skip a build that would change nothing.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The file name, in the output directory.
pub const FILE_NAME: &str = "build-record.json";

/// A build record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BuildRecord {
    pub format: u32,
    pub image_name: String,
    pub image_version: String,
    /// Input name → sha256 (definition, lock, trees, rendered config, tools).
    pub inputs: BTreeMap<String, String>,
    /// Tool name → version string.
    pub tools: BTreeMap<String, String>,
    pub source_date_epoch: i64,
    /// Step name → seconds.
    pub durations: BTreeMap<String, f64>,
    /// Artifact file name (in the output directory) → sha256.
    pub artifacts: BTreeMap<String, String>,
    /// dm-verity root hash of the root partition, when verity is on.
    pub verity_roothash: Option<String>,
    /// Unix time the build finished (informational; not an input).
    pub finished_at: i64,
}

impl BuildRecord {
    /// Parses a record.
    pub fn parse(text: &str) -> Result<BuildRecord, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Reads OUT/build-record.json, `None` when absent or unreadable.
    pub fn load(out_dir: &Path) -> Option<BuildRecord> {
        let text = std::fs::read_to_string(out_dir.join(FILE_NAME)).ok()?;
        match Self::parse(&text) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!("ignoring unreadable {FILE_NAME}: {e}");
                None
            }
        }
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// Why this record's outputs cannot be reused for `inputs`, or `None`
    /// when every input matches and every artifact is still there unchanged.
    pub fn stale_reason(
        &self,
        inputs: &BTreeMap<String, String>,
        out_dir: &Path,
        hash: &dyn Fn(&Path) -> std::io::Result<String>,
    ) -> Option<String> {
        if &self.inputs != inputs {
            let changed: Vec<_> = inputs
                .iter()
                .filter(|(k, v)| self.inputs.get(*k) != Some(v))
                .map(|(k, _)| k.as_str())
                .chain(
                    self.inputs
                        .keys()
                        .filter(|k| !inputs.contains_key(*k))
                        .map(String::as_str),
                )
                .collect();
            return Some(format!("inputs changed: {}", changed.join(", ")));
        }
        if self.artifacts.is_empty() {
            return Some("no artifacts recorded".into());
        }
        for (name, want) in &self.artifacts {
            match hash(&out_dir.join(name)) {
                Ok(h) if &h == want => {}
                Ok(_) => return Some(format!("{name} changed since the last build")),
                Err(_) => return Some(format!("{name} is missing")),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;
