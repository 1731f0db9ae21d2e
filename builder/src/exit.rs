//! How `keel` ends: its exit codes, and the typed errors that choose them.
//!
//! CI scripts and the field technician's tools tell a tampered release from
//! a typo in a path by the exit code alone, without parsing messages. The
//! code library functions choose is carried in the error: an [`Error`]
//! anywhere in an `anyhow` chain (as the error itself, its context or a
//! source) decides it, and `main` asks [`code_of`] for it. Everything else
//! is a generic failure; clap's usage errors exit 2 before anything runs.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | failure: anything not below (a build step, a tool, I/O, a bad key password, ...) |
//! | 2 | usage: unknown subcommand or flag, missing or malformed argument |
//! | 3 | verification failed: a signature, size or digest does not match, or a file the signed manifest lists is missing |
//! | 4 | not found: a file or directory named on the command line does not exist |
//! | 5 | refused by a safety check (`keel flash`): nothing was written |
//! | 124 | `keel vm run` stopped the VM at its `--timeout` (as timeout(1) does) |

use std::path::{Path, PathBuf};

/// `keel`'s exit codes (the table in the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    /// 0: success.
    Success = 0,
    /// 1: any failure without a code of its own.
    Failure = 1,
    /// 2: the command line is wrong (clap's own code for usage errors).
    Usage = 2,
    /// 3: a signature, size or digest does not match (tampered, incomplete
    /// or signed by another key).
    Verification = 3,
    /// 4: an input named on the command line does not exist.
    NotFound = 4,
    /// 5: a safety check refused the operation; nothing was changed.
    Refused = 5,
    /// 124: a time limit the command line set ran out (`keel vm run --timeout`).
    Timeout = 124,
}

impl Code {
    /// The process exit status.
    pub const fn value(self) -> u8 {
        self as u8
    }
}

/// The text `keel --help` ends with.
pub const HELP: &str = "\
Exit codes:
  0  success
  1  failure (anything not listed below)
  2  usage error: unknown subcommand or flag, missing or malformed argument
  3  verification failed: a signature, size or digest does not match, or a
     file the signed manifest lists is missing (keel verify, flash, sign)
  4  not found: a file or directory named on the command line does not exist
     (release directory or its manifest.json, key, image definition, device)
  5  refused by a safety check (keel flash): nothing was written
  124  keel vm run stopped the VM at its --timeout";

/// A failure with an exit code of its own.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A signature, size or digest did not match; the message names the
    /// file and the reason.
    #[error("{0}")]
    Verification(String),
    /// An input named on the command line does not exist.
    #[error("{what} {} does not exist", path.display())]
    NotFound {
        /// What the path should have been (`release directory`, ...).
        what: &'static str,
        path: PathBuf,
    },
    /// A safety check refused the operation; the message says why and what to do.
    #[error("{0}")]
    Refused(String),
    /// A time limit given on the command line ran out.
    #[error("{0}")]
    Timeout(String),
}

impl Error {
    /// The exit code this error stands for.
    pub fn code(&self) -> Code {
        match self {
            Error::Verification(_) => Code::Verification,
            Error::NotFound { .. } => Code::NotFound,
            Error::Refused(_) => Code::Refused,
            Error::Timeout(_) => Code::Timeout,
        }
    }
}

/// The exit code for `err`: the first [`Error`] found in its context layers
/// or its chain of sources, else [`Code::Failure`].
pub fn code_of(err: &anyhow::Error) -> Code {
    if let Some(e) = err.downcast_ref::<Error>() {
        return e.code();
    }
    err.chain()
        .find_map(|e| e.downcast_ref::<Error>())
        .map_or(Code::Failure, Error::code)
}

/// Fails with [`Error::NotFound`] when `path` does not exist. When whether it
/// exists cannot be told (no permission), the caller's own read reports it.
pub fn require(path: &Path, what: &'static str) -> Result<(), Error> {
    match path.try_exists() {
        Ok(false) => Err(Error::NotFound {
            what,
            path: path.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;
    use clap::Parser as _;

    #[test]
    fn the_code_is_found_through_context_and_sources() {
        let plain = anyhow::anyhow!("mkosi failed");
        assert_eq!(code_of(&plain), Code::Failure);
        let wrapped = Err::<(), _>(Error::Verification("bad".into()))
            .context("verifying the release")
            .context("flashing")
            .expect_err("error");
        assert_eq!(code_of(&wrapped), Code::Verification);
        let as_context = Err::<(), _>(std::io::Error::other("EBUSY"))
            .context(Error::Refused("busy".into()))
            .expect_err("error");
        assert_eq!(code_of(&as_context), Code::Refused);
        assert_eq!(format!("{as_context}"), "busy");
    }

    #[test]
    fn require_names_what_is_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        require(dir.path(), "release directory").expect("exists");
        let gone = dir.path().join("gone");
        let e = require(&gone, "release directory").expect_err("missing");
        assert_eq!(e.code(), Code::NotFound);
        assert_eq!(
            e.to_string(),
            format!("release directory {} does not exist", gone.display())
        );
    }

    #[test]
    fn usage_errors_exit_with_clap_s_code() {
        let e = crate::cli::Cli::try_parse_from(["keel", "--no-such-flag"]).expect_err("usage");
        assert_eq!(e.exit_code(), i32::from(Code::Usage.value()));
        let e = crate::cli::Cli::try_parse_from(["keel", "verify"]).expect_err("usage");
        assert_eq!(e.exit_code(), i32::from(Code::Usage.value()));
    }
}
