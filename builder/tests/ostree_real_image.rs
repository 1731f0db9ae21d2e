//! The release repository on real images: images/test-tiny built twice
//! with `keel build` (mkosi), the second with one more file and version
//! 0.1.1, both signed, committed, published; a node on the first pulls the
//! second over HTTPS through the static delta. Prints the delta's size
//! against the full commit and the disk image.
//!
//! The first build is the one build_image.rs and qemu-tests use
//! (images_dir()/test-tiny, skipped when current); the second goes to
//! images_dir()/test-tiny-ostree-b. Needs root and mkosi (./setup.sh).
//!
//! A slow opt-in tier (about 18 minutes on the 2-core reference machine: a
//! second image build and two commits of a 900 MB image): it runs only with
//! `KEEL_TEST_OSTREE_IMAGE=1`. The repository mechanics (signing, deltas,
//! HTTPS pulls, refusals) run on every CI in ostree_repo.rs.

use std::path::{Path, PathBuf};

use keel_builder::ostree as kostree;

mod common;
mod ostree_support;
use ostree_support::{Client, Keys, PASSWORD};

/// Builds the definition in `src` into images_dir()/`out_name` (a no-op
/// when its inputs did not change) and returns the output directory.
fn build(src: &Path, out_name: &str) -> PathBuf {
    let _lock = common::lock_image(out_name);
    let out = common::images_dir().join(out_name);
    let started = std::time::Instant::now();
    common::keel(&[
        "build",
        src.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
        "--cache-dir",
        &common::cache_dir(),
        "--json",
        "--relock",
    ])
    .unwrap_or_else(|e| panic!("keel build {}: {e}", src.display()));
    keel_testbed::report!(
        "ostree_real_image: keel build {out_name}: {:.0} s",
        started.elapsed().as_secs_f64()
    );
    out
}

/// The definition of the second release: test-tiny, version 0.1.1, one
/// more file (64 KiB of text). Written to a fixed place so a rerun finds
/// its build current.
fn second_definition() -> PathBuf {
    let src = common::repo().join("images/test-tiny");
    let dir = common::images_dir().join("test-tiny-ostree-b.def");
    let _ = std::fs::remove_dir_all(&dir);
    ostree_support::copy_tree(&src, &dir);
    let toml = std::fs::read_to_string(dir.join("image.toml")).expect("image.toml");
    let text = hex::encode(ostree_support::filler(42, 32 * 1024));
    let toml = toml.replacen("version = \"0.1.0\"", "version = \"0.1.1\"", 1)
        + &format!("\n[[files.file]]\npath = \"/usr/share/keel-update-test/payload\"\ncontent = \"{text}\"\n");
    std::fs::write(dir.join("image.toml"), toml).expect("write image.toml");
    dir
}

/// A signed copy of the release in `out` (hard links; the build's own
/// directory, shared with other tests, stays unsigned).
fn signed_copy(out: &Path, dest: &Path, keys: &Keys) {
    std::fs::create_dir_all(dest).expect("dest");
    let text = std::fs::read_to_string(out.join("manifest.json")).expect("manifest");
    let m = keel_manifest::parse(&text).expect("parse manifest");
    let names = m
        .artifacts
        .iter()
        .map(|a| a.name.as_str())
        .chain(["manifest.json"]);
    for n in names {
        if std::fs::hard_link(out.join(n), dest.join(n)).is_err() {
            std::fs::copy(out.join(n), dest.join(n)).expect("copy artifact");
        }
    }
    keel_builder::release::sign_dir(dest, &keys.cosign_key, PASSWORD.as_bytes())
        .expect("sign release");
}

#[test]
fn test_tiny_update_is_a_small_signed_delta() {
    if std::env::var_os("KEEL_TEST_OSTREE_IMAGE").is_none() {
        keel_testbed::report_not_selected(format_args!(
            "test_tiny_update_is_a_small_signed_delta: set KEEL_TEST_OSTREE_IMAGE=1 (two image builds, ~18 min)"
        ));
        return;
    }
    let why = ostree_support::skip_reason()
        .or_else(|| common::build_skip_reason(&["mkosi", "qemu-img", "sfdisk", "systemd-repart"]));
    if let Some(why) = why {
        keel_testbed::skip(why);
        return;
    }
    let a_out = build(&common::repo().join("images/test-tiny"), "test-tiny");
    let b_out = build(&second_definition(), "test-tiny-ostree-b");

    let keys = Keys::new();
    let work = tempfile::Builder::new()
        .prefix("ostree-real-")
        .tempdir_in(common::images_dir())
        .expect("tmp");
    let w = work.path();
    signed_copy(&a_out, &w.join("rel-a"), &keys);
    signed_copy(&b_out, &w.join("rel-b"), &keys);
    let repo = w.join("srv/repo");
    kostree::init(&repo).expect("init");
    let signer = keys.signer();
    let opts = kostree::commit::CommitOptions {
        cosign_pub: &keys.cosign_pub,
        signer: &signer,
        channel: "stable",
    };
    let ca = kostree::commit::commit_release(&repo, &w.join("rel-a"), &opts).expect("commit a");
    let cb = kostree::commit::commit_release(&repo, &w.join("rel-b"), &opts).expect("commit b");
    keel_testbed::report!(
        "ostree_real_image: committed 0.1.0 in {:.0} s, 0.1.1 in {:.0} s",
        ca.seconds,
        cb.seconds
    );
    assert_eq!(cb.parent.as_deref(), Some(ca.commit.as_str()));
    assert_eq!(cb.refname, "keel/test-tiny/x86_64/stable");
    assert!(cb.uki_path.starts_with("/boot/EFI/Linux/"), "{cb:?}");
    let rec: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(b_out.join("build-record.json")).expect("record"),
    )
    .expect("record json");
    assert_eq!(
        cb.verity_roothash.as_deref(),
        rec["verity-roothash"].as_str(),
        "the commit names the build's verity root hash"
    );

    let report = kostree::publish::publish(
        &repo,
        &signer,
        &kostree::publish::PublishOptions {
            deltas: 1,
            from_scratch: false,
        },
    )
    .expect("publish");
    let delta = report
        .deltas
        .iter()
        .find(|d| d.from.as_deref() == Some(ca.commit.as_str()))
        .expect("delta a -> b");
    let full = kostree::publish::commit_size(&repo, &cb.commit).expect("commit size");
    let raw = std::fs::metadata(b_out.join("test-tiny.raw"))
        .expect("raw")
        .len();
    let qcow = std::fs::metadata(b_out.join("test-tiny.qcow2"))
        .expect("qcow2")
        .len();
    keel_testbed::report!(
        "ostree_real_image: one-file update of test-tiny: delta {} bytes = {:.3} % of the full commit ({} bytes compressed objects), {:.3} % of the raw image ({raw}), {:.3} % of the qcow2 ({qcow})",
        delta.size,
        100.0 * delta.size as f64 / full as f64,
        full,
        100.0 * delta.size as f64 / raw as f64,
        100.0 * delta.size as f64 / qcow as f64
    );
    assert!(
        delta.size > 0 && delta.size < full,
        "delta smaller than the commit"
    );

    // A node on 0.1.0 updates over HTTPS, signatures checked, through the delta.
    let server = keel_testbed::StaticServer::start(&w.join("srv")).expect("https server");
    let node = Client::new(
        &format!("{}repo/", server.url()),
        &keys.ostree_pub,
        &server.ca_path(),
    );
    let t = std::time::Instant::now();
    node.pull(&ca.commit).expect("pull 0.1.0");
    keel_testbed::report!(
        "ostree_real_image: first pull (loose objects): {:.0} s",
        t.elapsed().as_secs_f64()
    );
    server.clear_requests();
    let out = node.pull(&cb.refname).expect("pull update");
    let sent: u64 = server.requests().iter().map(|r| r.bytes).sum();
    keel_testbed::report!(
        "ostree_real_image: update pull said: {}; the server sent {sent} bytes = {:.3} % of the raw image",
        out.trim(),
        100.0 * sent as f64 / raw as f64
    );
    // Sanity only (sizes are reported, not asserted): less than the release.
    assert!(
        sent < full,
        "an update downloads less than the release: {sent} of {full}"
    );
    let dir =
        kostree::publish::delta_dir(Path::new("/repo"), Some(&ca.commit), &cb.commit).expect("dir");
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.path.starts_with(dir.to_str().expect("utf8"))),
        "update through the static delta: {:?}",
        server.requests()
    );
    let payload = node
        .ostree(&["cat", &cb.commit, "/usr/share/keel-update-test/payload"])
        .expect("cat payload");
    assert_eq!(payload.len(), 64 * 1024);
    let uki = node
        .ostree(&["ls", &cb.commit, &cb.uki_path])
        .expect("uki in the commit");
    assert!(uki.contains(&cb.uki_path), "{uki}");
}
