//! End-to-end release test on a real build of images/test-tiny: the release
//! directory `keel build` produced is signed with `keel sign` (a fresh key from
//! `keel key generate`), then `keel verify` and the real `cosign verify-blob`
//! must accept it, the SBOMs inside the image must match the manifest, the
//! manifest's PCR 11 must equal `systemd-measure`'s for the image's UKI, and
//! tampering (manifest, SBOM, UKI, a signature, another key, a missing file)
//! must be rejected by both.
//!
//! The release is checked in a directory of hard links to the shared build
//! output; a tampered file is replaced, never written through the link.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use keel_builder::cli::{self, Cli};
use keel_cmd::CommandRunExt as _;
use keel_qemu_tests::{images, prereq};

fn keel(args: &[&str]) -> anyhow::Result<()> {
    let mut argv = vec!["keel"];
    argv.extend_from_slice(args);
    cli::run(Cli::try_parse_from(argv)?)
}

fn have(tool: &str) -> bool {
    keel_cmd::which(tool).is_some()
}

fn cosign_ok(pubkey: &Path, file: &Path) -> bool {
    let mut sig = file.as_os_str().to_owned();
    sig.push(".sig");
    Command::new("cosign")
        .args(["verify-blob", "--insecure-ignore-tlog=true", "--key"])
        .arg(pubkey)
        .arg("--signature")
        .arg(sig)
        .arg(file)
        .run()
        .is_ok()
}

/// A directory of hard links to every file of `src` (no subdirectories).
fn link_copy(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for e in std::fs::read_dir(src).expect("read_dir").flatten() {
        if e.file_type().map(|t| t.is_file()).unwrap_or(false) {
            std::fs::hard_link(e.path(), dst.join(e.file_name())).expect("hard link");
        }
    }
}

/// Replaces `path` by a copy with one byte flipped (the link target stays intact).
fn tamper(path: &Path) {
    let mut data = std::fs::read(path).expect("read");
    let i = data.len() / 2;
    data[i] ^= 0x01;
    std::fs::remove_file(path).expect("unlink");
    std::fs::write(path, data).expect("write");
}

fn failure(dir: &Path, key: &Path) -> String {
    match keel(&[
        "verify",
        &dir.display().to_string(),
        "--key",
        &key.display().to_string(),
    ]) {
        Ok(()) => String::new(),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn test_tiny_release_signs_and_verifies() {
    const TEST: &str = "test_tiny_release_signs_and_verifies";
    if let Some(reason) = prereq::build_unavailable() {
        keel_testbed::report_skip(format_args!("{TEST}: {reason}"));
        return;
    }
    let image = images::build("test-tiny").expect("keel build images/test-tiny");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("release");
    link_copy(&image.dir, &dir);
    for f in std::fs::read_dir(&dir).expect("read_dir").flatten() {
        let n = f.file_name().to_string_lossy().into_owned();
        if n.ends_with(".sig") || n.ends_with(".sigstore.json") {
            std::fs::remove_file(f.path()).expect("rm old signature");
        }
    }
    let manifest =
        keel_manifest::load(&dir.join("manifest.json")).expect("keel build wrote manifest.json");
    assert_eq!(manifest.sboms.len(), 2, "both SBOMs in the manifest");
    assert!(
        manifest.artifacts.iter().any(|a| a.name.ends_with(".raw")),
        "{:?}",
        manifest.artifacts
    );

    // The password goes in a file, never into this process's environment
    // (every child of the test would inherit it).
    let pw_file = tmp.path().join("password");
    std::fs::write(&pw_file, "release test password\n").expect("password file");
    let pw = pw_file.display().to_string();
    let prefix = tmp.path().join("release-key");
    keel(&[
        "key",
        "generate",
        "--out",
        &prefix.display().to_string(),
        "--password-file",
        &pw,
    ])
    .expect("key generate");
    let (key, pubkey) = (prefix.with_extension("key"), prefix.with_extension("pub"));
    keel(&[
        "sign",
        &dir.display().to_string(),
        "--key",
        &key.display().to_string(),
        "--password-file",
        &pw,
    ])
    .expect("keel sign");
    let report = keel_builder::release::verify::verify_dir(&dir, &pubkey).expect("verify runs");
    assert!(report.ok, "{report:#?}");
    assert!(
        report
            .checked
            .iter()
            .any(|c| c.contains("embedded /usr/share/keel/sbom/sbom.spdx.json")),
        "SBOMs read out of the image: {report:#?}"
    );

    // PCR 11 in the manifest equals systemd-measure's for the real UKI, given
    // the sections the UKI's own stub measures (systemd-stub 252 skips
    // .uname and .sbat; this host's systemd-measure would count them).
    let uki = manifest
        .artifacts
        .iter()
        .find(|a| a.name.ends_with(".efi"))
        .map(|a| dir.join(&a.name));
    match (uki, manifest.pcrs.get(&11)) {
        (Some(uki), Some(p11)) if Path::new("/usr/lib/systemd/systemd-measure").exists() => {
            let data = std::fs::read(&uki).expect("read UKI");
            let sections = keel_builder::release::pcr::pe_sections(&data).expect("UKI sections");
            let mut cmd = Command::new("/usr/lib/systemd/systemd-measure");
            cmd.args(["calculate", "--bank=sha256", "--json=short"]);
            for (name, bytes) in &sections {
                if keel_builder::release::pcr::measured_sections(&sections).contains(&name.as_str())
                {
                    let f = tmp.path().join(format!("section{name}"));
                    std::fs::write(&f, bytes).expect("write");
                    cmd.arg(format!(
                        "--{}={}",
                        name.trim_start_matches('.'),
                        f.display()
                    ));
                }
            }
            let v: serde_json::Value = cmd.run_get_json().expect("systemd-measure");
            for t in v["sha256"].as_array().expect("list") {
                let phase = t["phase"].as_str().expect("phase");
                assert_eq!(
                    p11.phases.get(phase).map(String::as_str),
                    t["hash"].as_str(),
                    "{phase}"
                );
            }
        }
        other => keel_testbed::report_skip(format_args!(
            "PCR 11 cross-check in {TEST}: no UKI, PCR 11 or systemd-measure ({:?})",
            other.0
        )),
    }

    let cosign = have("cosign");
    if cosign {
        for a in &manifest.artifacts {
            assert!(
                cosign_ok(&pubkey, &dir.join(&a.name)),
                "cosign accepts {}",
                a.name
            );
        }
        assert!(cosign_ok(&pubkey, &dir.join("manifest.json")));
    } else {
        keel_testbed::report_skip(format_args!(
            "cosign part of {TEST}: cosign not installed (./setup.sh installs it)"
        ));
    }

    // Tampering: each case on a fresh link copy.
    let mut cases: Vec<String> = vec![
        "manifest.json".into(),
        "sbom.spdx.json".into(),
        "sbom.cdx.json".into(),
    ];
    if let Some(efi) = manifest.artifacts.iter().find(|a| a.name.ends_with(".efi")) {
        cases.push(efi.name.clone());
    }
    for (i, name) in cases.iter().enumerate() {
        let d = tmp.path().join(format!("t{i}"));
        link_copy(&dir, &d);
        tamper(&d.join(name));
        let err = failure(&d, &pubkey);
        assert!(err.contains(&format!("{name}:")), "{name}: {err}");
        if cosign {
            assert!(
                !cosign_ok(&pubkey, &d.join(name)),
                "cosign rejects tampered {name}"
            );
        }
    }
    let d = tmp.path().join("sig");
    link_copy(&dir, &d);
    tamper(&d.join("sbom.cdx.json.sig"));
    assert!(failure(&d, &pubkey).contains("sbom.cdx.json"));
    let other: PathBuf = tmp.path().join("other");
    keel(&[
        "key",
        "generate",
        "--out",
        &other.display().to_string(),
        "--password-file",
        &pw,
    ])
    .expect("other key");
    assert!(failure(&dir, &other.with_extension("pub")).contains("manifest.json"));
    if cosign {
        assert!(!cosign_ok(
            &other.with_extension("pub"),
            &dir.join("manifest.json")
        ));
    }
    let d = tmp.path().join("missing");
    link_copy(&dir, &d);
    std::fs::remove_file(d.join("sbom.spdx.json")).expect("rm");
    assert!(failure(&d, &pubkey).contains("sbom.spdx.json: missing"));
}
