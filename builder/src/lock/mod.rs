//! `packages.lock`: every package an image contains, dependencies included,
//! at an exact version with the sha256 of its .deb, plus the archive
//! snapshot (each suite's Release date and InRelease hash) it was resolved
//! against. No mirror host is recorded: a lock is valid on any mirror.
//!
//! `keel lock` resolves it with the real apt against the real archive
//! ([`apt`]); `keel build` pins every package to its locked version (mkosi
//! passes `name=version` to apt), checks first that the archive or the
//! package pool ([`crate::pool`]) still offers each one with the locked
//! digest, and after the build compares mkosi's package manifest with the
//! lock. The lock's newest Release date is the image's default
//! SOURCE_DATE_EPOCH, so a rebuild from the same lock has the same timestamps.

pub mod apt;
mod diff;

pub use diff::describe as diff_text;

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

/// The lock format this Keel writes and reads.
pub const FORMAT: u32 = 2;

/// One archive suite at resolution time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Snapshot {
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
    /// sha256 of the .deb (from the archive's signed package index).
    pub sha256: String,
}

impl LockedPackage {
    /// `name=version`, as apt takes a pin.
    pub fn pin(&self) -> String {
        format!("{}={}", self.name, self.version)
    }

    /// The file name apt gives this package's .deb (`:` of an epoch as `%3a`).
    pub fn deb_file_name(&self) -> String {
        format!(
            "{}_{}_{}.deb",
            self.name,
            self.version.replace(':', "%3a"),
            self.architecture
        )
    }
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
        let invalid = |message: String| LockError::Invalid {
            file: file.to_path_buf(),
            message,
        };
        // The version first, so an old lock gets a precise message rather
        // than a complaint about the fields it lacks.
        #[derive(Deserialize)]
        struct Header {
            version: Option<u32>,
        }
        let header: Header = toml::from_str(text).map_err(|e| invalid(e.message().to_string()))?;
        match header.version {
            Some(FORMAT) => {}
            Some(1) => {
                return Err(invalid(
                    "lock format 1 has no .deb digests: run `keel lock --update` to write format 2"
                        .into(),
                ))
            }
            Some(v) => {
                return Err(invalid(format!(
                    "lock format version {v} is not supported (want {FORMAT})"
                )))
            }
            None => return Err(invalid("no `version`: not a keel lock file".into())),
        }
        let lock: Lock = toml::from_str(text).map_err(|e| invalid(e.message().to_string()))?;
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
        list.iter().map(LockedPackage::pin).collect()
    }

    /// Every distinct package of the image and its initrd, sorted.
    pub fn all_packages(&self) -> Vec<&LockedPackage> {
        let mut v: Vec<&LockedPackage> =
            self.packages.iter().chain(&self.initrd_packages).collect();
        v.sort();
        v.dedup();
        v
    }

    /// The newest suite date: the image's default SOURCE_DATE_EPOCH.
    pub fn source_date_epoch(&self) -> Option<i64> {
        self.snapshots.iter().map(|s| s.date_epoch).max()
    }
}

/// Runs `keel lock`: writes a lock when there is none, re-resolves with
/// `--update`, and otherwise reports whether the archive still offers every
/// locked version.
pub fn run(args: LockArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let spec = crate::spec::load(&args.image_dir)?;
    let mirrors = crate::spec::mirror::for_host(&spec.distribution)?;
    let path = args.image_dir.join(FILE_NAME);
    let old = match Lock::load(&args.image_dir) {
        // An unreadable old lock is what --update is for: replace it.
        Err(e) if args.update => {
            tracing::warn!("replacing {}: {e}", path.display());
            None
        }
        r => r?,
    };
    let apt = apt::PrivateApt::new(&spec, &mirrors, None)?;
    if let (Some(old), false) = (&old, args.update) {
        let check = apt.check(old)?;
        if check.gone().is_empty() {
            println!(
                "{}: current: the archive offers all {} locked packages at their locked digests",
                path.display(),
                old.all_packages().len()
            );
            return Ok(());
        }
        anyhow::bail!(
            "{}: stale: the archive no longer offers {}; run `keel lock --update {}` to re-resolve",
            path.display(),
            check.gone().join(", "),
            args.image_dir.display()
        );
    }
    let lock = apt::resolve_with(&apt, &spec).context("resolving packages")?;
    let text = lock.to_text();
    if args.dry_run {
        print!("{text}");
        return Ok(());
    }
    keel_cmd::fs::write_atomic(&path, text.as_bytes(), 0o644)
        .with_context(|| format!("writing {}", path.display()))?;
    println!(
        "wrote {}: {} packages, {} initrd packages",
        path.display(),
        lock.packages.len(),
        lock.initrd_packages.len()
    );
    if let Some(old) = &old {
        print!("{}", diff_text(old, &lock));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
