//! Anti-rollback of GitOps bundles against a real HTTPS Git server: the
//! signed header's store, ref and serial. A replayed bundle (same serial), an
//! older serial (the old signed commit force-pushed), another store's and
//! another ref's bundle are refused with their own errors, the current
//! release and its persisted serial stay; a newer serial is applied; the old
//! v1 manifest without a header is refused.

mod gitops_bed;

use std::fs;

use base64::Engine;
use gitops_bed::{bed, first_release, rel, Bed, REPO, STORE};
use keel_bootstrap::gitops::manifest::Header;
use keel_bootstrap::gitops::{self, manifest, GitopsError, SyncOutcome};
use keel_cmd::CommandRunExt as _;
use keel_testbed::git::GitServerOptions;
use p256::ecdsa::signature::Signer;

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
