//! Keys, signatures and `keel verify` on a small synthetic release (a real
//! GPT disk image with an ext4 root holding the SBOMs), cross-checked with the
//! real cosign, plus every tampering case.

use crate::supply::release::{sign_dir, MANIFEST_FILE};
use crate::supply::sign::*;
use crate::supply::verify::verify_dir;
use crate::supply::{after_build_with_password, sbom, ReleaseContext};
use keel_cmd::CommandRunExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

pub(super) const PW: &[u8] = b"correct horse";

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

/// A GPT disk image with one x86-64 root partition (ext4) holding `files`.
pub(super) fn disk_image(dir: &Path, files: &[(&str, &[u8])]) -> Option<PathBuf> {
    let root = dir.join("rootfs");
    for (p, data) in files {
        let f = root.join(p.trim_start_matches('/'));
        std::fs::create_dir_all(f.parent()?).ok()?;
        std::fs::write(f, data).ok()?;
    }
    let fs = dir.join("root.ext4");
    Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E", "root_owner=0:0", "-d"])
        .arg(&root)
        .arg(&fs)
        .arg("8M")
        .run()
        .ok()?;
    let img = dir.join("test-tiny.raw");
    std::fs::File::create(&img).ok()?.set_len(10 << 20).ok()?;
    let mut sfdisk = Command::new("sh");
    sfdisk.arg("-c").arg(format!(
        "printf 'label: gpt\\nstart=2048, size=16384, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name=root-x86-64\\n' | sfdisk -q {}",
        img.display()
    ));
    sfdisk.run().ok()?;
    Command::new("dd")
        .arg(format!("if={}", fs.display()))
        .arg(format!("of={}", img.display()))
        .args(["bs=512", "seek=2048", "conv=notrunc", "status=none"])
        .run()
        .ok()?;
    std::fs::remove_file(&fs).ok()?;
    std::fs::remove_dir_all(&root).ok()?;
    Some(img)
}

/// Key pairs shared by the tests of this file (scrypt makes generation slow).
pub(super) fn keys() -> (PathBuf, PathBuf, PathBuf) {
    static KEYS: std::sync::OnceLock<(tempfile::TempDir, PathBuf, PathBuf, PathBuf)> =
        std::sync::OnceLock::new();
    let k = KEYS.get_or_init(|| {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (key, pubkey) = generate_key_pair(&tmp.path().join("release"), PW).expect("keygen");
        let (_, other_pub) = generate_key_pair(&tmp.path().join("other"), PW).expect("keygen");
        (tmp, key, pubkey, other_pub)
    });
    (k.1.clone(), k.2.clone(), k.3.clone())
}

pub(super) struct Release {
    _tmp: tempfile::TempDir,
    pub(super) dir: PathBuf,
    pub(super) pubkey: PathBuf,
    other_pub: PathBuf,
    trusted_root: PathBuf,
}

pub(super) fn release(embedded_spdx: &[u8]) -> Option<Release> {
    for tool in ["mkfs.ext4", "sfdisk", "debugfs"] {
        if super::skip_without("release tests", tool) {
            return None;
        }
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("out");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let spdx = br#"{"spdxVersion": "SPDX-2.3"}"#;
    let cdx = br#"{"bomFormat": "CycloneDX"}"#;
    std::fs::write(dir.join(sbom::SPDX_FILE), spdx).expect("write");
    std::fs::write(dir.join(sbom::CYCLONEDX_FILE), cdx).expect("write");
    let spdx_path = format!("/{}/{}", sbom::SBOM_DIR, sbom::SPDX_FILE);
    let cdx_path = format!("/{}/{}", sbom::SBOM_DIR, sbom::CYCLONEDX_FILE);
    let img = disk_image(&dir, &[(&spdx_path, embedded_spdx), (&cdx_path, cdx)])?;
    std::fs::write(dir.join("test-tiny.efi"), b"MZ not a real UKI").expect("write");
    let (key, pubkey, other_pub) = keys();
    after_build_with_password(
        &ReleaseContext {
            out_dir: dir.clone(),
            image_name: "test-tiny".into(),
            image_version: "1.0".into(),
            definition_sha256: "ab".repeat(32),
            lock_sha256: None,
            source_date_epoch: 1_700_000_000,
            mkosi_version: "24.3".into(),
            artifacts: vec![img, dir.join("test-tiny.efi")],
            uki: None,
            verity_roothash: None,
            sign_key: Some(key),
        },
        PW,
    )
    .expect("after_build");
    let trusted_root = tmp.path().join("trusted_root.json");
    std::fs::write(&trusted_root, r#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","tlogs":[],"certificateAuthorities":[],"ctlogs":[],"timestampAuthorities":[]}"#).expect("write");
    Some(Release {
        _tmp: tmp,
        dir,
        pubkey,
        other_pub,
        trusted_root,
    })
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
    if super::skip_without(
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
    let has_cosign = !super::skip_without("every_tampering_is_rejected (cosign part)", "cosign");
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
    if super::skip_without("cosign_keys_and_signatures_interoperate", "cosign") {
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
