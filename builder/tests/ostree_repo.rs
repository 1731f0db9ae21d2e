//! The release repository with the real libostree and the real `ostree`
//! CLI: signed releases committed, deltas and a signed summary published,
//! the repository served over HTTPS and pulled by a client that checks
//! signatures, uses the static delta, and refuses a commit signed by
//! another key, a tampered object, a tampered summary and a wrong CA.
//! The real-image test (images/test-tiny, built twice) is in
//! ostree_real_image.rs.

use std::path::Path;

use keel_builder::ostree as kostree;

mod ostree_support;
use ostree_support::{copy_tree, keel, make_release, skip_reason, write_tree, Client, Keys};

/// The commit's string metadata value (`ostree show --print-metadata-key`).
fn meta_of(client: &Client, commit: &str, key: &str) -> String {
    let out = client
        .ostree(&["show", &format!("--print-metadata-key={key}"), commit])
        .expect("show metadata");
    out.trim().trim_matches('\'').to_string()
}

fn commit_json(repo: &Path, release: &Path, keys: &Keys) -> serde_json::Value {
    let out = keel(&[
        "repo",
        "commit",
        "--repo",
        repo.to_str().expect("utf8"),
        release.to_str().expect("utf8"),
        "--key",
        keys.cosign_pub.to_str().expect("utf8"),
        "--json",
    ])
    .unwrap_or_else(|e| panic!("keel repo commit: {e}"));
    serde_json::from_str(&out).expect("commit json")
}

#[test]
fn releases_commit_publish_and_pull_over_https_with_signatures_and_deltas() {
    if let Some(why) = skip_reason() {
        keel_testbed::skip(why);
        return;
    }
    let keys = Keys::new();
    let work = tempfile::tempdir().expect("tmp");
    let w = work.path();
    let (repo, serve) = (w.join("srv/good"), w.join("srv"));
    keel(&["repo", "init", repo.to_str().expect("utf8")]).expect("keel repo init");

    // Two releases: 1.0.0, then 1.0.1 with one file changed and one added.
    for (v, change) in [("1.0.0", false), ("1.0.1", true)] {
        write_tree(&w.join(format!("tree-{v}")), v, change);
        make_release(
            &w.join(format!("tree-{v}")),
            &w.join(format!("rel-{v}")),
            v,
            &keys.cosign_key,
        );
    }
    let c1 = commit_json(&repo, &w.join("rel-1.0.0"), &keys);
    assert_eq!(c1["ref"], "keel/synth/x86_64/stable", "{c1}");
    assert_eq!(c1["uki-path"], "/boot/EFI/Linux/synth.efi", "{c1}");
    let again = commit_json(&repo, &w.join("rel-1.0.0"), &keys);
    assert_eq!(again["unchanged"], true, "same release twice: {again}");
    assert_eq!(again["commit"], c1["commit"]);
    let c2 = commit_json(&repo, &w.join("rel-1.0.1"), &keys);
    assert_eq!(c2["parent"], c1["commit"], "{c2}");
    let (v1, v2) = (
        c1["commit"].as_str().expect("c1").to_string(),
        c2["commit"].as_str().expect("c2").to_string(),
    );

    // A release that does not verify is refused, saying what to do.
    let bad = w.join("rel-bad");
    copy_tree(&w.join("rel-1.0.1"), &bad);
    std::fs::write(bad.join("synth.efi"), b"swapped").expect("tamper");
    let err = keel(&[
        "repo",
        "commit",
        "--repo",
        repo.to_str().expect("utf8"),
        bad.to_str().expect("utf8"),
        "--key",
        keys.cosign_pub.to_str().expect("utf8"),
    ])
    .expect_err("tampered release")
    .to_string();
    assert!(
        err.contains("does not verify") && err.contains("synth.efi"),
        "{err}"
    );

    let out = keel(&[
        "publish",
        "--repo",
        repo.to_str().expect("utf8"),
        "--ostree-key",
        keys.ostree_key.to_str().expect("utf8"),
        "--deltas",
        "3",
        "--from-scratch",
        "--json",
    ])
    .expect("keel publish");
    let report: serde_json::Value = serde_json::from_str(&out).expect("publish json");
    let deltas = report["deltas"].as_array().expect("deltas");
    let size_of = |from: Option<&str>| {
        deltas
            .iter()
            .find(|d| d["from"].as_str() == from && d["to"] == v2.as_str())
            .and_then(|d| d["size"].as_u64())
            .unwrap_or_else(|| panic!("delta from {from:?} in {report}"))
    };
    let (small, full) = (size_of(Some(&v1)), size_of(None));
    assert!(small > 0 && small < full, "delta {small} vs scratch {full}");
    keel_testbed::report!(
        "ostree_repo: synthetic release (2.6 MiB tree): delta 1.0.0 -> 1.0.1 {small} bytes, from scratch {full} bytes: {:.2} %",
        100.0 * small as f64 / full as f64
    );
    assert!(repo.join("summary.sig").is_file(), "summary signed");

    let log: serde_json::Value = serde_json::from_str(
        &keel(&[
            "repo",
            "log",
            "--repo",
            repo.to_str().expect("utf8"),
            "--json",
        ])
        .expect("log"),
    )
    .expect("log json");
    let commits = log[0]["commits"].as_array().expect("commits");
    assert_eq!(commits.len(), 2, "{log}");
    assert_eq!(commits[0]["commit"], v2.as_str());
    assert_eq!(commits[0]["version"], "1.0.1");
    assert!(commits.iter().all(|c| c["signed"] == true), "{log}");
    let from: Vec<&str> = commits[0]["deltas-from"]
        .as_array()
        .expect("deltas-from")
        .iter()
        .filter_map(|d| d.as_str())
        .collect();
    assert!(
        from.contains(&v1.as_str()) && from.contains(&"scratch"),
        "{log}"
    );

    // Attacks, each on its own copy of the published repository.
    let badkey = serve.join("badkey");
    copy_tree(&repo, &badkey);
    let other = Keys::new();
    write_tree(&w.join("tree-evil"), "6.6.6", true);
    make_release(
        &w.join("tree-evil"),
        &w.join("rel-evil"),
        "6.6.6",
        &keys.cosign_key,
    );
    kostree::commit::commit_release(
        &badkey,
        &w.join("rel-evil"),
        &kostree::commit::CommitOptions {
            cosign_pub: &keys.cosign_pub,
            signer: &other.signer(),
            channel: "stable",
        },
    )
    .expect("commit signed by another key");
    kostree::publish::publish(
        &badkey,
        &keys.signer(),
        &kostree::publish::PublishOptions {
            deltas: 1,
            from_scratch: false,
        },
    )
    .expect("publish badkey");

    let tampered_obj = serve.join("tampered-object");
    copy_tree(&repo, &tampered_obj);
    let ls = ostree_cli(&repo, &["ls", "-C", &v2, "/usr/bin/hello"]);
    let obj = ls
        .split_whitespace()
        .find(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("checksum in {ls}"))
        .to_string();
    let obj_path = tampered_obj.join(format!("objects/{}/{}.filez", &obj[..2], &obj[2..]));
    let mut bytes = std::fs::read(&obj_path).expect("object");
    let n = bytes.len();
    bytes[n - 5] ^= 0x55;
    std::fs::write(&obj_path, bytes).expect("tamper object");

    let tampered_sum = serve.join("tampered-summary");
    copy_tree(&repo, &tampered_sum);
    let sig = std::fs::read(tampered_sum.join("summary.sig")).expect("sig");
    ostree_cli(
        &tampered_sum,
        &["refs", "--create=keel/synth/x86_64/evil", &v1],
    );
    ostree_cli(&tampered_sum, &["summary", "-u"]);
    std::fs::write(tampered_sum.join("summary.sig"), sig).expect("old signature back");

    let server = keel_testbed::StaticServer::start(&serve).expect("https server");
    let url = |name: &str| format!("{}{name}/", server.url());
    let refname = "keel/synth/x86_64/stable";

    // A node on 1.0.0 updates to 1.0.1: signature checked, static delta used.
    let node = Client::new(&url("good"), &keys.ostree_pub, &server.ca_path());
    node.pull(&v1).unwrap_or_else(|e| panic!("pull 1.0.0: {e}"));
    server.clear_requests();
    let out = node
        .pull(refname)
        .unwrap_or_else(|e| panic!("pull update: {e}"));
    let delta_dir = kostree::publish::delta_dir(Path::new("/good"), Some(&v1), &v2).expect("dir");
    let reqs = server.requests();
    let fetched: Vec<&str> = reqs.iter().map(|r| r.path.as_str()).collect();
    assert!(
        fetched
            .iter()
            .any(|p| p.starts_with(delta_dir.to_str().expect("utf8"))),
        "the update used the static delta {}: {fetched:?}\n{out}",
        delta_dir.display()
    );
    assert!(
        !fetched.iter().any(|p| p.ends_with(".filez")),
        "no loose file objects with a delta: {fetched:?}"
    );
    let sent: u64 = reqs.iter().map(|r| r.bytes).sum();
    keel_testbed::report!(
        "ostree_repo: update pull said: {} (server sent {sent} bytes)",
        out.trim()
    );
    assert_eq!(
        node.ostree(&["rev-parse", &format!("keel:{refname}")])
            .expect("rev")
            .trim(),
        v2
    );
    assert_eq!(meta_of(&node, &v2, "version"), "1.0.1");
    let manifest = meta_of(&node, &v2, kostree::meta::MANIFEST_SHA256);
    assert_eq!(
        manifest,
        keel_builder::fsutil::sha256_file(&w.join("rel-1.0.1/manifest.json")).expect("sha")
    );
    let hello_sh = node.ostree(&["cat", &v2, "/usr/bin/hello"]).expect("cat");
    assert!(hello_sh.contains("hello 2"), "{hello_sh}");
    let owned = node
        .ostree(&["ls", &v2, "/var/lib/owned", "/usr/bin/suid"])
        .expect("ls");
    assert!(owned.contains("1000 1000"), "owner kept: {owned}");
    assert!(
        owned.contains("-04755") || owned.contains("4755"),
        "setuid kept: {owned}"
    );
    node.ostree(&["fsck"]).expect("fsck");

    // A fresh node: loose objects also work (no delta from nothing to 1.0.0).
    let fresh = Client::new(&url("good"), &keys.ostree_pub, &server.ca_path());
    fresh.pull(refname).expect("fresh pull (scratch delta)");

    let e = Client::new(&url("badkey"), &keys.ostree_pub, &server.ca_path())
        .pull(refname)
        .expect_err("commit signed by another key")
        .to_string();
    assert!(e.contains("GPG") || e.contains("signature"), "{e}");

    let c = Client::new(&url("tampered-object"), &keys.ostree_pub, &server.ca_path());
    let e = c
        .ostree(&["pull", "--disable-static-deltas", "keel", refname])
        .expect_err("tampered object")
        .to_string();
    // Depending on the byte: a checksum mismatch or a broken zlib stream.
    let l = e.to_lowercase();
    assert!(
        l.contains("corrupt") || l.contains("checksum") || l.contains("content object"),
        "{e}"
    );

    let e = Client::new(
        &url("tampered-summary"),
        &keys.ostree_pub,
        &server.ca_path(),
    )
    .pull(refname)
    .expect_err("tampered summary")
    .to_string();
    assert!(e.contains("GPG") || e.contains("signature"), "{e}");

    let wrong_ca = keel_testbed::TestCa::new("not the server's CA").expect("ca");
    let ca_file = w.join("wrong-ca.pem");
    std::fs::write(&ca_file, wrong_ca.cert_pem()).expect("ca");
    let e = Client::new(&url("good"), &keys.ostree_pub, &ca_file)
        .pull(refname)
        .expect_err("wrong CA")
        .to_string();
    assert!(
        e.to_lowercase().contains("certificate") || e.contains("SSL"),
        "{e}"
    );
}

fn ostree_cli(repo: &Path, args: &[&str]) -> String {
    use keel_cmd::CommandRunExt;
    std::process::Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(args)
        .run_get_string()
        .unwrap_or_else(|e| panic!("ostree {args:?}: {e}"))
}

#[test]
fn commit_without_a_repository_or_key_says_what_to_do() {
    let w = tempfile::tempdir().expect("tmp");
    let e = keel(&[
        "repo",
        "commit",
        "--repo",
        w.path().join("nope").to_str().expect("utf8"),
        w.path().to_str().expect("utf8"),
        "--key",
        w.path().join("cosign.pub").to_str().expect("utf8"),
    ])
    .expect_err("no key")
    .to_string();
    assert!(e.contains("keel repo key generate"), "{e}");
    let e = keel(&["repo", "log", "--repo", w.path().to_str().expect("utf8")])
        .expect_err("no repo")
        .to_string();
    assert!(e.contains("keel repo init"), "{e}");
}
