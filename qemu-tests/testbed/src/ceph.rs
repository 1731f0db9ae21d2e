//! A real Ceph cluster for tests: 1 monitor, 1 manager, 1 file-backed
//! BlueStore OSD, cephx on, every path in a temp dir. Daemons bind and
//! advertise 127.0.0.1, or [`CephOptions::public_addr`]: a
//! [`crate::TestNet`] bridge address, where a guest's OSD joins the cluster
//! (start the cluster and run its `ceph` commands from inside that namespace).
//!
//! Daemons run in the foreground (`-f`) as children tracked by PID. Start-up
//! takes about 10-15 s, so a test binary shares one cluster through
//! [`CephCluster::shared`]; tests that change cluster-wide state hold
//! [`CephCluster::lock`]. A watchdog shell kills the shared cluster's daemons
//! and removes its directory when the test process exits (statics are never
//! dropped). Settings that make it fast come from
//! shared/notes/ceph-test-cluster.md.

use crate::{Daemon, Error, Result};
use keel_cmd::CommandRunExt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Manager modules Pacific always enables; the mgr only gets these on its path.
const ALWAYS_ON_MODULES: &[&str] = &[
    "balancer",
    "crash",
    "devicehealth",
    "orchestrator",
    "pg_autoscaler",
    "progress",
    "rbd_support",
    "status",
    "telemetry",
    "volumes",
];

/// How to start a [`CephCluster`].
#[derive(Debug, Clone)]
pub struct CephOptions {
    /// The address every daemon binds and advertises (`public addr`, the
    /// monmap, `mon_host`). IPv4: the cluster runs with `ms bind ipv6 = false`.
    pub public_addr: Ipv4Addr,
}

impl Default for CephOptions {
    fn default() -> Self {
        CephOptions {
            public_addr: Ipv4Addr::LOCALHOST,
        }
    }
}

/// A running cluster; its daemons are stopped and its directory removed on drop.
#[derive(Debug)]
pub struct CephCluster {
    fsid: String,
    public_addr: Ipv4Addr,
    mon_host: String,
    daemons: Mutex<Vec<Daemon>>,
    lock: Mutex<()>,
    startup: Duration,
    dir: tempfile::TempDir,
}

static SHARED: OnceLock<std::result::Result<CephCluster, String>> = OnceLock::new();

impl CephCluster {
    /// The cluster shared by every test in this test binary (started on first
    /// use). A cluster that cannot run here (not root, ceph missing) is an
    /// `Err` with `is_skip()`; a real start failure is reported to every caller.
    pub fn shared() -> Result<&'static CephCluster> {
        preflight()?;
        let r = SHARED.get_or_init(|| {
            CephCluster::start()
                .and_then(|c| {
                    c.watchdog()?;
                    Ok(c)
                })
                .map_err(|e| e.to_string())
        });
        r.as_ref()
            .map_err(|e| Error::start("ceph cluster", e.clone()))
    }

    /// Starts a new cluster owned by the caller, on 127.0.0.1.
    pub fn start() -> Result<CephCluster> {
        CephCluster::start_with(CephOptions::default())
    }

    /// Starts a new cluster owned by the caller with `opts`.
    pub fn start_with(opts: CephOptions) -> Result<CephCluster> {
        preflight()?;
        let addr = opts.public_addr;
        let t0 = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("keel-ceph-")
            .tempdir()
            .map_err(Error::io("creating ceph temp dir"))?;
        let d = dir.path().to_path_buf();
        for sub in [
            "run",
            "log",
            "crash",
            "mon",
            "mgr",
            "osd",
            "mgr-modules",
            "pids",
        ] {
            std::fs::create_dir_all(d.join(sub)).map_err(Error::io("creating ceph dirs"))?;
        }
        for m in ALWAYS_ON_MODULES
            .iter()
            .copied()
            .chain(["mgr_module.py", "mgr_util.py"])
        {
            let src = Path::new("/usr/share/ceph/mgr").join(m);
            if src.exists() {
                std::os::unix::fs::symlink(&src, d.join("mgr-modules").join(m))
                    .map_err(Error::io("linking mgr module"))?;
            }
        }
        let fsid = uuid();
        // Binding here first also fails fast when `addr` is not in this
        // thread's network namespace (before any `ceph` command tries it).
        let (v2, v1) = (
            crate::free_port_on(addr.into())?,
            crate::free_port_on(addr.into())?,
        );
        let mon_host = format!("[v2:{addr}:{v2},v1:{addr}:{v1}]");
        let conf = d.join("ceph.conf");
        crate::swtpm::write(&conf, &full_conf(&fsid, &mon_host, addr, &d))?;
        let keyring = d.join("keyring");
        let monkr = d.join("mon.keyring");
        authtool(
            &["--create-keyring"],
            &monkr,
            &["--gen-key", "-n", "mon.", "--cap", "mon", "allow *"],
        )?;
        authtool(
            &["--create-keyring"],
            &keyring,
            &[
                "--gen-key",
                "-n",
                "client.admin",
                "--cap",
                "mon",
                "allow *",
                "--cap",
                "osd",
                "allow *",
                "--cap",
                "mds",
                "allow *",
                "--cap",
                "mgr",
                "allow *",
            ],
        )?;
        Command::new("ceph-authtool")
            .arg(&monkr)
            .arg("--import-keyring")
            .arg(&keyring)
            .run()?;
        let monmap = d.join("monmap");
        Command::new("monmaptool")
            .args(["--create", "--addv", "a", &mon_host, "--fsid", &fsid])
            .arg(&monmap)
            .run()?;
        Command::new("ceph-mon")
            .arg("-c")
            .arg(&conf)
            .args(["--mkfs", "-i", "a", "--monmap"])
            .arg(&monmap)
            .arg("--keyring")
            .arg(&monkr)
            .run()?;
        // ceph-mon --mkfs exits 0 even when it failed: check its store exists.
        if !d.join("mon/ceph-a/store.db").exists() {
            return Err(Error::start("ceph-mon", "mkfs made no store.db"));
        }
        let c = CephCluster {
            fsid,
            public_addr: addr,
            mon_host,
            daemons: Mutex::new(Vec::new()),
            lock: Mutex::new(()),
            startup: Duration::ZERO,
            dir,
        };
        c.spawn("ceph-mon", &["-i", "a"])?;
        c.wait(Duration::from_secs(30), "monitor quorum", || {
            c.ceph(&["mon", "stat"]).is_ok()
        })?;
        // Manager.
        let mgr_dir = d.join("mgr/ceph-x");
        std::fs::create_dir_all(&mgr_dir).map_err(Error::io("creating mgr dir"))?;
        let mgr_key = c.ceph(&[
            "auth",
            "get-or-create",
            "mgr.x",
            "mon",
            "allow profile mgr",
            "osd",
            "allow *",
            "mds",
            "allow *",
        ])?;
        crate::swtpm::write(&mgr_dir.join("keyring"), &mgr_key)?;
        c.spawn("ceph-mgr", &["-i", "x"])?;
        // OSD, file-backed.
        c.add_file_osd()?;
        c.wait(Duration::from_secs(90), "HEALTH_OK with the OSD up", || {
            c.health_ok() && c.osds_up() >= 1
        })?;
        let mut c = c;
        c.startup = t0.elapsed();
        tracing::info!("ceph cluster up in {:?}", c.startup);
        Ok(c)
    }

    /// How long [`CephCluster::start`] took.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    fn spawn(&self, program: &str, args: &[&str]) -> Result<()> {
        let d = self.dir.path();
        let mut cmd = Command::new(program);
        cmd.arg("-c").arg(d.join("ceph.conf")).arg("-f").args(args);
        let name = format!("{program}{}", args.join(""));
        let daemon = Daemon::spawn(&name, cmd, &d.join(format!("log/{name}.out")))?;
        if let Some(pid) = daemon.pid() {
            crate::swtpm::write(&d.join(format!("pids/{name}")), &pid.to_string())?;
        }
        self.daemons
            .lock()
            .map_err(|_| Error::Other("ceph daemon list poisoned".into()))?
            .push(daemon);
        Ok(())
    }

    fn wait(&self, timeout: Duration, what: &str, mut ok: impl FnMut() -> bool) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if ok() {
                return Ok(());
            }
            let mut ds = self
                .daemons
                .lock()
                .map_err(|_| Error::Other("ceph daemon list poisoned".into()))?;
            for dead in ds.iter_mut() {
                if !dead.is_running() {
                    return Err(dead.start_error(&format!("exited while waiting for {what}")));
                }
            }
            drop(ds);
            std::thread::sleep(Duration::from_millis(250));
        }
        let status = self.ceph(&["status"]).unwrap_or_else(|e| e.to_string());
        Err(Error::start(
            "ceph cluster",
            format!("no {what} after {timeout:?}:\n{status}"),
        ))
    }

    /// Adds a file-backed BlueStore OSD to this cluster and starts it; returns its id.
    pub fn add_file_osd(&self) -> Result<u32> {
        let d = self.dir.path();
        let uuid = uuid();
        let secret = Command::new("ceph-authtool")
            .arg("--gen-print-key")
            .run_get_string()?;
        let secret = secret.trim();
        let sj = d.join(format!("osd-{uuid}.json"));
        crate::swtpm::write(
            &sj,
            &serde_json::json!({ "cephx_secret": secret }).to_string(),
        )?;
        let id = self
            .ceph_cmd(&["osd", "new", &uuid, "-i"])
            .arg(&sj)
            .run_get_string()?;
        let id: u32 = id
            .trim()
            .parse()
            .map_err(|_| Error::Other(format!("`ceph osd new` printed {id:?}")))?;
        let data = d.join(format!("osd/ceph-{id}"));
        std::fs::create_dir_all(&data).map_err(Error::io("creating osd dir"))?;
        crate::swtpm::write(
            &data.join("keyring"),
            &format!("[osd.{id}]\n\tkey = {secret}\n"),
        )?;
        Command::new("ceph-osd")
            .arg("-c")
            .arg(d.join("ceph.conf"))
            .args([
                "-i",
                &id.to_string(),
                "--mkfs",
                "--osd-uuid",
                &uuid,
                "--no-mon-config",
            ])
            .run()?;
        self.spawn("ceph-osd", &["-i", &id.to_string()])?;
        Ok(id)
    }

    /// Holds the cluster for exclusive use (tests that change shared state).
    pub fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cluster fsid.
    pub fn fsid(&self) -> &str {
        &self.fsid
    }

    /// The address the daemons bind and advertise ([`CephOptions::public_addr`]).
    pub fn public_addr(&self) -> Ipv4Addr {
        self.public_addr
    }

    /// `mon_host` as in ceph.conf: `[v2:ADDR:P2,v1:ADDR:P1]`.
    pub fn mon_host(&self) -> &str {
        &self.mon_host
    }

    /// The full ceph.conf the daemons use (paths inside the temp dir).
    pub fn conf_path(&self) -> PathBuf {
        self.dir.path().join("ceph.conf")
    }

    /// The client.admin keyring.
    pub fn admin_keyring_path(&self) -> PathBuf {
        self.dir.path().join("keyring")
    }

    /// The client.admin secret (base64).
    pub fn admin_key(&self) -> Result<String> {
        Ok(self
            .ceph(&["auth", "get-key", "client.admin"])?
            .trim()
            .to_string())
    }

    /// A minimal client ceph.conf (fsid + mon_host), as a joining node gets it.
    pub fn minimal_conf(&self) -> String {
        format!(
            "[global]\n\tfsid = {}\n\tmon_host = {}\n",
            self.fsid, self.mon_host
        )
    }

    /// The cluster's temp dir (logs under `log/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A `ceph` command as client.admin against this cluster.
    pub fn ceph_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ceph");
        c.arg("-c")
            .arg(self.conf_path())
            .args(["-n", "client.admin", "-k"])
            .arg(self.admin_keyring_path())
            .args(["--connect-timeout", "15"])
            .args(args);
        c
    }

    /// Runs `ceph <args>` as client.admin; returns stdout.
    pub fn ceph(&self, args: &[&str]) -> Result<String> {
        Ok(self.ceph_cmd(args).run_get_string()?)
    }

    /// Runs `ceph <args> --format json` and parses the output.
    pub fn ceph_json(&self, args: &[&str]) -> Result<serde_json::Value> {
        Ok(self
            .ceph_cmd(args)
            .args(["--format", "json"])
            .run_get_json()?)
    }

    /// True when `ceph health` says HEALTH_OK.
    pub fn health_ok(&self) -> bool {
        self.ceph_json(&["health"])
            .is_ok_and(|v| v["status"] == "HEALTH_OK")
    }

    /// Number of OSDs that are up.
    pub fn osds_up(&self) -> u64 {
        self.ceph_json(&["osd", "stat"])
            .ok()
            .and_then(|v| v["num_up_osds"].as_u64())
            .unwrap_or(0)
    }

    /// A `rados` command as client.admin.
    pub fn rados_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("rados");
        c.arg("-c")
            .arg(self.conf_path())
            .args(["-n", "client.admin", "-k"])
            .arg(self.admin_keyring_path())
            .args(args);
        c
    }

    /// Starts a shell that waits for this process to exit, then kills the
    /// daemons (PIDs in `pids/`) and removes the directory.
    fn watchdog(&self) -> Result<()> {
        let d = self.dir.path();
        let script = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 1; done; \
             for f in {d}/pids/*; do kill $(cat $f) 2>/dev/null; done; sleep 3; \
             for f in {d}/pids/*; do kill -9 $(cat $f) 2>/dev/null; done; rm -rf {d}",
            me = std::process::id(),
            d = d.display()
        );
        let mut c = Command::new("sh");
        c.args(["-c", &script]);
        // The watchdog must outlive us: never kill it from Drop.
        Daemon::spawn("ceph-watchdog", c, &d.join("log/watchdog.out"))?.detach();
        Ok(())
    }
}

impl Drop for CephCluster {
    fn drop(&mut self) {
        if let Ok(mut ds) = self.daemons.lock() {
            // OSDs first, then mgr, then mon.
            while let Some(mut d) = ds.pop() {
                d.stop();
            }
        }
    }
}

fn preflight() -> Result<()> {
    crate::require(&[
        "ceph",
        "ceph-mon",
        "ceph-mgr",
        "ceph-osd",
        "ceph-authtool",
        "monmaptool",
        "rados",
    ])?;
    Ok(())
}

fn authtool(pre: &[&str], keyring: &Path, post: &[&str]) -> Result<()> {
    Command::new("ceph-authtool")
        .args(pre)
        .arg(keyring)
        .args(post)
        .run()?;
    Ok(())
}

/// A random RFC 4122 version-4 UUID.
pub fn uuid() -> String {
    let h = crate::postgres::random_hex(16);
    let mut b: Vec<u8> = (0..16)
        .filter_map(|i| u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    b.resize(16, 0);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x: String = b.iter().map(|v| format!("{v:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

fn full_conf(fsid: &str, mon_host: &str, addr: Ipv4Addr, d: &Path) -> String {
    let d = d.display();
    format!(
        "[global]
fsid = {fsid}
mon_host = {mon_host}
mon initial members = a
public addr = {addr}
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
run dir = {d}/run
admin socket = {d}/run/$cluster-$name.asok
log file = {d}/log/$cluster-$name.log
crash dir = {d}/crash
mon data = {d}/mon/$cluster-$id
mgr data = {d}/mgr/$cluster-$id
osd data = {d}/osd/$cluster-$id
mon allow pool size one = true
mon allow pool delete = false
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
auth allow insecure global id reclaim = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
paxos propose interval = 0.1
mgr stats period = 1
mgr tick period = 1
mgr module path = {d}/mgr-modules
mgr initial modules = 
osd mon report interval = 1
osd objectstore = bluestore
bluestore block create = true
bluestore block size = 3221225472
bluestore cache autotune = false
bluestore cache size = 67108864
osd memory target = 939524096
bluestore fsck on mount = false
debug ms = 0
[client]
keyring = {d}/keyring
[mon]
keyring = {d}/mon/$cluster-$id/keyring
[mgr]
keyring = {d}/mgr/$cluster-$id/keyring
[osd]
keyring = {d}/osd/$cluster-$id/keyring
"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn conf_binds_the_public_address_ipv4_only() {
        let d = std::path::Path::new("/tmp/c");
        let mon_host = "[v2:10.231.7.1:3300,v1:10.231.7.1:6789]";
        let c = super::full_conf("f", mon_host, "10.231.7.1".parse().expect("ip"), d);
        assert!(c.contains("\npublic addr = 10.231.7.1\n"), "{c}");
        assert!(c.contains(&format!("\nmon_host = {mon_host}\n")), "{c}");
        assert!(c.contains("\nms bind ipv6 = false\n"), "{c}");
        assert!(!c.contains("127.0.0.1"), "{c}");
    }

    #[test]
    fn uuid_is_v4_shaped() {
        let u = super::uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, super::uuid());
    }
}
