//! The one error type of this crate: what can go wrong running a program.

use std::path::PathBuf;
use std::process::ExitStatus;

/// Errors from running an external program.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error("could not start `{program}`: {source} (is it installed? ./setup.sh installs Keel's host tools)")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{cmdline}` failed ({status}):\n{tail}")]
    Failed {
        cmdline: String,
        status: ExitStatus,
        tail: String,
    },
    #[error("reading output of `{cmdline}`: {source}")]
    Io {
        cmdline: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{cmdline}` printed output that is not valid UTF-8")]
    Utf8 { cmdline: String },
    #[error("parsing JSON output of `{cmdline}`: {source}")]
    Json {
        cmdline: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("opening log file {} for `{program}`: {source}", path.display())]
    Log {
        program: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {name}: {source}")]
    Child {
        /// What was being done ("checking on", "reaping").
        what: &'static str,
        /// The child's name in logs.
        name: String,
        #[source]
        source: std::io::Error,
    },
}

impl CmdError {
    /// The exit status, when the program ran and failed.
    pub fn status(&self) -> Option<ExitStatus> {
        match self {
            CmdError::Failed { status, .. } => Some(*status),
            _ => None,
        }
    }
}
