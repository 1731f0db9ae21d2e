//! GitOps sync against a real HTTPS Git server (git http-backend, keel-testbed):
//! signed bundles applied, unsigned / wrong key / tampered refused with the
//! previous release kept, replayed / older serial / another store's / another
//! ref's bundles refused (anti-rollback), failing health check rolled back,
//! server down, mTLS, and a bundle signed by the real `cosign` CLI.

use std::cell::Cell;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use keel_bootstrap::gitops::manifest::Header;
use keel_bootstrap::gitops::{self, manifest, ClientTls, GitopsError, SyncConfig, SyncOutcome};
use keel_cmd::CommandRunExt as _;
use keel_testbed::git::GitServerOptions;
use keel_testbed::{or_skip, GitServer};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::SigningKey;
use p256::pkcs8::{EncodePublicKey, LineEnding};

const REPO: &str = "bundle";
const STORE: &str = "store-0042";

struct Bed {
    server: GitServer,
    key: SigningKey,
    dir: tempfile::TempDir,
    /// The serial of the last bundle [`Bed::publish`] signed.
    serial: Cell<u64>,
}

fn bed(opts: GitServerOptions) -> Option<Bed> {
    let server = or_skip(GitServer::start(opts))?;
    server.create_repo(REPO).expect("repo");
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("pem");
    fs::write(dir.path().join("trust.pem"), pem).expect("trust root");
    Some(Bed {
        server,
        key,
        dir,
        serial: Cell::new(0),
    })
}

impl Bed {
    fn config(&self) -> SyncConfig {
        SyncConfig {
            store: STORE.into(),
            url: self.server.repo_url(REPO),
            reference: "main".into(),
            trust_root: self.dir.path().join("trust.pem"),
            ca_bundle: Some(self.server.ca_path()),
            client_tls: None,
            root: self.dir.path().join("bundle"),
            health_check: Vec::new(),
        }
    }

    fn work(&self) -> PathBuf {
        self.server.work_dir(REPO).expect("work dir")
    }

    /// Writes `files` into the work tree, then (if `key`) signs the tree for
    /// this store, ref `main` and the next serial, and pushes.
    /// `edit_after_signing` changes the tree after the manifest was made.
    fn publish(
        &self,
        files: &[(&str, &str)],
        key: Option<&SigningKey>,
        edit_after_signing: Option<(&str, &str)>,
    ) -> String {
        self.serial.set(self.serial.get() + 1);
        let header = Header::new(STORE, "main", self.serial.get()).expect("header");
        self.publish_as(files, key, edit_after_signing, &header)
    }

    /// [`Bed::publish`] with the signed header given.
    fn publish_as(
        &self,
        files: &[(&str, &str)],
        key: Option<&SigningKey>,
        edit_after_signing: Option<(&str, &str)>,
        header: &Header,
    ) -> String {
        let w = self.work();
        for (p, c) in files {
            let path = w.join(p);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(&path, c).expect("write");
            if p.ends_with(".sh") || p.ends_with("health-check") {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
            }
        }
        let _ = fs::remove_dir_all(w.join(".keel/sig-tmp"));
        match key {
            Some(k) => {
                let m = manifest::build(&w, header).expect("manifest");
                let sig: p256::ecdsa::Signature = k.sign(m.as_bytes());
                let b64 = base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes());
                fs::create_dir_all(w.join(".keel")).expect("mkdir");
                fs::write(w.join(manifest::MANIFEST_PATH), m).expect("manifest");
                fs::write(w.join(manifest::SIGNATURE_PATH), b64).expect("signature");
            }
            None => {
                let _ = fs::remove_file(w.join(manifest::MANIFEST_PATH));
                let _ = fs::remove_file(w.join(manifest::SIGNATURE_PATH));
            }
        }
        if let Some((p, c)) = edit_after_signing {
            fs::write(w.join(p), c).expect("tamper");
        }
        self.server
            .commit_and_push(REPO, "main", &[], "bundle")
            .expect("push")
    }

    /// The persisted sync state (`state.json`).
    fn state(&self) -> gitops::SyncState {
        gitops::Releases::open(&self.dir.path().join("bundle"))
            .expect("releases")
            .state()
            .expect("state")
    }

    fn current(&self) -> PathBuf {
        fs::read_link(self.dir.path().join("bundle/current")).expect("current link")
    }

    fn releases(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.dir.path().join("bundle/releases"))
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

fn rel(rev: &str) -> PathBuf {
    Path::new("releases").join(rev)
}

/// A signed first release, applied; returns its revision.
fn first_release(b: &Bed) -> String {
    let rev = b.publish(&[("app/config.yaml", "replicas: 1\n")], Some(&b.key), None);
    let t = std::time::Instant::now();
    let out = gitops::apply_latest(&b.config()).expect("first sync");
    eprintln!("first sync (fetch + verify + apply): {:?}", t.elapsed());
    assert_eq!(
        out,
        SyncOutcome::Applied {
            rev: rev.clone(),
            previous: None
        }
    );
    rev
}

#[test]
fn signed_bundles_are_applied_and_previous_kept() {
    let Some(b) = bed(GitServerOptions::default()) else {
        return;
    };
    let rev1 = first_release(&b);
    assert_eq!(b.current(), rel(&rev1));
    let cur = b.dir.path().join("bundle/current");
    assert_eq!(
        fs::read_to_string(cur.join("app/config.yaml")).expect("file"),
        "replicas: 1\n"
    );
    assert_eq!(
        gitops::apply_latest(&b.config()).expect("again"),
        SyncOutcome::UpToDate { rev: rev1.clone() }
    );

    let rev2 = b.publish(
        &[
            ("app/config.yaml", "replicas: 2\n"),
            ("bin/run.sh", "#!/bin/sh\n"),
        ],
        Some(&b.key),
        None,
    );
    let t = std::time::Instant::now();
    let out = gitops::apply_latest(&b.config()).expect("update");
    eprintln!("update sync: {:?}", t.elapsed());
    assert_eq!(
        out,
        SyncOutcome::Applied {
            rev: rev2.clone(),
            previous: Some(rev1.clone())
        }
    );
    assert_eq!(b.current(), rel(&rev2));
    assert_eq!(
        fs::read_to_string(cur.join("app/config.yaml")).expect("file"),
        "replicas: 2\n"
    );
    let mode = fs::metadata(cur.join("bin/run.sh"))
        .expect("stat")
        .permissions()
        .mode();
    assert!(mode & 0o111 != 0, "executable bit kept");
    let mut want = vec![rev1, rev2];
    want.sort();
    assert_eq!(b.releases(), want, "current and last good release kept");
}

#[test]
fn unsigned_wrong_key_and_tampered_bundles_are_refused() {
    let Some(b) = bed(GitServerOptions::default()) else {
        return;
    };
    let rev1 = first_release(&b);
    let other = SigningKey::random(&mut rand::rngs::OsRng);
    type Case<'a> = (
        &'a str,
        Option<&'a SigningKey>,
        Option<(&'a str, &'a str)>,
        &'a str,
    );
    let cases: [Case; 4] = [
        ("unsigned", None, None, "unsigned"),
        ("wrong key", Some(&other), None, "does not verify"),
        (
            "changed after signing",
            Some(&b.key),
            Some(("app/config.yaml", "replicas: 99\n")),
            "app/config.yaml changed",
        ),
        (
            "file added after signing",
            Some(&b.key),
            Some(("app/extra.yaml", "x\n")),
            "app/extra.yaml added",
        ),
    ];
    for (name, key, edit, want) in cases {
        b.publish(&[("app/config.yaml", &format!("# {name}\n"))], key, edit);
        let err = gitops::apply_latest(&b.config()).expect_err(name);
        eprintln!("{name}: {err}");
        assert!(err.to_string().contains(want), "{name}: {err}");
        assert!(
            matches!(
                err,
                GitopsError::Unsigned { .. } | GitopsError::Refused { .. }
            ),
            "{name}: {err:?}"
        );
        assert_eq!(
            b.current(),
            rel(&rev1),
            "{name}: previous release stays current"
        );
        assert_eq!(
            b.releases(),
            vec![rev1.clone()],
            "{name}: nothing of the refused bundle is left"
        );
    }
}

/// Checks that a refused sync kept `rev` current with its serial and left
/// nothing of the refused bundle but the kept releases.
fn assert_kept(b: &Bed, name: &str, rev: &str, serial: u64, releases: &[&str]) {
    assert_eq!(b.current(), rel(rev), "{name}: current release stays");
    let st = b.state();
    assert_eq!(st.current.as_deref(), Some(rev), "{name}: state current");
    assert_eq!(st.serial, Some(serial), "{name}: applied serial unchanged");
    let mut want: Vec<String> = releases.iter().map(|r| r.to_string()).collect();
    want.sort();
    assert_eq!(b.releases(), want, "{name}: no staging tree left");
}

#[test]
fn replayed_older_other_store_and_other_ref_bundles_are_refused() {
    let Some(b) = bed(GitServerOptions::default()) else {
        return;
    };
    let rev1 = first_release(&b);
    assert_eq!(
        b.state().serial,
        Some(1),
        "serial persisted with the revision"
    );
    // A newer serial is applied.
    let rev2 = b.publish(&[("app/config.yaml", "replicas: 2\n")], Some(&b.key), None);
    assert_eq!(
        gitops::apply_latest(&b.config()).expect("serial 2"),
        SyncOutcome::Applied {
            rev: rev2.clone(),
            previous: Some(rev1.clone())
        }
    );
    let st = b.state();
    assert_eq!(
        (st.current.as_deref(), st.serial),
        (Some(rev2.as_str()), Some(2))
    );
    let kept = [rev1.as_str(), rev2.as_str()];

    // Replay: the signed tree of serial 2 again, as a new commit (same
    // manifest, same signature).
    let replay = b
        .server
        .commit_and_push(REPO, "main", &[], "replay of serial 2")
        .expect("push");
    assert_ne!(replay, rev2);
    let err = gitops::apply_latest(&b.config()).expect_err("replay");
    eprintln!("replay: {err}");
    assert!(
        matches!(&err, GitopsError::Replayed { rev, serial: 2 } if *rev == replay),
        "{err:?}"
    );
    assert!(err.to_string().contains("replayed bundle"), "{err}");
    assert_kept(&b, "replay", &rev2, 2, &kept);

    // Rollback: the old signed commit of serial 1 force-pushed to main.
    b.server
        .git()
        .arg("-C")
        .arg(b.work())
        .args([
            "push",
            "-q",
            "-f",
            "origin",
            &format!("{rev1}:refs/heads/main"),
        ])
        .run()
        .expect("force-push the old commit");
    let err = gitops::apply_latest(&b.config()).expect_err("rollback");
    eprintln!("older serial: {err}");
    assert!(
        matches!(&err, GitopsError::Rollback { rev, serial: 1, applied: 2 } if *rev == rev1),
        "{err:?}"
    );
    assert!(err.to_string().contains("rollback"), "{err}");
    assert_kept(&b, "older serial", &rev2, 2, &kept);

    // Another store's bundle, correctly signed, with a high serial.
    let other = Header::new("store-0099", "main", 10).expect("header");
    let rev = b.publish_as(
        &[("app/config.yaml", "store: 99\n")],
        Some(&b.key),
        None,
        &other,
    );
    let err = gitops::apply_latest(&b.config()).expect_err("other store");
    eprintln!("other store: {err}");
    assert!(
        matches!(&err, GitopsError::OtherStore { rev: r, signed_for, ours } if *r == rev && signed_for == "store-0099" && ours == STORE),
        "{err:?}"
    );
    assert_kept(&b, "other store", &rev2, 2, &kept);

    // A bundle signed for another ref (staging), pushed to main.
    let staging = Header::new(STORE, "staging", 11).expect("header");
    let rev = b.publish_as(
        &[("app/config.yaml", "staging\n")],
        Some(&b.key),
        None,
        &staging,
    );
    let err = gitops::apply_latest(&b.config()).expect_err("other ref");
    eprintln!("other ref: {err}");
    assert!(
        matches!(&err, GitopsError::OtherRef { rev: r, signed_for, ours } if *r == rev && signed_for == "staging" && ours == "main"),
        "{err:?}"
    );
    assert!(err.to_string().contains("--ref main"), "{err}");
    assert_kept(&b, "other ref", &rev2, 2, &kept);

    // Serial 3 is applied: the refused serials 10 and 11 were not recorded.
    let rev3 = b.publish(&[("app/config.yaml", "replicas: 3\n")], Some(&b.key), None);
    assert_eq!(b.serial.get(), 3);
    assert_eq!(
        gitops::apply_latest(&b.config()).expect("serial 3"),
        SyncOutcome::Applied {
            rev: rev3.clone(),
            previous: Some(rev2.clone())
        }
    );
    let st = b.state();
    assert_eq!(
        (st.current.as_deref(), st.serial),
        (Some(rev3.as_str()), Some(3))
    );
    assert_eq!(
        fs::read_to_string(b.dir.path().join("bundle/current/app/config.yaml")).expect("file"),
        "replicas: 3\n"
    );
}

#[test]
fn bundle_in_the_old_v1_format_is_refused() {
    let Some(b) = bed(GitServerOptions::default()) else {
        return;
    };
    let w = b.work();
    fs::write(w.join("a.txt"), "a\n").expect("write");
    let h = Header::new(STORE, "main", 1).expect("header");
    // A v1 manifest: the v2 text without its three header lines.
    let v2 = manifest::build(&w, &h).expect("manifest");
    let v1 = v2.replacen(
        "keel-bundle-manifest v2\nstore store-0042\nref main\nserial 1\n",
        "keel-bundle-manifest v1\n",
        1,
    );
    let sig: p256::ecdsa::Signature = b.key.sign(v1.as_bytes());
    fs::create_dir_all(w.join(".keel")).expect("mkdir");
    fs::write(w.join(manifest::MANIFEST_PATH), v1).expect("manifest");
    fs::write(
        w.join(manifest::SIGNATURE_PATH),
        base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes()),
    )
    .expect("signature");
    b.server
        .commit_and_push(REPO, "main", &[], "v1")
        .expect("push");
    let err = gitops::apply_latest(&b.config()).expect_err("v1");
    eprintln!("v1: {err}");
    assert!(matches!(err, GitopsError::Refused { .. }), "{err:?}");
    assert!(
        err.to_string().contains("format v1 carries no store"),
        "{err}"
    );
    assert!(!b.dir.path().join("bundle/current").exists());
}

#[test]
fn failing_health_check_rolls_back() {
    let Some(b) = bed(GitServerOptions::default()) else {
        return;
    };
    let rev1 = first_release(&b);
    let rev2 = b.publish(
        &[(
            ".keel/health-check",
            "#!/bin/sh\necho 'service did not come up' >&2\nexit 1\n",
        )],
        Some(&b.key),
        None,
    );
    let err = gitops::apply_latest(&b.config()).expect_err("health check fails");
    eprintln!("{err}");
    assert!(
        matches!(&err, GitopsError::RolledBack { rev, restored, .. } if *rev == rev2 && *restored == rev1),
        "{err:?}"
    );
    assert!(err.to_string().contains("service did not come up"), "{err}");
    assert_eq!(b.current(), rel(&rev1));
    assert_eq!(b.releases(), vec![rev1.clone()]);
    // The same bad revision is not applied again on the next timer run.
    assert!(matches!(
        gitops::apply_latest(&b.config()),
        Err(GitopsError::KnownBad { .. })
    ));
    assert_eq!(b.current(), rel(&rev1));
    // A configured health check that passes lets the next revision through.
    let rev3 = b.publish(
        &[(".keel/health-check", "#!/bin/sh\ntest -f app/config.yaml\n")],
        Some(&b.key),
        None,
    );
    let out = gitops::apply_latest(&b.config()).expect("healthy");
    assert_eq!(
        out,
        SyncOutcome::Applied {
            rev: rev3,
            previous: Some(rev1)
        }
    );
}

#[test]
fn server_down_is_an_error_and_previous_stays() {
    let Some(mut b) = bed(GitServerOptions::default()) else {
        return;
    };
    let rev1 = first_release(&b);
    b.server.stop();
    let err = gitops::apply_latest(&b.config()).expect_err("server down");
    eprintln!("{err}");
    assert!(matches!(err, GitopsError::Fetch { .. }), "{err:?}");
    assert_eq!(b.current(), rel(&rev1));
    b.server.start_again().expect("server back");
    assert_eq!(
        gitops::apply_latest(&b.config()).expect("back"),
        SyncOutcome::UpToDate { rev: rev1 }
    );
}

#[test]
fn mtls_client_certificate_is_presented() {
    let Some(b) = bed(GitServerOptions {
        require_client_cert: true,
        ..GitServerOptions::default()
    }) else {
        return;
    };
    let rev = b.publish(&[("a.txt", "a\n")], Some(&b.key), None);
    let err = gitops::apply_latest(&b.config()).expect_err("no client certificate");
    assert!(matches!(err, GitopsError::Fetch { .. }), "{err:?}");
    let node = b
        .server
        .client_cert("node1.store.test")
        .expect("client cert");
    let (cert, key) = node.write(b.dir.path(), "node").expect("write cert");
    let mut cfg = b.config();
    cfg.client_tls = Some(ClientTls { cert, key });
    assert_eq!(
        gitops::apply_latest(&cfg).expect("mTLS"),
        SyncOutcome::Applied {
            rev,
            previous: None
        }
    );
}

#[test]
fn bundle_signed_with_the_cosign_cli_is_accepted() {
    if keel_testbed::which("cosign").is_none() {
        keel_testbed::skip("cosign is not installed");
        return;
    }
    let Some(b) = bed(GitServerOptions::default()) else {
        return;
    };
    let w = b.work();
    fs::write(w.join("a.txt"), "from cosign\n").expect("write");
    let header = Header::new(STORE, "main", 1).expect("header");
    let m = manifest::build(&w, &header).expect("manifest");
    fs::create_dir_all(w.join(".keel")).expect("mkdir");
    fs::write(w.join(manifest::MANIFEST_PATH), &m).expect("manifest");
    let keys = b.dir.path().join("keys");
    fs::create_dir_all(&keys).expect("mkdir");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("cosign")
            .args(args)
            .current_dir(&keys)
            .env("COSIGN_PASSWORD", "")
            .output()
            .expect("cosign");
        assert!(
            out.status.success(),
            "cosign {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf8")
    };
    run(&["generate-key-pair"]);
    let manifest_path = w.join(manifest::MANIFEST_PATH);
    let sig = run(&[
        "sign-blob",
        "--yes",
        "--tlog-upload=false",
        "--key",
        "cosign.key",
        manifest_path.to_str().expect("path"),
    ]);
    fs::write(w.join(manifest::SIGNATURE_PATH), sig.trim()).expect("signature");
    fs::copy(keys.join("cosign.pub"), b.dir.path().join("trust.pem")).expect("trust root");
    let rev = b
        .server
        .commit_and_push(REPO, "main", &[], "cosign-signed")
        .expect("push");
    assert_eq!(
        gitops::apply_latest(&b.config()).expect("cosign bundle"),
        SyncOutcome::Applied {
            rev,
            previous: None
        }
    );
}
