//! Joining Ceph against the real test cluster (keel-testbed) and real loop
//! devices: file-backed and block-device OSDs, reruns after a kill, refusals.
//! Needs root and the Ceph tools; says SKIP otherwise.

use keel_bootstrap::ceph::{
    ceph, disk, join, load_state, write_config, CephError, CephMaterial, CephPaths, CephState,
    Launch, OsdPhase, OsdRecord,
};
use keel_bootstrap::seed::DiskPolicy;
use keel_cmd::CommandRunExt;
use keel_testbed::CephCluster;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A node key made like keel-enroll's issuer does (same caps).
fn material(c: &CephCluster, node: &str) -> CephMaterial {
    let entity = format!("client.keel-{node}");
    let v = c
        .ceph_json(&[
            "auth",
            "get-or-create",
            &entity,
            "mon",
            "profile bootstrap-osd",
        ])
        .expect("node key");
    CephMaterial {
        fsid: c.fsid().to_string(),
        mon_host: c.mon_host().to_string(),
        conf: c.minimal_conf(),
        key_name: entity,
        key: v[0]["key"].as_str().expect("key").to_string(),
        caps: BTreeMap::new(),
    }
}

fn test_paths(root: &Path) -> CephPaths {
    let r = root.display();
    let o = |k: &str, v: String| (k.to_string(), v);
    CephPaths {
        root: root.to_path_buf(),
        launch: Launch::Spawn,
        osd_options: vec![
            o("public addr", "127.0.0.1".into()),
            o("ms bind ipv6", "false".into()),
            o("run dir", format!("{r}/run/ceph")),
            o("admin socket", format!("{r}/run/ceph/$cluster-$name.asok")),
            o("log file", format!("{r}/var/log/ceph/$cluster-$name.log")),
            o("crash dir", format!("{r}/var/lib/ceph/crash")),
            o("osd mon report interval", "1".into()),
            o("bluestore cache autotune", "false".into()),
            o("bluestore cache size", "67108864".into()),
            o("osd memory target", "939524096".into()),
        ],
        up_timeout: Duration::from_secs(120),
    }
}

/// Kills the OSDs a test spawned and purges them so the shared cluster stays healthy.
struct Cleanup<'a> {
    c: &'a CephCluster,
    paths: CephPaths,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let Ok(st) = load_state(&self.paths) else {
            return;
        };
        for o in &st.osds {
            let Some(id) = o.id else { continue };
            if let Ok(pid) =
                std::fs::read_to_string(self.paths.run_dir().join(format!("ceph-osd.{id}.pid")))
            {
                let _ = Command::new("kill").arg(pid.trim()).run();
            }
            std::thread::sleep(Duration::from_secs(1));
            let _ = self.c.ceph(&["osd", "down", &id.to_string()]);
            let _ = self
                .c
                .ceph(&["osd", "purge", &id.to_string(), "--yes-i-really-mean-it"]);
        }
    }
}

/// What every OSD-adding test needs. Fields drop in order: the OSDs the test
/// spawned are stopped and purged, then the cluster lock is released (these
/// tests compare the cluster's OSD list, so they run one at a time), then the
/// scratch root goes.
struct OsdTest {
    cleanup: Cleanup<'static>,
    _serial: std::sync::MutexGuard<'static, ()>,
    root: tempfile::TempDir,
    m: CephMaterial,
}

impl OsdTest {
    /// `None` (with a SKIP line) without root, `programs` or the test cluster.
    fn start(programs: &[&str], node: &str) -> Option<OsdTest> {
        if keel_testbed::skip_unless_root_and(programs) {
            return None;
        }
        let c = keel_testbed::or_skip(CephCluster::shared())?;
        let serial = c.lock();
        let root = tempfile::tempdir().expect("root");
        let paths = test_paths(root.path());
        let m = material(c, node);
        Some(OsdTest {
            cleanup: Cleanup { c, paths },
            _serial: serial,
            root,
            m,
        })
    }
}

fn osd_ids(c: &CephCluster) -> Vec<u64> {
    let v = c.ceph_json(&["osd", "ls"]).expect("osd ls");
    v.as_array()
        .expect("array")
        .iter()
        .filter_map(|x| x.as_u64())
        .collect()
}

#[test]
fn file_backed_osd_joins_and_reruns_create_no_second_osd() {
    let Some(fx) = OsdTest::start(&["ceph", "ceph-osd", "ceph-authtool"], "join-file") else {
        return;
    };
    let (c, paths, m) = (fx.cleanup.c, &fx.cleanup.paths, &fx.m);
    let policy = DiskPolicy {
        devices: vec![],
        allow_wipe: false,
        file_backed_gib: Some(2),
    };
    let mut st = load_state(paths).expect("state");
    let t = Instant::now();
    let osds = join(m, &policy, paths, &mut st).expect("join");
    eprintln!("file-backed OSD joined (up+in) in {:?}", t.elapsed());
    assert_eq!(osds.len(), 1);
    let id = osds[0].id;
    let ids = osd_ids(c);
    assert!(ids.contains(&u64::from(id)));

    // Keyring is private; conf names the cluster.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(paths.keyring(&m.key_name))
        .expect("keyring")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(std::fs::read_to_string(paths.conf())
        .expect("conf")
        .contains(c.fsid()));

    // Rerun with the saved state: same OSD, nothing new.
    let mut st2 = load_state(paths).expect("reload");
    assert_eq!(st2.osds[0].phase, OsdPhase::UpIn);
    let again = join(m, &policy, paths, &mut st2).expect("rerun");
    assert_eq!(again, osds);
    assert_eq!(osd_ids(c), ids, "a rerun creates no OSD");

    // Rerunning with the mkfs already done (kill after mkfs, before the state
    // write) does not format again.
    let mut st3 = load_state(paths).expect("reload");
    st3.osds[0].phase = OsdPhase::Registered;
    st3.save().expect("save");
    let mut st3 = load_state(paths).expect("reload");
    assert_eq!(join(m, &policy, paths, &mut st3).expect("rerun")[0].id, id);
    assert_eq!(osd_ids(c), ids);

    // Joining another cluster with this state is refused.
    let mut other = m.clone();
    other.fsid = "00000000-0000-4000-8000-000000000000".into();
    let e = join(&other, &policy, paths, &mut st3).expect_err("other cluster");
    assert!(
        format!("{e:#}").contains("refusing to mix clusters"),
        "{e:#}"
    );
}

/// A loop device over a sparse file; detached on drop.
struct Loop {
    dev: PathBuf,
    _dir: tempfile::TempDir,
}

impl Loop {
    fn new(size: u64, mkfs: bool) -> Option<Loop> {
        let dir = tempfile::tempdir().ok()?;
        let f = dir.path().join("disk.img");
        std::fs::File::create(&f).ok()?.set_len(size).ok()?;
        if mkfs {
            Command::new("mkfs.ext4")
                .args(["-q", "-F"])
                .arg(&f)
                .run()
                .ok()?;
        }
        let dev = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&f)
            .run_get_string();
        match dev {
            Ok(d) => Some(Loop {
                dev: PathBuf::from(d.trim()),
                _dir: dir,
            }),
            Err(e) => {
                keel_testbed::skip(format!("no loop device: {e}"));
                None
            }
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).run();
    }
}

#[test]
fn kill_between_osd_new_and_state_write_reuses_the_osd() {
    let Some(fx) = OsdTest::start(&["ceph", "ceph-osd", "ceph-authtool"], "join-kill") else {
        return;
    };
    let (c, paths, m) = (fx.cleanup.c, &fx.cleanup.paths, &fx.m);
    let policy = DiskPolicy {
        devices: vec![],
        allow_wipe: false,
        file_backed_gib: Some(2),
    };
    // What a killed first run leaves: the plan saved, `osd new` done by the
    // monitors, the id never written back.
    let device = paths.block_dir().join("osd-0.block");
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid").expect("uuid");
    let secret = Command::new("ceph-authtool")
        .arg("--gen-print-key")
        .run_get_string()
        .expect("key");
    let mut st = load_state(paths).expect("state");
    st.osds.push(OsdRecord {
        device,
        uuid: uuid.trim().into(),
        secret: secret.trim().into(),
        id: None,
        phase: OsdPhase::Planned,
    });
    st.save().expect("save");
    write_config(m, paths).expect("conf");
    let sj = fx.root.path().join("s.json");
    std::fs::write(&sj, format!("{{\"cephx_secret\": \"{}\"}}", secret.trim())).expect("json");
    let first_id: u32 = ceph(m, paths, &["osd", "new", uuid.trim(), "-i"])
        .arg(&sj)
        .run_get_string()
        .expect("osd new")
        .trim()
        .parse()
        .expect("id");
    let before = osd_ids(c);
    let mut st = load_state(paths).expect("reload");
    let osds = join(m, &policy, paths, &mut st).expect("rerun after kill");
    assert_eq!(osds[0].id, first_id, "same uuid, same OSD");
    assert_eq!(osd_ids(c), before, "no second OSD");
}

#[test]
fn disk_with_filesystem_is_refused_without_wipe_permission() {
    if keel_testbed::skip_unless_root_and(&["losetup", "mkfs.ext4", "blkid", "lsblk"]) {
        return;
    }
    let Some(lp) = Loop::new(64 << 20, true) else {
        return;
    };
    let root = tempfile::tempdir().expect("root");
    let paths = test_paths(root.path());
    // The monitors are never contacted: the refusal comes first.
    let m = CephMaterial {
        fsid: "f".into(),
        mon_host: "[v2:127.0.0.1:1]".into(),
        conf: String::new(),
        key_name: "client.keel-x".into(),
        key: "AQ==".into(),
        caps: BTreeMap::new(),
    };
    let policy = DiskPolicy {
        devices: vec![lp.dev.display().to_string()],
        allow_wipe: false,
        file_backed_gib: None,
    };
    let mut st = CephState::default();
    let e = join(&m, &policy, &paths, &mut st).expect_err("must refuse");
    let msg = format!("{e:#}");
    assert!(
        msg.contains("holds data (ext4)") && msg.contains("allow-wipe"),
        "{msg}"
    );
    assert_eq!(
        disk::signature(&lp.dev).as_deref(),
        Some("ext4"),
        "disk untouched"
    );
    assert!(
        st.osds.is_empty() && !paths.conf().exists(),
        "nothing written"
    );
}

#[test]
fn blank_loop_device_becomes_an_osd() {
    // The loop device first, so that it is detached after the fixture has
    // stopped the OSD running on it.
    let Some(lp) = Loop::new(2 << 30, false) else {
        return;
    };
    let Some(fx) = OsdTest::start(
        &["ceph", "ceph-osd", "losetup", "blkid", "lsblk"],
        "join-loop",
    ) else {
        return;
    };
    let (paths, m) = (&fx.cleanup.paths, &fx.m);
    let policy = DiskPolicy {
        devices: vec![lp.dev.display().to_string()],
        allow_wipe: false,
        file_backed_gib: None,
    };
    let mut st = load_state(paths).expect("state");
    let t = Instant::now();
    let osds = join(m, &policy, paths, &mut st).expect("join on a block device");
    eprintln!("block-device OSD joined (up+in) in {:?}", t.elapsed());
    assert_eq!(osds.len(), 1);
    assert_eq!(osds[0].device, lp.dev);
    // Now the disk carries our BlueStore label: a rerun finishes it, no refusal.
    assert!(disk::signature(&lp.dev).is_some());
    let mut st2 = load_state(paths).expect("reload");
    assert_eq!(join(m, &policy, paths, &mut st2).expect("rerun"), osds);
}

/// Joins with a node key `key_name` (never issued) against monitors at
/// `mon_host`: the error, and whether anything was planned.
fn join_with_unknown_key(fsid: &str, mon_host: &str, key_name: &str) -> (CephError, bool) {
    let root = tempfile::tempdir().expect("root");
    let m = CephMaterial {
        fsid: fsid.into(),
        mon_host: mon_host.into(),
        conf: String::new(),
        key_name: key_name.into(),
        key: "AQBz0Z1lAAAAABAAHlKsZ1q1p2m2T3e3XGqAaQ==".into(),
        caps: BTreeMap::new(),
    };
    let policy = DiskPolicy {
        devices: vec![],
        allow_wipe: false,
        file_backed_gib: Some(1),
    };
    let mut st = CephState::default();
    let e = join(&m, &policy, &test_paths(root.path()), &mut st).expect_err("must fail");
    (e, st.osds.is_empty())
}

/// A node whose monitors do not answer waits for them: the error is transient.
#[test]
fn unreachable_monitors_are_transient() {
    if keel_testbed::skip_unless(&["ceph"]) {
        return;
    }
    let port = keel_testbed::free_port().expect("port");
    let (e, nothing_planned) = join_with_unknown_key(
        "00000000-0000-4000-8000-000000000001",
        &format!("127.0.0.1:{port}"),
        "client.keel-unreachable",
    );
    assert!(
        nothing_planned,
        "nothing planned before the monitors answer"
    );
    assert!(
        matches!(e, CephError::Monitors { .. }) && e.is_transient(),
        "{:#}",
        anyhow::Error::new(e)
    );
}

/// Monitors that answer and refuse the node's key: waiting would not help.
#[test]
fn refused_key_is_not_transient() {
    if keel_testbed::skip_unless_root_and(&["ceph"]) {
        return;
    }
    let Some(c) = keel_testbed::or_skip(CephCluster::shared()) else {
        return;
    };
    let (e, _) = join_with_unknown_key(c.fsid(), c.mon_host(), "client.keel-never-issued");
    assert!(
        matches!(e, CephError::Monitors { .. }) && !e.is_transient(),
        "{:#}",
        anyhow::Error::new(e)
    );
}
