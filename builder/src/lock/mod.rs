//! `packages.lock`: every package an image contains, dependencies included,
//! at an exact version, plus the archive snapshot (each suite's Release date
//! and InRelease hash) it was resolved against.
//!
//! `keel lock` resolves it with the real apt against the real archive
//! ([`apt`]); `keel build` pins every package to its locked version (mkosi
//! passes `name=version` to apt), checks first that the archive still offers
//! each one, and after the build compares mkosi's package manifest with the
//! lock. The lock's newest Release date is the image's default
//! SOURCE_DATE_EPOCH, so a rebuild from the same lock has the same timestamps.

pub mod apt;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cli::LockArgs;

/// The file name of a lock, beside `image.toml`.
pub const FILE_NAME: &str = "packages.lock";

/// A parsed `packages.lock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Lock {
    /// Format version of this file.
    pub version: u32,
    /// The archive suites the packages were resolved from.
    #[serde(rename = "snapshot")]
    pub snapshots: Vec<Snapshot>,
    /// Packages of the image itself.
    #[serde(rename = "package")]
    pub packages: Vec<LockedPackage>,
    /// Packages of the image's initrd.
    #[serde(default, rename = "initrd-package")]
    pub initrd_packages: Vec<LockedPackage>,
}

/// One archive suite at resolution time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Snapshot {
    pub uri: String,
    pub suite: String,
    /// `Date:` of the suite's Release file, as written there.
    pub date: String,
    /// The same date in seconds since 1970.
    pub date_epoch: i64,
    /// sha256 of the InRelease file.
    pub inrelease_sha256: String,
}

/// One package at an exact version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
    pub architecture: String,
}

/// A bad lock file.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{file}: {message}")]
    Invalid { file: PathBuf, message: String },
    #[error("reading {file}: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Lock {
    /// Parses lock text; `file` is only used in error messages.
    pub fn parse(text: &str, file: &Path) -> Result<Lock, LockError> {
        let lock: Lock = toml::from_str(text).map_err(|e| LockError::Invalid {
            file: file.to_path_buf(),
            message: e.message().to_string(),
        })?;
        if lock.version != 1 {
            return Err(LockError::Invalid {
                file: file.to_path_buf(),
                message: format!(
                    "lock format version {} is not supported (want 1)",
                    lock.version
                ),
            });
        }
        if lock.packages.is_empty() {
            return Err(LockError::Invalid {
                file: file.to_path_buf(),
                message: "no packages: run `keel lock` again".into(),
            });
        }
        Ok(lock)
    }

    /// Reads `DIR/packages.lock` if it exists.
    pub fn load(image_dir: &Path) -> Result<Option<Lock>, LockError> {
        let file = image_dir.join(FILE_NAME);
        match std::fs::read_to_string(&file) {
            Ok(text) => Lock::parse(&text, &file).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(LockError::Read { file, source }),
        }
    }

    /// The lock as file text: a header comment, then TOML.
    pub fn to_text(&self) -> String {
        let body = toml::to_string(self).unwrap_or_default();
        format!(
            "# Written by `keel lock`: exact package versions for this image. Do not edit.\n{body}"
        )
    }

    /// `name=version` for every package of the image (or of its initrd).
    pub fn pinned(&self, initrd: bool) -> Vec<String> {
        let list = if initrd {
            &self.initrd_packages
        } else {
            &self.packages
        };
        list.iter()
            .map(|p| format!("{}={}", p.name, p.version))
            .collect()
    }

    /// The newest suite date: the image's default SOURCE_DATE_EPOCH.
    pub fn source_date_epoch(&self) -> Option<i64> {
        self.snapshots.iter().map(|s| s.date_epoch).max()
    }
}

/// Runs `keel lock`.
pub fn run(args: LockArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let spec = crate::spec::load(&args.image_dir)?;
    let lock = apt::resolve(&spec).context("resolving packages")?;
    let text = lock.to_text();
    if args.dry_run {
        print!("{text}");
        return Ok(());
    }
    let path = args.image_dir.join(FILE_NAME);
    crate::fsutil::write_atomic(&path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    println!(
        "wrote {}: {} packages, {} initrd packages",
        path.display(),
        lock.packages.len(),
        lock.initrd_packages.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests;
