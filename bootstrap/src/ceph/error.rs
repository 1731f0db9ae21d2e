//! What can go wrong joining Ceph, and which of it is worth waiting for
//! ([`CephError::is_transient`]): the monitors being out of reach (the
//! store's network is down, the cluster is still starting) passes; a refused
//! disk, a failed `ceph-osd --mkfs` or a cephx key the monitors refuse do not.
//!
//! Messages do not repeat their source: print the chain (`{:#}` through
//! anyhow) to see the tool's own error text.

use std::path::{Path, PathBuf};
use std::time::Duration;

use keel_cmd::CmdError;

/// An error from joining the Ceph cluster.
#[derive(Debug, thiserror::Error)]
pub enum CephError {
    /// A `ceph` CLI call to the monitors failed.
    #[error("{what}")]
    Monitors {
        /// What the call was for.
        what: String,
        /// The CLI's failure (its exit code says why).
        #[source]
        source: CmdError,
    },
    /// A local tool failed (lsblk, wipefs, ceph-authtool, ceph-osd --mkfs,
    /// chown, systemctl).
    #[error("{what}")]
    Tool {
        /// What the tool was doing.
        what: String,
        /// Its failure.
        #[source]
        source: CmdError,
    },
    /// A file could not be read or written.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done ("writing").
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file or a tool's JSON output does not parse.
    #[error("{what}")]
    Parse {
        /// What was parsed.
        what: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// Asked to join another cluster than the one joined before.
    #[error(
        "this node already joined cluster {joined} and is now asked to join {asked}; refusing to \
         mix clusters"
    )]
    OtherCluster {
        /// The fsid in the node's Ceph state.
        joined: String,
        /// The fsid in the join material.
        asked: String,
    },
    /// The disk policy selects nothing to make an OSD of.
    #[error("the disk policy selects no disk and no file-backed OSD: nothing to join with")]
    NoDisks,
    /// Disks the policy selected are not safe to use.
    #[error("refusing disks the policy selected:\n  {}", .0.join("\n  "))]
    RefusedDisks(Vec<String>),
    /// The monitors' or the disk's answer contradicts the node's records.
    #[error("{0}")]
    Inconsistent(String),
    /// A spawned OSD daemon exited.
    #[error("ceph-osd {id} exited:\n{log_tail}")]
    OsdExited {
        /// The OSD id.
        id: u32,
        /// The end of its output.
        log_tail: String,
    },
    /// An OSD did not come up and in within the wait.
    #[error("osd.{id} not up and in after {after:?}")]
    NotUpIn {
        /// The OSD id.
        id: u32,
        /// How long it was given.
        after: Duration,
    },
    /// Making the OSD on `device` failed.
    #[error("making an OSD on {}", device.display())]
    Osd {
        /// The disk or block file.
        device: PathBuf,
        /// What failed.
        #[source]
        source: Box<CephError>,
    },
}

/// Exit codes of the `ceph` CLI that mean the monitors did not answer:
/// 1 when connecting failed or timed out (`--connect-timeout`; it prints
/// "timed out" or the RADOS error), EAGAIN (11) when a monitor asked to
/// try again, ETIMEDOUT (110) when a command timed out.
const MONITORS_UNREACHABLE: [i32; 3] = [1, 11, 110];

impl CephError {
    /// True when waiting and trying again can help: the monitors could not
    /// be reached or did not answer in time. Everything else needs a change
    /// (the disk policy, the cluster's key, the node) before a retry.
    pub fn is_transient(&self) -> bool {
        match self {
            CephError::Monitors { source, .. } => source
                .status()
                .and_then(|s| s.code())
                .is_some_and(|c| MONITORS_UNREACHABLE.contains(&c)),
            CephError::Osd { source, .. } => source.is_transient(),
            _ => false,
        }
    }

    /// `map_err` for a `ceph` CLI call to the monitors.
    pub(crate) fn monitors(what: impl Into<String>) -> impl FnOnce(CmdError) -> CephError {
        let what = what.into();
        move |source| CephError::Monitors { what, source }
    }

    /// `map_err` for a local tool.
    pub(crate) fn tool(what: impl Into<String>) -> impl FnOnce(CmdError) -> CephError {
        let what = what.into();
        move |source| CephError::Tool { what, source }
    }

    /// `map_err` for file I/O on `path`.
    pub(crate) fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CephError {
        let path = path.to_path_buf();
        move |source| CephError::Io { what, path, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    fn failed(code: i32) -> CmdError {
        CmdError::Failed {
            cmdline: "ceph --connect-timeout 20 osd stat".into(),
            status: ExitStatus::from_raw(code << 8),
            tail: "connection refused".into(),
        }
    }

    fn monitors(code: i32) -> CephError {
        CephError::monitors("reaching the monitors")(failed(code))
    }

    #[test]
    fn only_unanswered_monitors_are_transient() {
        // Connect failure or timeout (1), EAGAIN, ETIMEDOUT: wait and retry.
        for code in [1, 11, 110] {
            assert!(monitors(code).is_transient(), "exit {code}");
        }
        // EACCES (a key the monitors refuse), EINVAL, ENOENT: final, even
        // though the command line says "timeout" and the text "connection".
        for code in [13, 22, 2] {
            assert!(!monitors(code).is_transient(), "exit {code}");
        }
        // The CLI missing or killed by a signal is no network trouble.
        let missing = CephError::monitors("x")(CmdError::Spawn {
            program: "ceph".into(),
            source: std::io::ErrorKind::NotFound.into(),
        });
        assert!(!missing.is_transient());
        let killed = CephError::monitors("x")(CmdError::Failed {
            cmdline: "ceph".into(),
            status: ExitStatus::from_raw(9),
            tail: String::new(),
        });
        assert!(!killed.is_transient());
    }

    #[test]
    fn local_failures_are_final_and_osd_context_keeps_the_cause() {
        let finals = [
            CephError::tool("ceph-osd --mkfs for osd.3")(failed(1)),
            CephError::io("writing", Path::new("/etc/ceph/ceph.conf"))(
                std::io::ErrorKind::TimedOut.into(),
            ),
            CephError::NoDisks,
            CephError::RefusedDisks(vec!["/dev/vdb: holds data".into()]),
            CephError::OtherCluster {
                joined: "a".into(),
                asked: "b".into(),
            },
            CephError::NotUpIn {
                id: 3,
                after: Duration::from_secs(300),
            },
            CephError::OsdExited {
                id: 3,
                log_tail: "connection timed out".into(),
            },
        ];
        for e in finals {
            assert!(!e.is_transient(), "{e}");
        }
        let wrap = |e| CephError::Osd {
            device: "/dev/vdb".into(),
            source: Box::new(e),
        };
        assert!(wrap(monitors(1)).is_transient());
        assert!(!wrap(monitors(13)).is_transient());
        let chain = format!("{:#}", anyhow::Error::new(wrap(monitors(1))));
        assert!(
            chain.starts_with("making an OSD on /dev/vdb: reaching the monitors: `ceph"),
            "{chain}"
        );
    }
}
