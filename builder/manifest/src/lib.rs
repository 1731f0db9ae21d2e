//! The release manifest: what a signed Keel release contains and the PCR
//! values a node booting it will measure.
//!
//! `keel build` writes `manifest.json` beside the image and signs it;
//! `keel verify` and keel-enroll read it back with [`parse`]. The format is
//! versioned ([`FORMAT_VERSION`]); unknown fields are rejected so a reader never
//! silently ignores something a newer writer meant. See docs/releasing.md.
//!
//! [`bundle`]: the canonical GitOps bundle manifest, written by `keel bundle
//! sign` and checked by keel-bootstrap.

pub mod bundle;
pub mod signature;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The manifest format this crate reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Errors reading or checking a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON for format version {FORMAT_VERSION}: {0}")]
    Json(#[from] serde_json::Error),
    #[error("manifest format version {0} is not supported (this reader knows {FORMAT_VERSION})")]
    Version(u32),
    #[error("invalid manifest: {0}")]
    Invalid(String),
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// `manifest.json`, format version 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Manifest {
    /// Always [`FORMAT_VERSION`] when written by this crate.
    pub format_version: u32,
    pub image: Image,
    pub build: Build,
    /// Every file of the release except `manifest.json` and the signatures.
    pub artifacts: Vec<Artifact>,
    /// The SBOMs embedded in the image under `/usr/share/keel/sbom/`.
    pub sboms: Vec<Sbom>,
    /// dm-verity root hash of the root (or /usr) partition, hex, when the image has one.
    pub verity_roothash: Option<String>,
    /// Expected PCR values, by PCR index (sha256 bank).
    pub pcrs: BTreeMap<u32, PcrExpectation>,
}

/// What was built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Image {
    pub name: String,
    pub version: String,
}

/// What it was built from and with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Build {
    /// SHA-256 of the image definition (hex).
    pub definition_sha256: String,
    /// SHA-256 of the package lock, when the build used one.
    pub lock_sha256: Option<String>,
    pub source_date_epoch: i64,
    pub mkosi_version: String,
    /// Version of the `keel` that wrote this manifest.
    pub keel_version: String,
}

/// One release file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Artifact {
    /// File name relative to the release directory (no `/`).
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// An SBOM inside the image (also published as an artifact of the same name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Sbom {
    /// `spdx-2.3` or `cyclonedx-1.5`.
    pub format: String,
    /// Absolute path inside the image.
    pub path: String,
    pub sha256: String,
}

/// How trustworthy an expected PCR value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PcrSource {
    /// Computed from the release's own files; identical on every machine.
    Predicted,
    /// Computed from the release's files under stated assumptions about the
    /// firmware's events (see `assumptions`); confirm with a reference boot.
    PredictedFirmwareDependent,
    /// Recorded from a reference boot on the target hardware.
    ReferenceBoot,
}

/// An expected PCR value and how it was obtained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PcrExpectation {
    /// Hash bank, always `sha256` in format version 1.
    pub bank: String,
    /// The expected value (hex), or `None` when it must come from a reference boot.
    pub value: Option<String>,
    pub source: PcrSource,
    /// Later values of the same PCR, e.g. PCR 11 after each systemd boot phase
    /// (`enter-initrd`, `leave-initrd`, `sysinit`, `ready`), keyed by phase path.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub phases: BTreeMap<String, String>,
    /// The measured components in order (e.g. `.linux` section digest,
    /// Authenticode hash of the UKI), so a verifier can match an event log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<PcrComponent>,
    /// What the value assumes about the firmware, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assumptions: Option<String>,
}

/// One measurement extended into a PCR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PcrComponent {
    /// What was measured (`.linux`, `systemd-boot authenticode`, ...).
    pub what: String,
    /// The digest extended into the PCR (hex).
    pub sha256: String,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Parses and validates `manifest.json` text.
pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "kebab-case")]
    struct Probe {
        format_version: u32,
    }
    let probe: Probe = serde_json::from_str(text)?;
    if probe.format_version != FORMAT_VERSION {
        return Err(ManifestError::Version(probe.format_version));
    }
    let m: Manifest = serde_json::from_str(text)?;
    m.validate()?;
    Ok(m)
}

/// Reads and parses a manifest file.
pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text)
}

impl Manifest {
    /// Checks the invariants a reader relies on: digests are lowercase hex
    /// SHA-256, artifact names are plain unique file names, PCR values are
    /// present unless they come from a reference boot.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let bad = |m: String| Err(ManifestError::Invalid(m));
        if self.format_version != FORMAT_VERSION {
            return Err(ManifestError::Version(self.format_version));
        }
        if self.image.name.is_empty() || self.image.version.is_empty() {
            return bad("image name and version must not be empty".into());
        }
        if !is_hex(&self.build.definition_sha256, 64) {
            return bad("build.definition-sha256 is not a sha256 hex digest".into());
        }
        if let Some(l) = &self.build.lock_sha256 {
            if !is_hex(l, 64) {
                return bad("build.lock-sha256 is not a sha256 hex digest".into());
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for a in &self.artifacts {
            if a.name.is_empty() || a.name.contains('/') || a.name == ".." || a.name == "." {
                return bad(format!(
                    "artifact name {:?} is not a plain file name",
                    a.name
                ));
            }
            if !names.insert(a.name.as_str()) {
                return bad(format!("artifact {} is listed twice", a.name));
            }
            if !is_hex(&a.sha256, 64) {
                return bad(format!("artifact {}: sha256 is not a hex digest", a.name));
            }
        }
        for s in &self.sboms {
            if !is_hex(&s.sha256, 64) || !s.path.starts_with('/') {
                return bad(format!("sbom {}: bad path or digest", s.path));
            }
        }
        if let Some(r) = &self.verity_roothash {
            if r.is_empty() || !r.bytes().all(|b| b.is_ascii_hexdigit()) {
                return bad("verity-roothash is not hex".into());
            }
        }
        for (idx, p) in &self.pcrs {
            if *idx > 23 || p.bank != "sha256" {
                return bad(format!("pcr {idx}: only sha256 PCRs 0-23 are allowed"));
            }
            match (&p.value, p.source) {
                (Some(v), _) if !is_hex(v, 64) => {
                    return bad(format!("pcr {idx}: value is not a sha256 hex digest"))
                }
                (None, PcrSource::Predicted | PcrSource::PredictedFirmwareDependent) => {
                    return bad(format!("pcr {idx}: a predicted PCR needs a value"))
                }
                _ => {}
            }
            for v in p
                .phases
                .values()
                .chain(p.components.iter().map(|c| &c.sha256))
            {
                if !is_hex(v, 64) {
                    return bad(format!("pcr {idx}: {v:?} is not a sha256 hex digest"));
                }
            }
        }
        Ok(())
    }

    /// The artifact called `name`.
    pub fn artifact(&self, name: &str) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.name == name)
    }

    /// Pretty JSON with a trailing newline, stable field order.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests;
