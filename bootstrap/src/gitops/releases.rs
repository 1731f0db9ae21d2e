//! Releases on disk and the atomic switch between them.
//!
//! ```text
//! <root>/releases/<rev>/     one verified bundle tree per commit id
//! <root>/current -> releases/<rev>   switched by rename(2) of a new symlink
//! <root>/state.json          current, its serial, previous, revisions that failed their health check
//! ```
//!
//! Only the current and the previous (last good) release are kept.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use keel_cmd::CommandRunExt;
use serde::{Deserialize, Serialize};

use keel_cmd::fs::{replace_symlink, write_atomic};

use super::GitopsError;

/// What is applied, persisted atomically after each change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SyncState {
    /// The revision `current` points at.
    pub current: Option<String>,
    /// The last good revision before it (rollback target).
    pub previous: Option<String>,
    /// The signed serial of `current`: a bundle is applied only with a
    /// higher one (absent before the first bundle with a serial).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<u64>,
    /// Revisions that failed their health check: not applied again.
    #[serde(default)]
    pub failed: Vec<String>,
}

/// The bundle root directory.
#[derive(Debug, Clone)]
pub struct Releases {
    root: PathBuf,
}

impl Releases {
    /// Opens (creating) `root`.
    pub fn open(root: &Path) -> Result<Self, GitopsError> {
        let rel = root.join("releases");
        fs::create_dir_all(&rel).map_err(|source| GitopsError::Io {
            what: "creating",
            path: rel,
            source,
        })?;
        Ok(Releases {
            root: root.to_path_buf(),
        })
    }

    fn state_path(&self) -> PathBuf {
        self.root.join("state.json")
    }

    /// The persisted state (empty before the first sync).
    pub fn state(&self) -> Result<SyncState, GitopsError> {
        let p = self.state_path();
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| GitopsError::State(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SyncState::default()),
            Err(source) => Err(GitopsError::Io {
                what: "reading",
                path: p,
                source,
            }),
        }
    }

    /// Persists `state` atomically.
    pub fn save(&self, state: &SyncState) -> Result<(), GitopsError> {
        let p = self.state_path();
        let json =
            serde_json::to_vec_pretty(state).map_err(|e| GitopsError::State(e.to_string()))?;
        write_atomic(&p, &json, 0o644).map_err(|source| GitopsError::Io {
            what: "writing",
            path: p,
            source,
        })
    }

    /// The directory of release `rev`.
    pub fn dir(&self, rev: &str) -> PathBuf {
        self.root.join("releases").join(rev)
    }

    /// A fresh staging directory for `rev` (removed first if left over).
    pub fn staging(&self, rev: &str) -> Result<PathBuf, GitopsError> {
        let p = self.root.join("releases").join(format!(".staging-{rev}"));
        remove_tree(&p)?;
        Ok(p)
    }

    /// Moves a verified staging tree into place as `releases/<rev>`.
    pub fn commit_staging(&self, staging: &Path, rev: &str) -> Result<PathBuf, GitopsError> {
        let dest = self.dir(rev);
        remove_tree(&dest)?;
        fs::rename(staging, &dest).map_err(|source| GitopsError::Io {
            what: "moving",
            path: dest.clone(),
            source,
        })?;
        Ok(dest)
    }

    /// The `current` symlink.
    pub fn current_link(&self) -> PathBuf {
        self.root.join("current")
    }

    /// Points `current` at `rev` (atomically), or removes it for `None`.
    pub fn point_current(&self, rev: Option<&str>) -> Result<(), GitopsError> {
        let link = self.current_link();
        let res = match rev {
            Some(rev) => replace_symlink(&link, &Path::new("releases").join(rev)),
            None => match fs::remove_file(&link) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        };
        res.map_err(|source| GitopsError::Io {
            what: "switching",
            path: link,
            source,
        })
    }

    /// Removes release directories other than `keep`.
    pub fn prune(&self, keep: &[&str]) {
        let Ok(entries) = fs::read_dir(self.root.join("releases")) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name.as_str()) {
                if let Err(err) = remove_tree(&e.path()) {
                    tracing::warn!(release = %name, error = %err, "could not prune old release");
                }
            }
        }
    }
}

fn remove_tree(p: &Path) -> Result<(), GitopsError> {
    match fs::remove_dir_all(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(GitopsError::Io {
            what: "removing",
            path: p.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Runs the health check `argv` in the release directory; its failure text
/// (tail of stderr) becomes the error.
pub fn health_check(argv: &[String], release: &Path, rev: &str) -> Result<(), GitopsError> {
    let Some((program, args)) = argv.split_first() else {
        return Ok(());
    };
    // A relative program name with a slash is taken from the bundle itself.
    let program = if program.contains('/') && !program.starts_with('/') {
        release.join(program).display().to_string()
    } else {
        program.clone()
    };
    Command::new(&program)
        .args(args)
        .current_dir(release)
        .env("KEEL_BUNDLE_DIR", release)
        .env("KEEL_BUNDLE_REVISION", rev)
        .run()
        .map_err(|e| GitopsError::HealthCheck {
            rev: rev.to_string(),
            detail: e.to_string(),
        })
}
