//! A store for the end-to-end first-boot test: a network namespace with a
//! bridge (the store LAN) and, on its host address, every real service a
//! node meets on first boot: DHCP (dnsmasq), the store's Ceph cluster, an
//! ACME server (pebble), a Git server holding a bundle signed with
//! `keel bundle sign`, and keel-enroll trusting only signed release
//! manifests. Guests join the LAN through a tap NIC on the bridge.
//!
//! Everything here runs inside the namespace: create the [`TestNet`], enter
//! it on the test's thread, then call [`Store::start`] and start the VMs from
//! that same thread (threads and programs started there inherit it).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use keel_cmd::CommandRunExt as _;
use keel_enroll_bench::harness::{Harness, Options};
use keel_testbed::{
    CephCluster, CephOptions, Dhcp, GitServer, GitServerOptions, Pebble, PebbleOptions, TestNet,
};

/// The store the nodes belong to.
pub const STORE: &str = "store-e2e";
/// The bundle repository on the Git server.
pub const REPO: &str = "bundle";
/// The password of the test's release and bundle keys.
pub const KEY_PASSWORD: &str = "keel-e2e";

/// `keel` (the binary at `bin`). Commands that need the test keys' password
/// get `--password-file` (the `password` file of [`keys`]), not an
/// environment variable.
pub fn keel(bin: &Path) -> Command {
    let mut c = Command::new(bin);
    c.env("CI", "true");
    c
}

/// The store's services (not yet keel-enroll: see [`Store::start_enroll`]).
pub struct Store {
    pub dir: tempfile::TempDir,
    pub dhcp: Dhcp,
    pub ceph: CephCluster,
    pub pebble: Pebble,
    pub git: GitServer,
    /// The bundle commit the nodes must apply.
    pub rev: String,
    pub host: IpAddr,
    pub rt: tokio::runtime::Runtime,
    pub enroll: Option<Harness>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// A directory for the store with the release and bundle signing keys
/// (`release.key|pub`, `bundle.key|pub`, password [`KEY_PASSWORD`]) made
/// by `keel key generate`. Call it before entering the namespace: the
/// release is built with the key, and builds need the package archive.
/// `keel_bin` is the `keel` command line (a test's
/// `CARGO_BIN_EXE_keel-test-cli`).
pub fn keys(keel_bin: &Path) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new().prefix("keel-store-").tempdir()?;
    let password = dir.path().join("password");
    std::fs::write(&password, KEY_PASSWORD)?;
    for key in ["release", "bundle"] {
        keel(keel_bin)
            .args(["key", "generate", "--out"])
            .arg(dir.path().join(key))
            .arg("--password-file")
            .arg(&password)
            .run()
            .with_context(|| format!("keel key generate {key}"))?;
    }
    Ok(dir)
}

impl Store {
    /// Starts DHCP (for `guests` guest numbers), Ceph, pebble and the Git
    /// server on `net`'s host address and publishes a bundle signed with
    /// `dir`'s bundle key (see [`keys`]). The calling thread must be in `net`.
    pub fn start(
        net: &TestNet,
        guests: &[u8],
        keel_bin: &Path,
        dir: tempfile::TempDir,
    ) -> anyhow::Result<Store> {
        let host: IpAddr = net.host_addr().into();
        let hosts: Vec<(String, u8)> = guests.iter().map(|n| (net.guest_mac(*n), *n)).collect();
        let dhcp = Dhcp::start(net, &hosts).context("DHCP server")?;
        let ceph = CephCluster::start_with(CephOptions {
            public_addr: net.host_addr(),
        })
        .context("Ceph cluster")?;
        let pebble = Pebble::start_with(PebbleOptions {
            listen_addr: host,
            ..Default::default()
        })
        .context("pebble")?;
        let git = GitServer::start(GitServerOptions {
            bind_addr: host,
            ..Default::default()
        })
        .context("Git server")?;
        let d = dir.path();
        let rev = publish_bundle(&git, d, keel_bin)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        Ok(Store {
            dir,
            dhcp,
            ceph,
            pebble,
            git,
            rev,
            host,
            rt,
            enroll: None,
        })
    }

    /// Puts a signed release's manifest into keel-enroll's manifests directory.
    pub fn trust_release(&self, release_dir: &Path, as_name: &str) -> anyhow::Result<()> {
        let m = self.dir.path().join("manifests");
        std::fs::create_dir_all(&m)?;
        for (from, to) in [
            ("manifest.json", format!("{as_name}.json")),
            ("manifest.json.sig", format!("{as_name}.json.sig")),
        ] {
            std::fs::copy(release_dir.join(from), m.join(&to))
                .with_context(|| format!("copying {from} of {}", release_dir.display()))?;
        }
        Ok(())
    }

    /// Starts keel-enroll on the host address: TLS, EK certificates from
    /// `ek_roots` (PEM), only signed manifests (manifest-key), an event log
    /// required, and the store's Ceph, ACME (EAB) and GitOps join material.
    pub fn start_enroll(&mut self, ek_roots: Vec<String>) -> anyhow::Result<()> {
        let d = self.dir.path();
        std::fs::write(d.join("pebble-ca.pem"), self.pebble.listener_ca_pem())?;
        std::fs::write(d.join("git-ca.pem"), self.git.ca_pem())?;
        let (kid, hmac) = self.pebble.eab().context("pebble has no EAB key")?;
        let port = keel_testbed::free_port_on(self.host)?;
        let listen = SocketAddr::new(self.host, port).to_string();
        let extra = format!(
            "manifests-dir = \"{manifests}\"\nmanifest-key = \"{key}\"\nrequire-event-log = true\n\
             [stores.{STORE}.ceph]\nconf = \"{conf}\"\nadmin-keyring = \"{keyring}\"\n\
             [stores.{STORE}.acme-eab]\ndirectory-url = \"{acme}\"\nkey-id = \"{kid}\"\nhmac-key = \"{hmac}\"\nca-bundle = \"{acme_ca}\"\n\
             [stores.{STORE}.gitops]\nurl = \"{git}\"\nref = \"main\"\ntrust-root = \"{trust}\"\nca-bundle = \"{git_ca}\"\n",
            manifests = d.join("manifests").display(),
            key = d.join("release.pub").display(),
            conf = self.ceph.conf_path().display(),
            keyring = self.ceph.admin_keyring_path().display(),
            acme = self.pebble.directory_url(),
            acme_ca = d.join("pebble-ca.pem").display(),
            git = self.git.repo_url(REPO),
            trust = d.join("bundle.pub").display(),
            git_ca = d.join("git-ca.pem").display(),
        );
        let h = self
            .rt
            .block_on(Harness::start(Options {
                ek_roots,
                extra_config: extra,
                listen: Some(listen),
                ..Options::default()
            }))
            .context("keel-enroll")?;
        self.enroll = Some(h);
        Ok(())
    }

    /// The running keel-enroll.
    pub fn enroll(&self) -> &Harness {
        self.enroll.as_ref().expect("keel-enroll started")
    }

    /// A fresh one-time enrollment token for the store.
    pub fn token(&self) -> anyhow::Result<String> {
        self.rt
            .block_on(self.enroll().admin().create_token(STORE, 3600))
    }

    /// The enrolled nodes.
    pub fn nodes(&self) -> anyhow::Result<Vec<keel_enroll::admission::NodeRow>> {
        self.rt.block_on(self.enroll().admin().nodes(None))
    }
}

/// One file in the bundle, committed, signed with `keel bundle sign
/// --commit` for [`STORE`] and ref `main` (serial 1, derived: nothing was
/// signed before) with the bundle key in `keys` (see [`keys`]), pushed;
/// returns the signed commit.
fn publish_bundle(git: &GitServer, keys: &Path, keel_bin: &Path) -> anyhow::Result<String> {
    git.create_repo(REPO)?;
    git.commit_and_push(
        REPO,
        "main",
        &[("app/config.yaml", b"replicas: 1\n")],
        "store bundle",
    )?;
    let w = git.work_dir(REPO)?;
    let mut sign = keel(keel_bin);
    sign.args([
        "bundle", "sign", "--commit", "--store", STORE, "--ref", "main", "--key",
    ])
    .arg(keys.join("bundle.key"))
    .arg("--password-file")
    .arg(keys.join("password"))
    .arg(&w);
    // `--commit` runs git in the work tree: same identity as the server's client.
    for (k, v) in git.git().get_envs() {
        if let Some(v) = v {
            sign.env(k, v);
        }
    }
    sign.run().context("keel bundle sign")?;
    git.git()
        .arg("-C")
        .arg(&w)
        .args(["push", "-q", "origin", "main"])
        .run()
        .context("pushing the signed bundle")?;
    let rev = git
        .git()
        .arg("-C")
        .arg(&w)
        .args(["rev-parse", "HEAD"])
        .run_get_string()?;
    Ok(rev.trim().to_string())
}

/// The EK certificate authority of the software TPMs `keel vm` manufactures
/// (swtpm's local CA, created by the first `swtpm_setup`): root and issuer.
pub fn swtpm_localca_pems() -> anyhow::Result<Vec<String>> {
    let d = Path::new("/var/lib/swtpm-localca");
    ["swtpm-localca-rootca-cert.pem", "issuercert.pem"]
        .iter()
        .map(|f| {
            std::fs::read_to_string(d.join(f))
                .with_context(|| format!("reading {f} in {}", d.display()))
        })
        .collect()
}

/// A NoCloud seed ISO made by `keel seed` (the technician's command, run
/// as `keel_bin`): host name, root's SSH key, and the `keel:` section
/// (enrollment URL, CA, store, token, a file-backed OSD disk).
pub fn seed_iso(
    keel_bin: &Path,
    dir: &Path,
    name: &str,
    enroll_url: &str,
    enroll_ca: &str,
    token: &str,
    ssh_pub: &str,
) -> anyhow::Result<PathBuf> {
    let d = dir.join(format!("seed-{name}"));
    std::fs::create_dir_all(&d)?;
    let (ca, tok, key) = (d.join("ca.pem"), d.join("token"), d.join("ssh.pub"));
    std::fs::write(&ca, enroll_ca)?;
    std::fs::write(&tok, token)?;
    std::fs::write(&key, ssh_pub)?;
    let iso = d.join("seed.iso");
    keel(keel_bin)
        .arg("seed")
        .arg("--out")
        .arg(&iso)
        .args(["--store-id", STORE, "--enroll-url", enroll_url])
        .arg("--enroll-ca")
        .arg(&ca)
        .arg("--token-file")
        .arg(&tok)
        .arg("--ssh-key")
        .arg(&key)
        .args([
            "--hostname",
            name,
            "--timezone",
            "UTC",
            "--file-backed-gib",
            "2",
        ])
        .arg("--fqdn")
        .arg(format!("{name}.{STORE}.test"))
        .arg("--instance-id")
        .arg(format!("iid-{name}"))
        .run()
        .context("keel seed")?;
    Ok(iso)
}
