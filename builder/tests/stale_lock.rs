//! A lock that has aged on purpose, against the real apt, archive and mkosi:
//! test-tiny's lock pins `tpm2-tools` at a version the archive does not offer
//! (the archive's own .deb, re-versioned with dpkg-deb: a genuine package of
//! a version Debian no longer has, which is exactly what an old lock pins
//! once the security suite moves on). Then:
//! - a strict build refuses, naming the package, the pool it looked in and
//!   the ways out;
//! - the same build succeeds from a pool that holds that .deb, and the image
//!   has the aged version;
//! - `--relock` succeeds without the pool, from today's archive.
//!
//! Needs root, mkosi, dpkg-deb and reprepro (./setup.sh --deps); SKIP otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;

use keel_builder::lock::{apt::PrivateApt, Lock};
use keel_builder::pool::Pool;
use keel_cmd::CommandRunExt;

mod common;
use common::{keel, repo};

const AGED: &str = "tpm2-tools";

fn skip_reason() -> Option<String> {
    common::build_skip_reason(&["mkosi", "dpkg-deb", "reprepro", "apt-get"])
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for e in std::fs::read_dir(src).expect("read_dir") {
        let p = e.expect("entry").path();
        let to = dst.join(p.file_name().expect("name"));
        if p.is_dir() {
            copy_dir(&p, &to);
        } else {
            std::fs::copy(&p, &to).expect("copy");
        }
    }
}

/// The archive's .deb of `name=version`, re-versioned as `new_version`.
fn reversioned_deb(apt: &PrivateApt, pin: &str, new_version: &str, dir: &Path) -> PathBuf {
    apt.download(&[pin.to_string()], dir)
        .expect("apt-get download");
    let deb = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("downloaded .deb");
    let tree = dir.join("tree");
    Command::new("dpkg-deb")
        .arg("-R")
        .arg(&deb)
        .arg(&tree)
        .run()
        .expect("dpkg-deb -R");
    let control = tree.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).expect("control");
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("Version: ") {
                format!("Version: {new_version}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&control, text).expect("write control");
    let out = dir.join("aged.deb");
    Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "-b"])
        .arg(&tree)
        .arg(&out)
        .run()
        .expect("dpkg-deb -b");
    out
}

/// test-tiny's definition in a temp dir, locked to today's archive except
/// for [`AGED`], pinned to a version no archive has (its .deb made here).
struct Aged {
    t: tempfile::TempDir,
    def: PathBuf,
    lock: Lock,
    aged_pkg: keel_builder::lock::LockedPackage,
    aged_version: String,
    deb: PathBuf,
    cache: String,
    empty_pool: PathBuf,
}

impl Aged {
    fn new() -> Aged {
        let t = tempfile::tempdir().expect("tmp");
        let def = t.path().join("test-tiny");
        copy_dir(&repo().join("images/test-tiny"), &def);
        let spec = keel_builder::spec::load(&def).expect("spec");
        let mirrors = keel_builder::spec::mirror::for_host(&spec.distribution).expect("mirrors");
        let apt = PrivateApt::new(&spec, &mirrors, Some(&t.path().join("apt"))).expect("apt");
        // Today's resolution, so that only the aged package is stale.
        let mut lock = keel_builder::lock::apt::resolve_with(&apt, &spec).expect("resolve");
        let pkg = lock
            .packages
            .iter_mut()
            .find(|p| p.name == AGED)
            .expect("tpm2-tools in test-tiny's lock");
        let dl = t.path().join("dl");
        std::fs::create_dir_all(&dl).expect("mkdir");
        let aged_version = format!("{}+keelaged1", pkg.version);
        let deb = reversioned_deb(&apt, &pkg.pin(), &aged_version, &dl);
        pkg.version = aged_version.clone();
        pkg.sha256 = keel_builder::fsutil::sha256_file(&deb).expect("hash");
        let aged_pkg = pkg.clone();
        std::fs::write(def.join("packages.lock"), lock.to_text()).expect("write lock");
        let empty_pool = t.path().join("empty-pool");
        Aged {
            def,
            lock,
            aged_pkg,
            aged_version,
            deb,
            cache: common::cache_dir(),
            empty_pool,
            t,
        }
    }

    fn def_s(&self) -> &str {
        self.def.to_str().expect("utf8")
    }

    fn empty_pool_s(&self) -> &str {
        self.empty_pool.to_str().expect("utf8")
    }

    /// Step 1, strict: refused before mkosi runs, with the way out.
    fn strict_refuses(&self) {
        let out1 = self.t.path().join("strict");
        let err = keel(&[
            "build",
            self.def_s(),
            "--out",
            out1.to_str().expect("utf8"),
            "--cache-dir",
            &self.cache,
            "--pool",
            self.empty_pool_s(),
        ])
        .expect_err("a stale lock must not build")
        .to_string();
        for want in [
            "is stale",
            self.aged_pkg.pin().as_str(),
            self.empty_pool_s(),
            "keel lock --update",
            "--pool",
            "--relock",
        ] {
            assert!(err.contains(want), "`{want}` in: {err}");
        }
        assert!(
            !out1.join("test-tiny.raw").exists(),
            "nothing built on refusal"
        );
    }

    /// Step 2, from a pool holding the aged .deb; the build publishes its
    /// lock and fills the pool, which exports whole.
    fn builds_from_pool(&self) {
        let t = self.t.path();
        let pool_dir = t.join("pool");
        Pool::open(&pool_dir)
            .expect("pool")
            .add(&self.aged_pkg, &self.deb)
            .expect("add aged deb");
        let out2 = t.join("from-pool");
        let started = std::time::Instant::now();
        let s = keel(&[
            "build",
            self.def_s(),
            "--out",
            out2.to_str().expect("utf8"),
            "--cache-dir",
            &self.cache,
            "--pool",
            pool_dir.to_str().expect("utf8"),
            "--json",
        ])
        .unwrap_or_else(|e| panic!("build from the pool: {e}"));
        keel_testbed::report!(
            "stale_lock: build from the pool took {:.0} s",
            started.elapsed().as_secs_f64()
        );
        let s: serde_json::Value = serde_json::from_str(&s).expect("json");
        assert_eq!(s["from-pool"], 1, "{s}");
        assert_eq!(s["relocked"], false, "{s}");
        let manifest =
            std::fs::read_to_string(out2.join("test-tiny.manifest.json")).expect("manifest");
        let aged_version = &self.aged_version;
        assert!(
            manifest.contains(&format!("\"version\":\"{aged_version}\""))
                || manifest.contains(&format!("\"version\": \"{aged_version}\"")),
            "the image has {AGED} {aged_version}"
        );
        let used = Lock::parse(
            &std::fs::read_to_string(out2.join("packages.lock")).expect("published lock"),
            &out2.join("packages.lock"),
        )
        .expect("parse published lock");
        assert_eq!(used, self.lock, "the build publishes the lock it used");
        // The build filled the pool with everything else it downloaded, so the
        // pool can be exported whole next to the release.
        let export = t.join("export");
        keel(&[
            "pool",
            "export",
            out2.join("packages.lock").to_str().expect("utf8"),
            export.to_str().expect("utf8"),
            "--pool",
            pool_dir.to_str().expect("utf8"),
        ])
        .unwrap_or_else(|e| panic!("pool export: {e}"));
        let exported = Pool::open(&export).expect("exported pool");
        assert!(self
            .lock
            .all_packages()
            .iter()
            .all(|p| exported.contains(p)));
    }

    /// Step 3, `--relock` without a pool: today's archive. The output
    /// directory is the one the other image tests share, so this is usually
    /// the build they reuse (or reuse theirs).
    fn relock_builds(&self) {
        let _guard = common::lock_image("test-tiny");
        let images = common::images_dir();
        let out3 = images.join("test-tiny");
        let s = keel(&[
            "build",
            self.def_s(),
            "--out",
            out3.to_str().expect("utf8"),
            "--cache-dir",
            &self.cache,
            "--pool",
            self.empty_pool_s(),
            "--relock",
            "--json",
        ])
        .unwrap_or_else(|e| panic!("--relock build: {e}"));
        let s: serde_json::Value = serde_json::from_str(&s).expect("json");
        assert_eq!(s["relocked"], true, "{s}");
        let relocked = Lock::parse(
            &std::fs::read_to_string(out3.join("packages.lock")).expect("published lock"),
            &out3.join("packages.lock"),
        )
        .expect("parse");
        let now = relocked
            .packages
            .iter()
            .find(|p| p.name == AGED)
            .expect("tpm2-tools");
        assert_ne!(
            now.version, self.aged_version,
            "re-resolved to the archive's"
        );
        assert!(out3.join("test-tiny.raw").is_file());
    }
}

#[test]
fn aged_lock_strict_refuses_pool_builds_relock_builds() {
    if let Some(why) = skip_reason() {
        keel_testbed::report_skip(format_args!(
            "aged_lock_strict_refuses_pool_builds_relock_builds: {why}"
        ));
        return;
    }
    let aged = Aged::new();
    aged.strict_refuses();
    aged.builds_from_pool();
    aged.relock_builds();
}
