//! PCR policy: which PCR values are acceptable for each release. Built from
//! a release manifest's expected PCRs or from an explicit TOML policy file:
//!
//! ```toml
//! [[release]]
//! name = "store-node"
//! version = "2026.11.1"
//! [release.pcrs]
//! 7 = ["<sha256 hex>", "<another allowed value>"]
//! 11 = ["<sha256 hex>"]
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::protocol::ReleaseRef;

/// Policy problems.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The node claims a release the policy does not know.
    #[error("no reference values for release {name} {version}")]
    UnknownRelease {
        /// Name.
        name: String,
        /// Version.
        version: String,
    },
    /// The policy constrains a PCR the quote does not cover.
    #[error("PCR {0} is required by the policy but was not quoted")]
    NotQuoted(u8),
    /// A PCR value is not allowed.
    #[error("PCR {pcr} value {value} is not an allowed value for this release")]
    NotAllowed {
        /// PCR index.
        pcr: u8,
        /// Value found (hex).
        value: String,
    },
    /// A release whose reference values constrain no PCR would admit any
    /// boot: it is refused where it is loaded (fail closed).
    #[error(
        "release {name} {version} constrains no PCR: any boot would pass. Give it reference \
         values (a manifest with expected PCRs, or `[release.pcrs]` in the policy file)"
    )]
    Unconstrained {
        /// Name.
        name: String,
        /// Version.
        version: String,
    },
    /// The policy file is wrong.
    #[error("PCR policy: {0}")]
    Parse(String),
    /// Reading the policy file failed.
    #[error("reading PCR policy {path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// PCRs quoted for every release whether or not the policy constrains them:
/// 0 (firmware code) and 7 (Secure Boot state). Their values are evaluated
/// where reference values exist and always land in the replayed event log.
pub const ALWAYS_QUOTED: [u8; 2] = [0, 7];

/// Allowed values per PCR, per release.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PcrPolicy {
    releases: BTreeMap<ReleaseRef, BTreeMap<u8, Vec<[u8; 32]>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct File {
    #[serde(default)]
    release: Vec<FileRelease>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileRelease {
    name: String,
    version: String,
    pcrs: BTreeMap<String, Vec<String>>,
}

fn digest(pcr: u8, hex_value: &str) -> Result<[u8; 32], PolicyError> {
    let v = hex::decode(hex_value)
        .map_err(|_| PolicyError::Parse(format!("PCR {pcr}: {hex_value:?} is not hex")))?;
    v.try_into().map_err(|_| {
        PolicyError::Parse(format!("PCR {pcr}: {hex_value:?} is not a SHA-256 digest"))
    })
}

impl PcrPolicy {
    /// Parses a TOML policy.
    pub fn parse(text: &str) -> Result<PcrPolicy, PolicyError> {
        let f: File = toml::from_str(text).map_err(|e| PolicyError::Parse(e.to_string()))?;
        let mut p = PcrPolicy::default();
        for r in f.release {
            let mut map = BTreeMap::new();
            for (k, vals) in r.pcrs {
                let idx: u8 =
                    k.parse().ok().filter(|i| *i < 24).ok_or_else(|| {
                        PolicyError::Parse(format!("{k:?} is not a PCR index 0-23"))
                    })?;
                let vals = vals
                    .iter()
                    .map(|v| digest(idx, v))
                    .collect::<Result<Vec<_>, _>>()?;
                if vals.is_empty() {
                    return Err(PolicyError::Parse(format!(
                        "release {} {}: PCR {idx} lists no allowed value",
                        r.name, r.version
                    )));
                }
                map.insert(idx, vals);
            }
            if map.is_empty() {
                return Err(PolicyError::Unconstrained {
                    name: r.name,
                    version: r.version,
                });
            }
            p.releases.insert(
                ReleaseRef {
                    name: r.name,
                    version: r.version,
                },
                map,
            );
        }
        Ok(p)
    }

    /// Reads a TOML policy file.
    pub fn load(path: &Path) -> Result<PcrPolicy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Sets the allowed values of one PCR for a release.
    pub fn allow(&mut self, release: &ReleaseRef, pcr: u8, values: Vec<[u8; 32]>) {
        self.releases
            .entry(release.clone())
            .or_default()
            .insert(pcr, values);
    }

    /// Adds a release manifest's expected PCRs: the value and every phase
    /// value are allowed. PCRs whose value awaits a reference boot are not
    /// constrained until one is recorded; a manifest that constrains no PCR
    /// at all is refused ([`PolicyError::Unconstrained`]).
    pub fn add_manifest(&mut self, m: &keel_manifest::Manifest) -> Result<(), PolicyError> {
        let rel = ReleaseRef {
            name: m.image.name.clone(),
            version: m.image.version.clone(),
        };
        for (idx, exp) in &m.pcrs {
            let idx = u8::try_from(*idx)
                .ok()
                .filter(|i| *i < 24)
                .ok_or_else(|| PolicyError::Parse(format!("PCR {idx} out of range")))?;
            let mut vals = Vec::new();
            for v in exp.value.iter().chain(exp.phases.values()) {
                vals.push(digest(idx, v)?);
            }
            if !vals.is_empty() {
                self.allow(&rel, idx, vals);
            }
        }
        if self.releases.get(&rel).is_none_or(|m| m.is_empty()) {
            return Err(PolicyError::Unconstrained {
                name: rel.name,
                version: rel.version,
            });
        }
        Ok(())
    }

    /// The PCRs the policy constrains for `release`.
    pub fn pcrs_for(&self, release: &ReleaseRef) -> Option<Vec<u8>> {
        self.releases
            .get(release)
            .map(|m| m.keys().copied().collect())
    }

    /// What the node is asked to quote for `release`: every constrained PCR
    /// plus [`ALWAYS_QUOTED`] (firmware and Secure Boot state), so the quote
    /// and the replayed event log always cover them. `None` for a release
    /// without reference values.
    pub fn selection_for(&self, release: &ReleaseRef) -> Option<Vec<u8>> {
        let rules = self.releases.get(release).filter(|m| !m.is_empty())?;
        let mut pcrs: Vec<u8> = rules.keys().copied().chain(ALWAYS_QUOTED).collect();
        pcrs.sort_unstable();
        pcrs.dedup();
        Some(pcrs)
    }

    /// Releases with reference values, in order.
    pub fn releases(&self) -> impl Iterator<Item = &ReleaseRef> {
        self.releases.keys()
    }

    /// True when the policy knows `release`.
    pub fn knows(&self, release: &ReleaseRef) -> bool {
        self.releases.contains_key(release)
    }

    /// Checks quoted PCR values against the release's allowed values.
    pub fn evaluate(
        &self,
        release: &ReleaseRef,
        pcrs: &BTreeMap<u8, Vec<u8>>,
    ) -> Result<(), PolicyError> {
        let rules = self
            .releases
            .get(release)
            .ok_or_else(|| PolicyError::UnknownRelease {
                name: release.name.clone(),
                version: release.version.clone(),
            })?;
        if rules.is_empty() {
            return Err(PolicyError::Unconstrained {
                name: release.name.clone(),
                version: release.version.clone(),
            });
        }
        for (idx, allowed) in rules {
            let v = pcrs.get(idx).ok_or(PolicyError::NotQuoted(*idx))?;
            if !allowed.iter().any(|a| a.as_slice() == v.as_slice()) {
                return Err(PolicyError::NotAllowed {
                    pcr: *idx,
                    value: hex::encode(v),
                });
            }
        }
        Ok(())
    }
}
