//! GitOps sync against a real HTTPS Git server (git http-backend, keel-testbed):
//! signed bundles applied, unsigned / wrong key / tampered refused with the
//! previous release kept, failing health check rolled back, server down,
//! mTLS, and a bundle signed by the real `cosign` CLI. Replay and rollback:
//! gitops_rollback.rs.

mod gitops_bed;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use gitops_bed::{bed, first_release, rel, REPO, STORE};
use keel_bootstrap::gitops::manifest::Header;
use keel_bootstrap::gitops::{self, manifest, ClientTls, GitopsError, SyncOutcome};
use keel_testbed::git::GitServerOptions;
use p256::ecdsa::SigningKey;

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
    // Out of reach: first boot waits for the server instead of giving up.
    assert!(matches!(err, GitopsError::Unreachable { .. }), "{err:?}");
    assert!(err.is_transient(), "{err}");
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
    // The server answered and refused: waiting would not help.
    assert!(matches!(err, GitopsError::Fetch { .. }), "{err:?}");
    assert!(!err.is_transient(), "{err}");
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
