//! The Ceph join step's own state: per disk, the OSD uuid, secret, id and
//! the last finished phase. Written atomically (temp file, fsync, rename)
//! before and after every step, mode 0600 since it holds OSD secrets.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use super::CephError;

/// How far an OSD got. Each phase is recorded after it finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OsdPhase {
    /// uuid and secret chosen; nothing done to the disk or the cluster yet.
    Planned,
    /// The disk was wiped (only when the policy allowed it).
    Wiped,
    /// `ceph osd new` registered the uuid; `id` is known.
    Registered,
    /// `ceph-osd --mkfs` finished.
    Formatted,
    /// The daemon was started.
    Started,
    /// The monitors report it up and in.
    UpIn,
}

/// One OSD this node made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct OsdRecord {
    /// The disk or block file.
    pub device: PathBuf,
    /// The OSD uuid, chosen before anything else.
    pub uuid: String,
    /// The OSD's cephx secret, chosen before `osd new`.
    pub secret: String,
    /// The id the monitors gave it.
    pub id: Option<u32>,
    /// The last finished phase.
    pub phase: OsdPhase,
}

/// All of it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CephState {
    /// The cluster joined (empty before the first join).
    #[serde(default)]
    pub fsid: String,
    /// OSDs by device.
    #[serde(default)]
    pub osds: Vec<OsdRecord>,
    /// Where it is saved (not serialized).
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

impl CephState {
    /// Parses the state file's JSON.
    pub fn parse(s: &str) -> Result<CephState, serde_json::Error> {
        serde_json::from_str(s)
    }

    /// Loads `path`, or an empty state bound to `path` when it does not exist.
    pub fn load(path: &Path) -> Result<CephState, CephError> {
        let mut st = match std::fs::read_to_string(path) {
            Ok(s) => CephState::parse(&s).map_err(|source| CephError::Parse {
                what: format!("parsing {}", path.display()),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => CephState::default(),
            Err(e) => return Err(CephError::io("reading", path)(e)),
        };
        st.path = Some(path.to_path_buf());
        Ok(st)
    }

    /// Saves to the bound path (no-op for an unbound, in-memory state).
    pub fn save(&self) -> Result<(), CephError> {
        if let Some(p) = &self.path {
            let json = serde_json::to_vec_pretty(self).map_err(|source| CephError::Parse {
                what: "serializing ceph state".into(),
                source,
            })?;
            keel_cmd::fs::write_atomic(p, &json, 0o600)
                .map_err(CephError::io("saving ceph state to", p))?;
        }
        Ok(())
    }

    /// The record for `device`, if any.
    pub fn record(&self, device: &Path) -> Option<&OsdRecord> {
        self.osds.iter().find(|o| o.device == device)
    }

    /// Mutable record for `device`.
    pub fn record_mut(&mut self, device: &Path) -> Option<&mut OsdRecord> {
        self.osds.iter_mut().find(|o| o.device == device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_is_private() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("sub/state.json");
        let mut s = CephState::load(&p).expect("empty");
        assert!(s.osds.is_empty());
        s.fsid = "f".into();
        s.osds.push(OsdRecord {
            device: "/dev/vdb".into(),
            uuid: "u".into(),
            secret: "k".into(),
            id: Some(3),
            phase: OsdPhase::Formatted,
        });
        s.save().expect("save");
        let back = CephState::load(&p).expect("load");
        assert_eq!(back.osds, s.osds);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn garbage_and_unknown_fields_are_errors() {
        assert!(CephState::parse("not json").is_err());
        assert!(CephState::parse(r#"{"fsid":"x","bogus":1}"#).is_err());
        assert!(CephState::parse(
            r#"{"osds":[{"device":"/d","uuid":"u","secret":"s","id":null,"phase":"flying"}]}"#
        )
        .is_err());
        assert!(OsdPhase::Planned < OsdPhase::UpIn);
    }
}
