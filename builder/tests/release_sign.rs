//! Keys, signatures and `keel verify` on a small synthetic release (a real
//! GPT disk image with an ext4 root holding the SBOMs, see
//! [`support::release`]), cross-checked with the real cosign, plus every
//! tampering case.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use keel_builder::release::sign::*;
use keel_builder::release::verify::verify_dir;
use keel_builder::release::{sign_dir, MANIFEST_FILE};
use keel_builder::sbom;
use keel_cmd::CommandRunExt as _;
use support::release::{keys, release, PW};
use support::skip_without;

fn cosign_verify(pubkey: &Path, file: &Path) -> bool {
    let sig = suffixed(file, ".sig");
    Command::new("cosign")
        .args(["verify-blob", "--insecure-ignore-tlog=true", "--key"])
        .arg(pubkey)
        .arg("--signature")
        .arg(&sig)
        .arg(file)
        .run()
        .is_ok()
}

fn cosign_verify_bundle(pubkey: &Path, file: &Path, trusted_root: &Path) -> bool {
    Command::new("cosign")
        .args([
            "verify-blob",
            "--insecure-ignore-tlog=true",
            "--new-bundle-format",
            "--key",
        ])
        .arg(pubkey)
        .arg("--bundle")
        .arg(suffixed(file, ".sigstore.json"))
        .arg("--trusted-root")
        .arg(trusted_root)
        .arg(file)
        .run()
        .is_ok()
}

fn flip(path: &Path, at: usize) {
    let mut data = std::fs::read(path).expect("read");
    let i = at.min(data.len() - 1);
    data[i] ^= 0x01;
    std::fs::write(path, data).expect("write");
}

#[test]
fn release_verifies_with_keel_and_cosign() {
    let Some(r) = release(br#"{"spdxVersion": "SPDX-2.3"}"#) else {
        return;
    };
    let report = verify_dir(&r.dir, &r.pubkey).expect("verify");
    assert!(report.ok, "{report:#?}");
    assert!(
        report
            .checked
            .iter()
            .any(|c| c.contains("embedded /usr/share/keel/sbom/sbom.spdx.json")),
        "{report:#?}"
    );
    let m = keel_manifest::load(&r.dir.join(MANIFEST_FILE)).expect("manifest");
    assert_eq!(
        m.artifacts.len(),
        4,
        "raw, efi, two SBOMs: {:?}",
        m.artifacts
    );
    assert_eq!(m.sboms.len(), 2);
    if skip_without(
        "release_verifies_with_keel_and_cosign (cosign part)",
        "cosign",
    ) {
        return;
    }
    let mut files: Vec<PathBuf> = m.artifacts.iter().map(|a| r.dir.join(&a.name)).collect();
    files.push(r.dir.join(MANIFEST_FILE));
    for f in &files {
        assert!(
            cosign_verify(&r.pubkey, f),
            "cosign accepts {}",
            f.display()
        );
        assert!(
            cosign_verify_bundle(&r.pubkey, f, &r.trusted_root),
            "cosign accepts bundle of {}",
            f.display()
        );
        assert!(
            !cosign_verify(&r.other_pub, f),
            "cosign rejects another key for {}",
            f.display()
        );
    }
}

#[test]
fn every_tampering_is_rejected() {
    let has_cosign = !skip_without("every_tampering_is_rejected (cosign part)", "cosign");
    let names = [
        "test-tiny.raw",
        "test-tiny.efi",
        sbom::SPDX_FILE,
        sbom::CYCLONEDX_FILE,
        MANIFEST_FILE,
    ];
    for name in names {
        let Some(r) = release(br#"{"spdxVersion": "SPDX-2.3"}"#) else {
            return;
        };
        flip(&r.dir.join(name), 1500);
        let rep = verify_dir(&r.dir, &r.pubkey).expect("verify");
        let f = rep.failure.expect("tampered file rejected");
        assert_eq!(f.file, name, "{name}: {f:?}");
        if has_cosign {
            assert!(
                !cosign_verify(&r.pubkey, &r.dir.join(name)),
                "cosign rejects tampered {name}"
            );
        }
    }
    // A flipped byte in a signature, a signature by another key, a missing file.
    let Some(r) = release(br#"{"spdxVersion": "SPDX-2.3"}"#) else {
        return;
    };
    let sig = r.dir.join("test-tiny.efi.sig");
    let good = std::fs::read(&sig).expect("sig");
    flip(&sig, 20);
    let f = verify_dir(&r.dir, &r.pubkey)
        .expect("verify")
        .failure
        .expect("bad sig rejected");
    assert_eq!(f.file, "test-tiny.efi", "{f:?}");
    if has_cosign {
        assert!(!cosign_verify(&r.pubkey, &r.dir.join("test-tiny.efi")));
    }
    std::fs::write(&sig, &good).expect("restore");
    let f = verify_dir(&r.dir, &r.other_pub)
        .expect("verify")
        .failure
        .expect("other key rejected");
    assert_eq!(f.file, MANIFEST_FILE, "{f:?}");
    std::fs::remove_file(r.dir.join(sbom::CYCLONEDX_FILE)).expect("rm");
    let f = verify_dir(&r.dir, &r.pubkey)
        .expect("verify")
        .failure
        .expect("missing file rejected");
    assert_eq!(f.file, sbom::CYCLONEDX_FILE);
    assert!(f.reason.contains("missing"), "{f:?}");
}

#[test]
fn sbom_inside_image_must_match_the_manifest() {
    let Some(r) = release(br#"{"spdxVersion": "SPDX-2.3", "x": 1}"#) else {
        return;
    };
    let f = verify_dir(&r.dir, &r.pubkey)
        .expect("verify")
        .failure
        .expect("embedded SBOM mismatch");
    assert_eq!(f.file, "test-tiny.raw");
    assert!(
        f.reason
            .contains("embedded /usr/share/keel/sbom/sbom.spdx.json"),
        "{f:?}"
    );
}

#[test]
fn signing_refuses_files_changed_after_the_build() {
    let Some(r) = release(br#"{"spdxVersion": "SPDX-2.3"}"#) else {
        return;
    };
    flip(&r.dir.join("test-tiny.efi"), 3);
    let key = keys().0;
    let err = sign_dir(&r.dir, &key, PW).expect_err("refuses");
    assert!(
        format!("{err:#}").contains("test-tiny.efi does not match"),
        "{err:#}"
    );
    let err = sign_dir(&r.dir, &key, b"wrong").expect_err("wrong password");
    assert!(format!("{err:#}").contains("wrong password"), "{err:#}");
}

#[test]
fn cosign_keys_and_signatures_interoperate() {
    if skip_without("cosign_keys_and_signatures_interoperate", "cosign") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    Command::new("cosign")
        .current_dir(d)
        .env("COSIGN_PASSWORD", "pw")
        .args(["generate-key-pair"])
        .run()
        .expect("cosign generate-key-pair");
    let blob = d.join("blob");
    std::fs::write(&blob, b"release bytes").expect("write");
    Command::new("cosign")
        .env("COSIGN_PASSWORD", "pw")
        .args(["sign-blob", "--yes", "--tlog-upload=false", "--key"])
        .arg(d.join("cosign.key"))
        .arg("--output-signature")
        .arg(d.join("cosign.sig"))
        .arg(&blob)
        .run()
        .expect("cosign sign-blob");
    // We read cosign's encrypted key; cosign accepts what we sign with it
    // (cosign's ECDSA is randomised, so the bytes differ from its own signature).
    let key = load_signing_key(&d.join("cosign.key"), b"pw").expect("load cosign key");
    let digest = sign_file(&key, &blob).expect("sign");
    assert!(
        cosign_verify(&d.join("cosign.pub"), &blob),
        "cosign accepts our signature"
    );
    let theirs = std::fs::read_to_string(d.join("cosign.sig")).expect("read");
    // And we verify cosign's signature with cosign's public key.
    let pubkey = load_public_key(&d.join("cosign.pub")).expect("pub");
    verify_digest(&pubkey, &digest, &theirs).expect("verifies");
    assert!(load_signing_key(&d.join("cosign.key"), b"nope").is_err());
}
