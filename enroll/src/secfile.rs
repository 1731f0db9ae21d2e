//! Files holding secrets: the configuration (it may carry database passwords
//! and EAB keys), the TLS key, the node CA key, the audit key and the SQLite
//! database. They are created 0600, and at startup the service refuses any of
//! them that group or others may access, naming the file, its mode and the fix.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::Loaded;

/// A secret file that is not private to its owner.
#[derive(Debug, thiserror::Error)]
pub enum SecFileError {
    /// Group or others have access.
    #[error(
        "{what} {path} has mode {mode:04o}: group or others may read it; run `chmod 600 {path}`"
    )]
    Mode {
        /// What the file is (`TLS key`, ...).
        what: &'static str,
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// It cannot be examined or created.
    #[error("{what} {path}: {source}")]
    Io {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// Refuses `path` if group or others have any access to it.
pub fn check_private(what: &'static str, path: &Path) -> Result<(), SecFileError> {
    let meta = std::fs::metadata(path).map_err(|source| SecFileError::Io {
        what,
        path: path.display().to_string(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SecFileError::Mode {
            what,
            path: path.display().to_string(),
            mode,
        });
    }
    Ok(())
}

/// Creates `path` empty with mode 0600 if it does not exist (whatever the
/// umask), so that a program opening it afterwards never widens it.
pub fn create_private_if_missing(what: &'static str, path: &Path) -> Result<(), SecFileError> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(SecFileError::Io {
            what,
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Writes `bytes` to `path` atomically with mode 0600 (the temp file is 0600
/// from its creation, so the secret is never readable by others, not even briefly).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    keel_cmd::fs::write_atomic(path, bytes, 0o600)
}

/// The secret files of a configuration that exist outside the database:
/// the configuration itself, the TLS key, the node CA key and the audit key.
pub fn secret_files(config_path: &Path, loaded: &Loaded) -> Vec<(&'static str, PathBuf)> {
    let c = &loaded.config;
    vec![
        ("configuration", config_path.to_path_buf()),
        ("TLS key", c.tls_key.clone()),
        ("node CA key", c.node_ca_key.clone()),
        ("audit key", c.audit_key.clone()),
    ]
}

/// The startup check: every file of [`secret_files`] is private (the SQLite
/// database is checked when it is opened).
pub fn check_startup(config_path: &Path, loaded: &Loaded) -> Result<(), SecFileError> {
    for (what, p) in secret_files(config_path, loaded) {
        check_private(what, &p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("k");
        write_private(&p, b"secret").expect("write");
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        check_private("key", &p).expect("0600 is fine");
        for bad in [0o640, 0o604, 0o660, 0o620] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(bad)).expect("chmod");
            let e = check_private("TLS key", &p).expect_err("refused");
            let msg = e.to_string();
            assert!(msg.contains(&format!("{bad:04o}")), "{msg}");
            assert!(msg.contains(&format!("chmod 600 {}", p.display())), "{msg}");
        }
        let q = d.path().join("new.db");
        create_private_if_missing("SQLite database", &q).expect("create");
        let mode = std::fs::metadata(&q).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let e = check_private("key", &d.path().join("missing")).expect_err("missing");
        assert!(e.to_string().contains("missing"), "{e}");
    }
}
