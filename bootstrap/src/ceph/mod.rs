//! Joining the store's Ceph cluster: write the cluster conf and the node's
//! keyring, turn each disk the policy selects into a BlueStore OSD (or make one
//! file-backed OSD where no spare disk exists), start the OSDs and confirm
//! through the monitors that they are up and in.
//!
//! Every step is idempotent. [`CephState`] records, per disk, the OSD uuid and
//! cephx secret BEFORE the OSD is registered (`ceph osd new UUID` returns the
//! same id for the same uuid) and each finished phase AFTER it ran, written
//! atomically; a rerun after a kill at any point finishes the same OSD and
//! never creates a second one. A disk that holds data (blkid finds a
//! signature or partition table) is never touched unless the policy allows
//! wiping and lists the disk explicitly.
//!
//! OSDs are made with `ceph osd new` + `ceph-osd --mkfs` rather than
//! `ceph-volume raw prepare`: ceph-volume only authenticates as
//! `client.bootstrap-osd` from /var/lib/ceph/bootstrap-osd (a shared key, where
//! Keel issues one key per node) and picks a fresh uuid each run (a rerun after
//! a kill would create a second OSD).

pub mod disk;
mod error;
mod osd;
pub mod state;

pub use disk::{select, BlockDev, Decision};
pub use error::CephError;
pub use state::{CephState, OsdPhase, OsdRecord};

use crate::seed::DiskPolicy;
use keel_cmd::CommandRunExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The Ceph part of the join material (same shape as keel-attest's `CephJoin`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CephMaterial {
    /// Cluster fsid.
    pub fsid: String,
    /// Monitor addresses (`mon_host`).
    pub mon_host: String,
    /// A minimal ceph.conf from the cluster (informational; Keel writes its own).
    #[serde(default)]
    pub conf: String,
    /// The node's cephx entity, e.g. `client.keel-node-1`.
    pub key_name: String,
    /// The cephx secret.
    pub key: String,
    /// Caps granted (informational).
    #[serde(default)]
    pub caps: BTreeMap<String, String>,
}

/// How OSD daemons are started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Launch {
    /// `systemctl enable --now ceph-osd@<id>` (images; root must be `/`).
    Systemd,
    /// Spawn `ceph-osd -f` as a detached child, PID in `<run>/ceph-osd.<id>.pid`
    /// (host tests).
    Spawn,
}

/// Where the join step writes, and how it runs OSDs.
#[derive(Clone, Debug)]
pub struct CephPaths {
    /// Root of the target file system (`/` on a node, a temp dir in tests).
    pub root: PathBuf,
    /// How OSD daemons are started.
    pub launch: Launch,
    /// Extra `[osd]` options written into ceph.conf (tests: `public addr`,
    /// `run dir`, `admin socket`, `log file`, cache sizes).
    pub osd_options: Vec<(String, String)>,
    /// How long to wait for each OSD to be up and in.
    pub up_timeout: Duration,
}

impl CephPaths {
    /// A node's paths: root `/`, systemd, 5 minutes to come up.
    pub fn node() -> Self {
        CephPaths {
            root: PathBuf::from("/"),
            launch: Launch::Systemd,
            osd_options: Vec::new(),
            up_timeout: Duration::from_secs(300),
        }
    }
    /// `<root>/etc/ceph/ceph.conf`
    pub fn conf(&self) -> PathBuf {
        self.root.join("etc/ceph/ceph.conf")
    }
    /// `<root>/etc/ceph/ceph.<entity>.keyring`
    pub fn keyring(&self, entity: &str) -> PathBuf {
        self.root.join(format!("etc/ceph/ceph.{entity}.keyring"))
    }
    /// `<root>/var/lib/ceph/osd/ceph-<id>`
    pub fn osd_dir(&self, id: u32) -> PathBuf {
        self.root.join(format!("var/lib/ceph/osd/ceph-{id}"))
    }
    /// The agent's private Ceph files (secrets on their way to the
    /// monitors): `<root>/var/lib/keel/ceph`.
    pub fn file_dir(&self) -> PathBuf {
        self.root.join("var/lib/keel/ceph")
    }
    /// Where file-backed OSDs keep their block file:
    /// `<root>/var/lib/ceph/keel-blocks`. Not in the agent's own state
    /// directory, which is root's alone (0700): the OSD runs as `ceph` and
    /// must reach its block file.
    pub fn block_dir(&self) -> PathBuf {
        self.root.join("var/lib/ceph/keel-blocks")
    }
    /// `<root>/run/ceph` (PID files of spawned OSDs).
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run/ceph")
    }
    /// `<root>/var/lib/keel/ceph-state.json`
    pub fn state_file(&self) -> PathBuf {
        self.root.join("var/lib/keel/ceph-state.json")
    }
}

/// An OSD this node runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct OsdInfo {
    /// OSD id.
    pub id: u32,
    /// OSD uuid.
    pub uuid: String,
    /// The disk or file backing it.
    pub device: PathBuf,
}

/// The ceph.conf Keel writes: fsid, mon_host and the local `[osd]` options.
pub fn render_conf(m: &CephMaterial, osd_options: &[(String, String)]) -> String {
    let mut s = format!(
        "[global]\n\tfsid = {}\n\tmon_host = {}\n",
        m.fsid, m.mon_host
    );
    if !osd_options.is_empty() {
        s.push_str("[osd]\n");
        for (k, v) in osd_options {
            s.push_str(&format!("\t{k} = {v}\n"));
        }
    }
    s
}

/// The keyring file text for the node's entity.
pub fn render_keyring(m: &CephMaterial) -> String {
    format!("[{}]\n\tkey = {}\n", m.key_name, m.key)
}

/// Writes ceph.conf (0644) and the node keyring (0600), atomically.
pub fn write_config(m: &CephMaterial, paths: &CephPaths) -> Result<(), CephError> {
    // ceph-osd creates only the last component of these and aborts otherwise.
    for d in ["run/ceph", "var/log/ceph", "var/lib/ceph/crash"] {
        let d = paths.root.join(d);
        std::fs::create_dir_all(&d).map_err(CephError::io("creating", &d))?;
    }
    let conf = paths.conf();
    keel_cmd::fs::write_atomic(&conf, render_conf(m, &paths.osd_options).as_bytes(), 0o644)
        .map_err(CephError::io("writing", &conf))?;
    let keyring = paths.keyring(&m.key_name);
    keel_cmd::fs::write_atomic(&keyring, render_keyring(m).as_bytes(), 0o600)
        .map_err(CephError::io("writing", &keyring))?;
    Ok(())
}

/// A `ceph` command as the node's entity (what the agent runs against the
/// monitors; tests use it to act like a killed earlier run).
pub fn ceph(m: &CephMaterial, paths: &CephPaths, args: &[&str]) -> Command {
    let mut c = Command::new("ceph");
    c.arg("-c")
        .arg(paths.conf())
        .args(["-n", &m.key_name, "-k"])
        .arg(paths.keyring(&m.key_name))
        .args(["--connect-timeout", "20"])
        .args(args);
    c
}

/// Joins the cluster: config files, one OSD per selected disk (or a
/// file-backed one), each confirmed up and in. Persists `state` to
/// [`CephPaths::state_file`] after every step. Safe to rerun.
pub fn join(
    material: &CephMaterial,
    policy: &DiskPolicy,
    paths: &CephPaths,
    state: &mut CephState,
) -> Result<Vec<OsdInfo>, CephError> {
    if !state.fsid.is_empty() && state.fsid != material.fsid {
        return Err(CephError::OtherCluster {
            joined: state.fsid.clone(),
            asked: material.fsid.clone(),
        });
    }
    // Decide on disks first: a refused disk stops the join before anything is written.
    let targets = targets(policy, paths, state)?;
    if targets.is_empty() {
        return Err(CephError::NoDisks);
    }
    state.fsid = material.fsid.clone();
    write_config(material, paths)?;
    ceph(material, paths, &["osd", "stat"])
        .run()
        .map_err(CephError::monitors(
            "reaching the ceph monitors with the node key",
        ))?;
    let mut out = Vec::new();
    for t in targets {
        let info = osd::ensure(material, paths, state, &t).map_err(|e| CephError::Osd {
            device: t.device.clone(),
            source: Box::new(e),
        })?;
        out.push(info);
    }
    Ok(out)
}

/// A device (or file) that becomes an OSD, and whether it must be wiped first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub device: PathBuf,
    pub wipe: bool,
    pub file_size: Option<u64>,
}

fn targets(
    policy: &DiskPolicy,
    paths: &CephPaths,
    state: &CephState,
) -> Result<Vec<Target>, CephError> {
    let mut out = Vec::new();
    let auto_without_disks = policy.devices.is_empty() && policy.file_backed_gib.is_some();
    if !auto_without_disks {
        let devs = disk::probe()?;
        let known: Vec<PathBuf> = state.osds.iter().map(|o| o.device.clone()).collect();
        let mut refused = Vec::new();
        for d in select(&devs, policy, &known) {
            match d {
                Decision::Use(p) => out.push(Target {
                    device: p,
                    wipe: false,
                    file_size: None,
                }),
                Decision::Wipe(p) => out.push(Target {
                    device: p,
                    wipe: true,
                    file_size: None,
                }),
                Decision::Ours(p) => out.push(Target {
                    device: p,
                    wipe: false,
                    file_size: None,
                }),
                Decision::Refuse(p, why) => refused.push(format!("{}: {why}", p.display())),
                Decision::Skip(p, why) => tracing::info!("not using {}: {why}", p.display()),
            }
        }
        if !refused.is_empty() {
            return Err(CephError::RefusedDisks(refused));
        }
    }
    if out.is_empty() {
        if let Some(gib) = policy.file_backed_gib {
            out.push(Target {
                device: paths.block_dir().join("osd-0.block"),
                wipe: false,
                file_size: Some(gib.max(1) << 30),
            });
        }
    }
    Ok(out)
}

/// Reads the state file, or an empty state when there is none.
pub fn load_state(paths: &CephPaths) -> Result<CephState, CephError> {
    CephState::load(&paths.state_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_and_keyring_render() {
        let m = CephMaterial {
            fsid: "fs".into(),
            mon_host: "[v2:1.2.3.4:3300]".into(),
            conf: String::new(),
            key_name: "client.keel-n".into(),
            key: "AQk=".into(),
            caps: BTreeMap::new(),
        };
        assert_eq!(
            render_conf(&m, &[]),
            "[global]\n\tfsid = fs\n\tmon_host = [v2:1.2.3.4:3300]\n"
        );
        assert!(render_conf(&m, &[("log file".into(), "/x".into())])
            .ends_with("[osd]\n\tlog file = /x\n"));
        assert_eq!(render_keyring(&m), "[client.keel-n]\n\tkey = AQk=\n");
        // Same JSON shape as keel-attest's CephJoin.
        let j = r#"{"fsid":"a","mon-host":"b","conf":"c","key-name":"d","key":"e","caps":{"mon":"profile bootstrap-osd"}}"#;
        let back: CephMaterial = serde_json::from_str(j).expect("parse");
        assert_eq!(back.caps["mon"], "profile bootstrap-osd");
    }
}
