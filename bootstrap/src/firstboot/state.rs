//! The first-boot state, persisted atomically to `<state-dir>/state.json`
//! after every transition so that a power cut at any point resumes where it
//! stopped.
//!
//! ```text
//! Start ──enroll──► Enrolled ──join Ceph──► CephJoined ──ACME──► Certified
//!                                                                   │ first bundle sync
//!                                    Done ◄──────────────── BundleSynced
//! ```
//!
//! Each variant counts the failed attempts at the step that leaves it; the
//! count is reset by the transition. `Done` also writes `<state-dir>/done`,
//! which keel-bootstrap.service's `ConditionPathExists=!` checks.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use keel_cmd::fs::write_atomic;

/// Where first boot stands. Ordered: a later variant means more done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "kebab-case", deny_unknown_fields)]
pub enum State {
    /// Nothing done yet (the seed may have been applied: see [`Persisted::seed_applied`]).
    Start {
        /// Failed enrollment attempts.
        attempts: u32,
    },
    /// keel-enroll admitted the node; join material is in the state dir.
    Enrolled {
        /// Failed Ceph join attempts.
        attempts: u32,
    },
    /// The node's OSDs are up and in.
    CephJoined {
        /// Failed certificate attempts.
        attempts: u32,
    },
    /// The node holds a certificate from the ACME CA.
    Certified {
        /// Failed bundle sync attempts.
        attempts: u32,
    },
    /// The first signed GitOps bundle is applied.
    BundleSynced {
        /// Failed attempts at finishing.
        attempts: u32,
    },
    /// First boot is complete; later work is keel-renew/keel-sync timers.
    Done,
}

/// The steps of [`State`] by name, in order (for failpoints and `status`).
pub const STAGES: [&str; 6] = [
    "start",
    "enrolled",
    "ceph-joined",
    "certified",
    "bundle-synced",
    "done",
];

impl State {
    /// Index into [`STAGES`].
    pub fn index(self) -> usize {
        match self {
            State::Start { .. } => 0,
            State::Enrolled { .. } => 1,
            State::CephJoined { .. } => 2,
            State::Certified { .. } => 3,
            State::BundleSynced { .. } => 4,
            State::Done => 5,
        }
    }

    /// The stage name (`ceph-joined`).
    pub fn name(self) -> &'static str {
        STAGES[self.index()]
    }

    /// The state after this one succeeds (attempts reset).
    pub fn next(self) -> State {
        match self {
            State::Start { .. } => State::Enrolled { attempts: 0 },
            State::Enrolled { .. } => State::CephJoined { attempts: 0 },
            State::CephJoined { .. } => State::Certified { attempts: 0 },
            State::Certified { .. } => State::BundleSynced { attempts: 0 },
            State::BundleSynced { .. } | State::Done => State::Done,
        }
    }

    /// Failed attempts at leaving this state.
    pub fn attempts(self) -> u32 {
        match self {
            State::Start { attempts }
            | State::Enrolled { attempts }
            | State::CephJoined { attempts }
            | State::Certified { attempts }
            | State::BundleSynced { attempts } => attempts,
            State::Done => 0,
        }
    }

    /// The same state with one more failed attempt.
    pub fn failed(self) -> State {
        let a = self.attempts().saturating_add(1);
        match self {
            State::Start { .. } => State::Start { attempts: a },
            State::Enrolled { .. } => State::Enrolled { attempts: a },
            State::CephJoined { .. } => State::CephJoined { attempts: a },
            State::Certified { .. } => State::Certified { attempts: a },
            State::BundleSynced { .. } => State::BundleSynced { attempts: a },
            State::Done => State::Done,
        }
    }

    /// What the state means, for `status` and the console.
    pub fn describe(self) -> &'static str {
        match self {
            State::Start { .. } => "not enrolled yet",
            State::Enrolled { .. } => "enrolled; joining the Ceph cluster",
            State::CephJoined { .. } => "Ceph joined; obtaining certificates",
            State::Certified { .. } => "certified; syncing the first GitOps bundle",
            State::BundleSynced { .. } => "bundle applied; finishing",
            State::Done => "first boot complete",
        }
    }
}

/// The persisted file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Persisted {
    /// File format version (1).
    pub version: u32,
    /// Where first boot stands.
    pub state: State,
    /// The seed's instance-id whose standard keys were applied.
    #[serde(default)]
    pub seed_applied: Option<String>,
    /// The last error, shown by `status`.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Unix time of the last write.
    pub updated: u64,
}

impl Default for Persisted {
    fn default() -> Self {
        Persisted {
            version: 1,
            state: State::Start { attempts: 0 },
            seed_applied: None,
            last_error: None,
            updated: 0,
        }
    }
}

/// Errors loading or saving state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file does not parse (a reset is the way out: see docs/first-boot.md).
    #[error("{path}: corrupt state file: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// The state directory (/var/lib/keel).
#[derive(Clone, Debug)]
pub struct StateDir(pub PathBuf);

impl StateDir {
    /// state.json.
    pub fn state_file(&self) -> PathBuf {
        self.0.join("state.json")
    }

    /// The marker the systemd unit checks.
    pub fn done_marker(&self) -> PathBuf {
        self.0.join("done")
    }

    /// Loads state.json, or the initial state if there is none.
    pub fn load(&self) -> Result<Persisted, StateError> {
        let path = self.state_file();
        match std::fs::read(&path) {
            Ok(b) => {
                serde_json::from_slice(&b).map_err(|source| StateError::Corrupt { path, source })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Persisted::default()),
            Err(source) => Err(StateError::Io { path, source }),
        }
    }

    /// Saves atomically (0600), and the done marker when done.
    pub fn save(&self, p: &Persisted) -> Result<(), StateError> {
        let mut p = p.clone();
        p.updated = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let path = self.state_file();
        let io = |source| StateError::Io {
            path: path.clone(),
            source,
        };
        let json = serde_json::to_vec_pretty(&p).map_err(|e| io(std::io::Error::other(e)))?;
        write_atomic(&path, &json, 0o600).map_err(io)?;
        if p.state == State::Done {
            write_atomic(&self.done_marker(), b"", 0o644).map_err(io)?;
        }
        Ok(())
    }

    /// A file in the state directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_and_persist() {
        let d = tempfile::tempdir().expect("tempdir");
        let sd = StateDir(d.path().join("keel"));
        let mut p = sd.load().expect("fresh");
        assert_eq!(p.state, State::Start { attempts: 0 });
        let mut names = vec![p.state.name()];
        while p.state != State::Done {
            p.state = p.state.failed().failed();
            assert_eq!(p.state.attempts(), 2);
            p.state = p.state.next();
            sd.save(&p).expect("save");
            assert_eq!(sd.load().expect("load").state, p.state);
            names.push(p.state.name());
        }
        assert_eq!(names, STAGES);
        assert!(sd.done_marker().exists());
        let json = std::fs::read_to_string(sd.state_file()).expect("json");
        assert!(json.contains("\"stage\": \"done\""), "{json}");
    }

    #[test]
    fn corrupt_or_unknown_state_is_an_error() {
        let d = tempfile::tempdir().expect("tempdir");
        let sd = StateDir(d.path().to_path_buf());
        for bad in [
            "{",
            r#"{"version":1,"state":{"stage":"flying"},"updated":0}"#,
        ] {
            std::fs::write(sd.state_file(), bad).expect("write");
            assert!(
                matches!(sd.load(), Err(StateError::Corrupt { .. })),
                "{bad}"
            );
        }
    }
}
