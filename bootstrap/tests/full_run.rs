//! First boot end to end: the real keel-bootstrap binary takes a swtpm
//! "node" from a seed ISO made by the real `cloud-localds` to `done`, against
//! real services on loopback: keel-enroll (in-process harness, HTTPS) with its
//! Ceph, ACME EAB and GitOps issuers configured, the shared test Ceph cluster
//! (a file-backed OSD), pebble (EAB required) and an HTTPS Git server holding
//! a signed bundle. With the `failpoints` feature, the agent is killed at every
//! step and transition and must converge with no duplicate enrollment, OSD or
//! ACME account. Also prints the agent's own CPU time and peak RSS.

mod common;
use common::{policy, stage, text, STORE};

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine;
use keel_bootstrap::gitops::manifest;
use keel_enroll_bench::harness::{Harness, Options};
use keel_testbed::{or_skip, CephCluster, GitServer, Pebble};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::SigningKey;
use p256::pkcs8::{EncodePublicKey, LineEnding};

const REPO: &str = "bundle";
const TOOLS: &[&str] = &[
    "ceph",
    "ceph-osd",
    "ceph-authtool",
    "cloud-localds",
    "swtpm",
    "pebble",
    "git",
    "openssl",
];

/// The agent under test; `KEEL_BOOTSTRAP_BIN` points at another build (e.g.
/// release) to measure it.
fn bin() -> PathBuf {
    std::env::var_os("KEEL_BOOTSTRAP_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_keel-bootstrap")))
}

/// Every service one node needs.
struct Bed {
    ceph: &'static CephCluster,
    tpm: keel_testbed::Swtpm,
    rt: tokio::runtime::Runtime,
    h: Harness,
    pebble: Pebble,
    git: GitServer,
    key: SigningKey,
    rev: String,
    dir: tempfile::TempDir,
}

fn bed(test: &str) -> Option<Bed> {
    if keel_testbed::skip_unless_root_and(TOOLS) {
        return None;
    }
    let ceph = or_skip(CephCluster::shared())?;
    let tpm = or_skip(keel_testbed::Swtpm::start())?;
    let pebble = or_skip(Pebble::start())?;
    let git = or_skip(GitServer::start(Default::default()))?;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();

    // The bundle: one file, signed over its tree with a test key.
    git.create_repo(REPO).expect("repo");
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let trust = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("pem");
    fs::write(d.join("trust.pem"), trust).expect("trust root");
    let rev = publish(&git, &key, "replicas: 1\n", 1);

    fs::write(d.join("pebble-ca.pem"), pebble.listener_ca_pem()).expect("ca");
    fs::write(d.join("git-ca.pem"), git.ca_pem()).expect("ca");
    let (kid, hmac) = pebble.eab().expect("pebble has an EAB key");
    let extra = format!(
        "[stores.{STORE}.ceph]\nconf = \"{}\"\nadmin-keyring = \"{}\"\n\
         [stores.{STORE}.acme-eab]\ndirectory-url = \"{}\"\nkey-id = \"{kid}\"\nhmac-key = \"{hmac}\"\nca-bundle = \"{}\"\n\
         [stores.{STORE}.gitops]\nurl = \"{}\"\nref = \"main\"\ntrust-root = \"{}\"\nca-bundle = \"{}\"\n",
        ceph.conf_path().display(),
        ceph.admin_keyring_path().display(),
        pebble.directory_url(),
        d.join("pebble-ca.pem").display(),
        git.repo_url(REPO),
        d.join("trust.pem").display(),
        d.join("git-ca.pem").display(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let h = rt
        .block_on(Harness::start(Options {
            ek_roots: vec![
                tpm.ca_root_pem().expect("root"),
                tpm.ca_issuer_pem().expect("issuer"),
            ],
            policy: policy(),
            extra_config: extra,
            ..Options::default()
        }))
        .unwrap_or_else(|e| panic!("{test}: keel-enroll harness: {e:#}"));
    Some(Bed {
        ceph,
        tpm,
        rt,
        h,
        pebble,
        git,
        key,
        rev,
        dir,
    })
}

/// Writes `app/config.yaml`, signs the tree with `key` for [`STORE`], ref
/// `main` and `serial`, pushes; returns the commit.
fn publish(git: &GitServer, key: &SigningKey, config: &str, serial: u64) -> String {
    let w = git.work_dir(REPO).expect("work dir");
    fs::create_dir_all(w.join("app")).expect("mkdir");
    fs::write(w.join("app/config.yaml"), config).expect("write");
    let _ = fs::remove_file(w.join(manifest::MANIFEST_PATH));
    let _ = fs::remove_file(w.join(manifest::SIGNATURE_PATH));
    let header = manifest::Header::new(STORE, "main", serial).expect("header");
    let m = manifest::build(&w, &header).expect("manifest");
    let sig: p256::ecdsa::Signature = key.sign(m.as_bytes());
    fs::create_dir_all(w.join(".keel")).expect("mkdir");
    fs::write(w.join(manifest::MANIFEST_PATH), m).expect("manifest");
    fs::write(
        w.join(manifest::SIGNATURE_PATH),
        base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes()),
    )
    .expect("signature");
    git.commit_and_push(REPO, "main", &[], "bundle")
        .expect("push")
}

/// A node: its root, the CIDATA ISO made by `cloud-localds`, its state dir.
struct Node {
    root: PathBuf,
    seed: PathBuf,
    state: PathBuf,
}

impl Bed {
    fn node(&self, name: &str) -> Node {
        let token = self
            .rt
            .block_on(self.h.admin().create_token(STORE, 3600))
            .expect("token");
        let d = self.dir.path().join(name);
        let root = d.join("root");
        fs::create_dir_all(root.join("etc")).expect("etc");
        fs::write(
            root.join("etc/os-release"),
            "ID=debian\nIMAGE_ID=store-node\nIMAGE_VERSION=2026.11.1\n",
        )
        .expect("os-release");
        fs::write(
            root.join("etc/machine-id"),
            format!("{:032x}\n", rand::random::<u128>()),
        )
        .expect("machine-id");
        let ca: String = self
            .h
            .ca_pem
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect();
        let ud = format!(
            "#cloud-config\nhostname: {name}\nfqdn: {name}.store.test\ntimezone: UTC\n\
             keel:\n  enroll-url: {}\n  store-id: {STORE}\n  token: {token}\n  enroll-ca: |\n{ca}\
             \x20 disks:\n    file-backed-gib: 2\n",
            self.h.base_url
        );
        fs::write(d.join("user-data"), ud).expect("ud");
        fs::write(
            d.join("meta-data"),
            format!("instance-id: iid-{name}\nlocal-hostname: {name}\n"),
        )
        .expect("md");
        let seed = d.join("seed.iso");
        let out = Command::new("cloud-localds")
            .arg(&seed)
            .arg(d.join("user-data"))
            .arg(d.join("meta-data"))
            .output()
            .expect("cloud-localds");
        assert!(out.status.success(), "cloud-localds: {}", text(&out));
        Node {
            root,
            seed,
            state: d.join("state"),
        }
    }

    /// `keel-bootstrap run` for `n`, under /usr/bin/time when `timed`.
    fn run(&self, n: &Node, failpoint: Option<&str>, timed: bool) -> Output {
        let r = n.root.display();
        let opts = [
            "public addr=127.0.0.1".to_string(),
            "ms bind ipv6=false".into(),
            format!("run dir={r}/run/ceph"),
            format!("admin socket={r}/run/ceph/$cluster-$name.asok"),
            format!("log file={r}/var/log/ceph/$cluster-$name.log"),
            format!("crash dir={r}/var/lib/ceph/crash"),
            "osd mon report interval=1".into(),
            "bluestore cache autotune=false".into(),
            "bluestore cache size=67108864".into(),
            "osd memory target=939524096".into(),
        ];
        let mut c = if timed {
            let mut c = Command::new("/usr/bin/time");
            c.args(["-f", "KEEL-RUSAGE user=%U sys=%S maxrss_kb=%M wall=%e"])
                .arg(bin());
            c
        } else {
            Command::new(bin())
        };
        c.args([
            "run",
            "--backoff-initial-ms",
            "200",
            "--backoff-max-ms",
            "1000",
        ])
        .arg("--root")
        .arg(&n.root)
        .arg("--seed")
        .arg(&n.seed)
        .arg("--state-dir")
        .arg(&n.state)
        .args(["--tcti", &self.tpm.tcti()])
        .args(["--spawn-osds", "--http01-listen", "127.0.0.1:0"])
        .arg("--event-log")
        .arg(common::empty_event_log(&n.root))
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null());
        for o in &opts {
            c.arg("--osd-option").arg(o);
        }
        match failpoint {
            Some(f) => c.env("FAILPOINTS", format!("{f}=return")),
            None => c.env_remove("FAILPOINTS"),
        };
        c.output().expect("run keel-bootstrap")
    }

    fn nodes(&self) -> Vec<keel_enroll::admission::NodeRow> {
        self.rt.block_on(self.h.admin().nodes(None)).expect("nodes")
    }

    fn osd_ids(&self) -> Vec<u64> {
        let v = self.ceph.ceph_json(&["osd", "ls"]).expect("osd ls");
        v.as_array()
            .expect("array")
            .iter()
            .filter_map(|x| x.as_u64())
            .collect()
    }
}

/// Stops the OSDs a node spawned and purges them, so the shared cluster stays healthy.
struct OsdCleanup<'a> {
    ceph: &'a CephCluster,
    root: PathBuf,
    ids: Vec<u64>,
}

impl Drop for OsdCleanup<'_> {
    fn drop(&mut self) {
        for id in &self.ids {
            if let Ok(pid) =
                fs::read_to_string(self.root.join(format!("run/ceph/ceph-osd.{id}.pid")))
            {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
            let _ = self.ceph.ceph(&["osd", "down", &id.to_string()]);
            let _ = self
                .ceph
                .ceph(&["osd", "purge", &id.to_string(), "--yes-i-really-mean-it"]);
        }
    }
}

/// The OSD the node added is up and in, in the monitors' `osd dump`.
fn assert_up_in(b: &Bed, id: u64) {
    let dump = b
        .ceph
        .ceph_json(&["osd", "dump", "--format", "json"])
        .expect("osd dump");
    let osd = dump["osds"]
        .as_array()
        .expect("osds")
        .iter()
        .find(|o| o["osd"].as_u64() == Some(id))
        .unwrap_or_else(|| panic!("osd.{id} not in the dump: {dump}"));
    assert_eq!(osd["up"].as_u64(), Some(1), "osd.{id} up: {osd}");
    assert_eq!(osd["in"].as_u64(), Some(1), "osd.{id} in: {osd}");
    let tree = b.ceph.ceph(&["osd", "tree"]).expect("osd tree");
    eprintln!("{tree}");
}

/// Everything first boot promises, for a node that reached `done`.
fn assert_done(b: &Bed, n: &Node, new_osds: &[u64], all: &str) {
    assert_eq!(stage(&n.state), "done", "{all}");
    // One enrollment, admitted.
    let nodes = b.nodes();
    assert_eq!(nodes.len(), 1, "exactly one node enrolled: {nodes:?}");
    // One OSD for the one (file-backed) disk, up and in.
    assert_eq!(new_osds.len(), 1, "one OSD for the disk: {new_osds:?}");
    assert_up_in(b, new_osds[0]);
    // A certificate from pebble that chains to pebble's issuing root.
    let live = n.state.join("acme/live");
    let root = b.dir.path().join("pebble-root.pem");
    fs::write(&root, b.pebble.issuing_root_pem().expect("root")).expect("root");
    let v = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&root)
        .arg("-untrusted")
        .arg(live.join("chain.pem"))
        .arg(live.join("cert.pem"))
        .output()
        .expect("openssl verify");
    assert!(v.status.success(), "certificate chain: {}", text(&v));
    let mode = fs::metadata(live.join("key.pem"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // The signed bundle is applied.
    let bundle = n.state.join("bundle");
    assert_eq!(
        fs::read_link(bundle.join("current")).expect("current"),
        Path::new("releases").join(&b.rev)
    );
    assert_eq!(
        fs::read_to_string(bundle.join("current/app/config.yaml")).expect("bundle file"),
        "replicas: 1\n"
    );
    // ...and reported to keel-enroll.
    assert_eq!(
        nodes[0].revision.as_deref(),
        Some(b.rev.as_str()),
        "revision reported: {all}"
    );
}

fn new_ids(before: &[u64], after: &[u64]) -> Vec<u64> {
    after
        .iter()
        .copied()
        .filter(|i| !before.contains(i))
        .collect()
}

#[test]
fn seed_to_done_on_real_services() {
    let Some(b) = bed("seed_to_done_on_real_services") else {
        return;
    };
    let n = b.node("node1");
    // Tests that add OSDs compare the cluster's OSD list: one at a time.
    let _serial = b.ceph.lock();
    let before = b.osd_ids();
    let mut cleanup = OsdCleanup {
        ceph: b.ceph,
        root: n.root.clone(),
        ids: vec![],
    };
    let timed = Path::new("/usr/bin/time").exists();
    let t = std::time::Instant::now();
    let out = b.run(&n, None, timed);
    let wall = t.elapsed();
    let all = text(&out);
    let added = new_ids(&before, &b.osd_ids());
    cleanup.ids = added.clone();
    assert!(out.status.success(), "{all}");
    assert_done(&b, &n, &added, &all);
    // Figures, not assertions: the agent's own use (it reads /proc/self at the
    // end) and, from /usr/bin/time, the agent plus the programs it ran
    // (ceph CLI, ceph-osd --mkfs, git).
    let own = all
        .lines()
        .find_map(|l| l.split_once("agent resource use (this process only): "))
        .map(|(_, u)| u.trim().to_string());
    assert!(own.is_some(), "the agent reports its resource use: {all}");
    eprintln!(
        "keel-bootstrap run, seed -> done, wall {wall:?}: agent alone: {}",
        own.unwrap_or_default()
    );
    match all.lines().find(|l| l.starts_with("KEEL-RUSAGE")) {
        Some(line) => eprintln!("  agent + child processes (/usr/bin/time): {line}"),
        None => eprintln!("  /usr/bin/time missing: no figures with child processes"),
    }
    // A rerun of a finished node does nothing and changes nothing.
    let account = fs::read(n.state.join("acme/account.json")).expect("account");
    let out = b.run(&n, None, false);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(new_ids(&before, &b.osd_ids()), added);
    assert_eq!(
        fs::read(n.state.join("acme/account.json")).expect("account"),
        account
    );
    assert_eq!(b.nodes().len(), 1);

    // The sync timer's entry point applies a new signed revision and reports it too.
    let rev2 = publish(&b.git, &b.key, "replicas: 2\n", 2);
    let out = Command::new(bin())
        .args(["sync", "--state-dir"])
        .arg(&n.state)
        .env_remove("JOURNAL_STREAM")
        .output()
        .expect("sync");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        fs::read_link(n.state.join("bundle/current")).expect("current"),
        Path::new("releases").join(&rev2)
    );
    assert_eq!(
        b.nodes()[0].revision.as_deref(),
        Some(rev2.as_str()),
        "{}",
        text(&out)
    );
}

/// Every fail point, in order, on one node: each run is killed at the next
/// point, and the following run resumes from there (and is itself killed at
/// the point after); the last run has no fail point and must finish. After
/// every kill: at most one enrollment, one OSD, one ACME account.
#[test]
fn kill_at_every_step_and_transition_converges() {
    if !cfg!(feature = "failpoints") {
        keel_testbed::report_skip(format_args!(
            "kill_at_every_step_and_transition_converges: build with --features failpoints"
        ));
        return;
    }
    let Some(b) = bed("kill_at_every_step_and_transition_converges") else {
        return;
    };
    let n = b.node("node2");
    let _serial = b.ceph.lock();
    let before = b.osd_ids();
    let mut cleanup = OsdCleanup {
        ceph: b.ceph,
        root: n.root.clone(),
        ids: vec![],
    };
    let stages = [
        "enrolled",
        "ceph-joined",
        "certified",
        "bundle-synced",
        "done",
    ];
    let mut account: Option<Vec<u8>> = None;
    let mut osd: Option<Vec<u64>> = None;
    for (i, s) in stages.iter().enumerate() {
        for (kind, survives) in [("step", false), ("transition", true)] {
            let point = format!("{kind}-{s}");
            let out = b.run(&n, Some(&point), false);
            let all = text(&out);
            assert!(!out.status.success(), "{point}: must be killed: {all}");
            assert!(all.contains(&format!("failpoint {point}")), "{all}");
            // Killed before the state write: still in the previous stage.
            let want = if survives {
                s.to_string()
            } else if i == 0 {
                "start".to_string()
            } else {
                stages[i - 1].to_string()
            };
            assert_eq!(stage(&n.state), want, "{point}");
            assert_eq!(b.nodes().len(), 1, "{point}: one enrollment");
            let added = new_ids(&before, &b.osd_ids());
            cleanup.ids = added.clone();
            if i >= 1 {
                assert_eq!(added.len(), 1, "{point}: one OSD");
                assert_eq!(osd.get_or_insert_with(|| added.clone()), &added, "{point}");
            }
            if i >= 2 {
                let a = fs::read(n.state.join("acme/account.json")).expect("account");
                assert_eq!(account.get_or_insert_with(|| a.clone()), &a, "{point}");
            }
            eprintln!("killed at {point}: stage {want}, OSDs {added:?}");
        }
    }
    let out = b.run(&n, None, false);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let added = new_ids(&before, &b.osd_ids());
    cleanup.ids = added.clone();
    assert_done(&b, &n, &added, &all);
    assert_eq!(Some(added), osd);
    assert_eq!(
        Some(fs::read(n.state.join("acme/account.json")).expect("account")),
        account
    );
}
