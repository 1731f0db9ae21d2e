//! `write_files`: write each (already checked and decoded) entry atomically
//! with its mode, owner and append flag. An owner that names no user or
//! group of the target root is a seed error ([`SeedError`], exit code 4):
//! retrying cannot fix it.

use std::path::Path;

use anyhow::{Context, Result};

use crate::fsutil::in_root;
use crate::seed::user_data::WriteFile;
use crate::seed::SeedError;
use keel_cmd::fs::write_atomic;

/// Writes every entry under `root`.
pub fn write_files(root: &Path, files: &[WriteFile]) -> Result<()> {
    for f in files {
        // Checked when parsing; kept for callers that build entries by hand.
        let path = in_root(root, &f.path).ok_or_else(|| SeedError::Invalid {
            file: "user-data".into(),
            message: format!(
                "write_files path {:?} must be absolute, without '..'",
                f.path
            ),
        })?;
        let (uid, gid) =
            super::users::resolve_owner(root, &f.owner).map_err(|e| SeedError::Invalid {
                file: "user-data".into(),
                message: format!("write_files {}: owner {}: {e:#}", f.path, f.owner),
            })?;
        let mut data = f.data.clone();
        if f.append {
            let mut old = std::fs::read(&path).unwrap_or_default();
            old.append(&mut data);
            data = old;
        }
        write_atomic(&path, &data, f.mode)
            .with_context(|| format!("writing {}", path.display()))?;
        std::os::unix::fs::chown(&path, Some(uid), gid)
            .or_else(|e| {
                if skip_chown(uid, gid.unwrap_or(0)) {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .with_context(|| format!("chown {}", path.display()))?;
    }
    Ok(())
}

/// Without root privileges (unit tests as a user) chown to root is skipped.
pub(crate) fn skip_chown(uid: u32, gid: u32) -> bool {
    uid == 0 && gid == 0 && !is_root()
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}
