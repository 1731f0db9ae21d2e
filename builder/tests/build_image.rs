//! Builds images/test-tiny with the real mkosi through the real `keel`
//! binary and checks the outputs: raw + qcow2 exist, the GPT has an ESP, a
//! root and its verity partition, the build record is sane, the verity root
//! hash is recorded, and a second build with nothing changed is skipped.
//!
//! Needs root and mkosi (./setup.sh); prints SKIP otherwise. store-node is
//! built only with KEEL_TEST_STORE_NODE=1 (it takes much longer).

use std::path::Path;
use std::process::Command;

use keel_cmd::CommandRunExt;

mod common;
use common::{keel, repo};

const ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
const ROOT_X86_64: &str = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
const ROOT_VERITY_X86_64: &str = "2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5";

fn skip_reason() -> Option<String> {
    common::build_skip_reason(&["mkosi", "qemu-img", "sfdisk", "systemd-repart"])
}

fn build_and_check(name: &str) {
    // The same output directory and lock as qemu-tests' image builder, so a
    // CI run builds each image once (the other test then finds it current).
    let _lock = common::lock_image(name);
    let images = common::images_dir();
    let out = images.join(name);
    let out_s = out.to_str().expect("utf8");
    let image = repo().join("images").join(name);
    let image_s = image.to_str().expect("utf8");
    let cache = common::cache_dir();

    let build = || {
        keel(&[
            "build",
            image_s,
            "--out",
            out_s,
            "--cache-dir",
            &cache,
            "--json",
            // The committed lock may have gone stale since it was written
            // (Debian dropped a version): re-resolve for this test, which
            // the build says on stderr.
            "--relock",
        ])
    };
    let summary = build().unwrap_or_else(|e| panic!("keel build {name} failed: {e}"));
    let s: serde_json::Value = serde_json::from_str(&summary).expect("json summary");
    // Built now, or by an earlier run with identical inputs (outputs checked below).
    assert!(s["skipped"].is_boolean(), "{summary}");

    let raw = out.join(format!("{name}.raw"));
    let qcow = out.join(format!("{name}.qcow2"));
    assert!(raw.is_file() && qcow.is_file(), "raw and qcow2 exist");
    check_disks(&raw, &qcow);
    check_record(&out, name, &raw);

    let again = build().expect("rebuild");
    let s2: serde_json::Value = serde_json::from_str(&again).expect("json");
    assert_eq!(
        s2["skipped"], true,
        "no-change rebuild must skip mkosi: {again}"
    );
}

/// The qcow2 is zstd-compressed; the raw disk's GPT has an ESP, a root and
/// its verity partition.
fn check_disks(raw: &Path, qcow: &Path) {
    let info: serde_json::Value = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(qcow)
        .run_get_json()
        .expect("qemu-img info");
    assert_eq!(info["format"], "qcow2");
    assert_eq!(
        info["format-specific"]["data"]["compression-type"], "zstd",
        "qcow2 compressed with zstd: {info}"
    );

    let table: serde_json::Value = Command::new("sfdisk")
        .arg("--json")
        .arg(raw)
        .run_get_json()
        .expect("sfdisk");
    assert_eq!(table["partitiontable"]["label"], "gpt");
    let types: Vec<String> = table["partitiontable"]["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p["type"].as_str().unwrap_or_default().to_uppercase())
        .collect();
    for want in [ESP, ROOT_X86_64, ROOT_VERITY_X86_64] {
        assert!(
            types.iter().any(|t| t == want),
            "partition type {want} in {types:?}"
        );
    }
}

/// The build record names the image, its verity root hash, the hashed
/// inputs, the tools and the raw image's digest; the UKI is kept.
fn check_record(out: &Path, name: &str, raw: &Path) {
    let rec: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("build-record.json")).expect("record"),
    )
    .expect("record json");
    assert_eq!(rec["image-name"], name);
    let hash = rec["verity-roothash"].as_str().expect("roothash recorded");
    assert!(
        hash.len() >= 64 && hash.chars().all(|c| c.is_ascii_hexdigit()),
        "{hash}"
    );
    for k in ["definition", "lock", "rendered-config", "tool:mkosi"] {
        assert!(rec["inputs"][k].is_string(), "input {k} hashed: {rec}");
    }
    assert!(
        rec["tools"]["mkosi"]
            .as_str()
            .unwrap_or_default()
            .contains("mkosi"),
        "{rec}"
    );
    assert!(rec["durations"]["mkosi"].as_f64().unwrap_or(0.0) > 0.0);
    let raw_sha = keel_builder::fsutil::sha256_file(raw).expect("hash raw");
    assert_eq!(rec["artifacts"][format!("{name}.raw")], raw_sha.as_str());
    assert!(
        out.join(format!("{name}.efi")).is_file(),
        "UKI kept as an artifact"
    );
}

#[test]
fn test_tiny_builds_with_verity_and_rebuild_is_skipped() {
    if let Some(why) = skip_reason() {
        keel_testbed::report_skip(format_args!(
            "test_tiny_builds_with_verity_and_rebuild_is_skipped: {why}"
        ));
        return;
    }
    build_and_check("test-tiny");
}

#[test]
fn store_node_builds() {
    if std::env::var_os("KEEL_TEST_STORE_NODE").is_none() {
        keel_testbed::report_not_selected(format_args!(
            "store_node_builds: set KEEL_TEST_STORE_NODE=1 (long build)"
        ));
        return;
    }
    if let Some(why) = skip_reason() {
        keel_testbed::report_skip(format_args!("store_node_builds: {why}"));
        return;
    }
    build_and_check("store-node");
}

#[test]
fn bad_definition_error_names_file_and_key() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("image.toml"),
        "[image]\nname = \"x\"\nversion = \"1\"\n[distribution]\nname = \"debian\"\nrelease = \"buster\"\n",
    )
    .expect("write");
    let err = keel(&[
        "build",
        dir.path().to_str().expect("utf8"),
        "--out",
        dir.path().join("o").to_str().expect("utf8"),
    ])
    .expect_err("bad release");
    let msg = err.to_string();
    assert!(
        msg.contains("image.toml")
            && msg.contains("distribution.release")
            && msg.contains("bookworm"),
        "{msg}"
    );
}

/// The real apt against the real archive: dependencies are resolved to exact
/// versions, and a locked version the archive does not offer is named.
#[test]
fn lock_resolves_dependencies_and_names_missing_versions() {
    use keel_builder::lock::{apt::PrivateApt, Lock, LockedPackage};
    if keel_cmd::which("apt-get").is_none() {
        keel_testbed::report_skip(format_args!(
            "lock_resolves_dependencies_and_names_missing_versions: no apt-get"
        ));
        return;
    }
    let spec = keel_builder::spec::load(&repo().join("images/test-tiny")).expect("spec");
    let mirrors = keel_builder::spec::mirror::for_host(&spec.distribution).expect("mirrors");
    let state = tempfile::tempdir().expect("tmp");
    let apt = match PrivateApt::new(&spec, &mirrors, Some(state.path())) {
        Ok(a) => a,
        Err(e) => {
            keel_testbed::report_skip(format_args!(
                "lock_resolves_dependencies_and_names_missing_versions: archive unreachable: {e:#}"
            ));
            return;
        }
    };
    let pkgs = apt.simulate(&["tpm2-tools".to_string()]).expect("simulate");
    assert!(pkgs.iter().any(|p| p.name == "tpm2-tools"));
    // Not asked for: a dependency, at an exact version.
    let dep = pkgs
        .iter()
        .find(|p| p.name.starts_with("libtss2-"))
        .expect("dependency resolved");
    assert!(!dep.version.is_empty());
    let snaps = apt.snapshots().expect("snapshots");
    assert!(
        snaps
            .iter()
            .any(|s| s.suite == "bookworm" && s.inrelease_sha256.len() == 64),
        "{snaps:?}"
    );

    let lock = keel_builder::lock::apt::resolve_with(&apt, &spec).expect("resolve");
    assert!(lock
        .all_packages()
        .iter()
        .all(|p| p.sha256.len() == 64 && p.sha256.bytes().all(|b| b.is_ascii_hexdigit())));
    let check = apt.check(&lock).expect("check");
    assert!(
        check.missing.is_empty(),
        "freshly resolved versions are available: {:?}",
        check.gone()
    );

    let mut aged = lock.clone();
    aged.packages.push(LockedPackage {
        name: "tpm2-tools".into(),
        version: "0.0.0-keel-gone".into(),
        architecture: "amd64".into(),
        sha256: "00".repeat(32),
    });
    let check = apt.check(&aged).expect("check");
    assert_eq!(check.gone(), ["tpm2-tools=0.0.0-keel-gone"]);

    // Same name and version, other bytes: refused outright.
    let mut tampered: Lock = lock.clone();
    tampered.packages[0].sha256 = "ab".repeat(32);
    let err = apt
        .check(&tampered)
        .expect_err("digest differs")
        .to_string();
    assert!(
        err.contains(&tampered.packages[0].pin()) && err.contains("other contents"),
        "{err}"
    );
}
