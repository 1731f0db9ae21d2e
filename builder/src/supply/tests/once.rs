//! What is verified is what is used: `keel verify` parses the manifest
//! bytes it checked the signature over and reads the SBOMs out of the image
//! it hashed, even when a file is replaced right after its check (a test
//! hook swaps it); and signing a build keeps the key password out of the
//! process environment.

use std::path::Path;

use super::sign::{disk_image, keys, release, PW};
use crate::supply::release::MANIFEST_FILE;
use crate::supply::verify::{hooks, verify_dir};
use crate::supply::{after_build, sbom, ReleaseContext};

/// Replaces `path` by `data` the way an attacker would: a new file renamed
/// over it (the verifier's open descriptor keeps the old inode).
fn replace(path: &Path, data: &[u8]) {
    let tmp = path.with_extension("swap");
    std::fs::write(&tmp, data).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn set_hook(f: impl FnMut(&str) + 'static) {
    hooks::AFTER.with(|h| *h.borrow_mut() = Some(Box::new(f)));
}

fn clear_hook() {
    hooks::AFTER.with(|h| *h.borrow_mut() = None);
}

#[test]
fn verify_parses_the_manifest_bytes_it_verified() {
    let Some(r) = release(br#"{"spdxVersion": "SPDX-2.3"}"#) else {
        return;
    };
    let mpath = r.dir.join(MANIFEST_FILE);
    let mut evil = keel_manifest::load(&mpath).expect("manifest");
    let mut extra = evil.artifacts[0].clone();
    extra.name = "evil.bin".into();
    evil.artifacts.push(extra);
    let evil_json = evil.to_json();
    let p = mpath.clone();
    set_hook(move |point| {
        if point == MANIFEST_FILE {
            replace(&p, evil_json.as_bytes());
        }
    });
    let report = verify_dir(&r.dir, &r.pubkey).expect("verify runs");
    clear_hook();
    // The file now lists evil.bin, but the verifier used the signed bytes.
    assert!(
        std::fs::read_to_string(&mpath)
            .expect("read")
            .contains("evil.bin"),
        "the hook replaced manifest.json"
    );
    assert!(report.ok, "{report:#?}");
    assert!(
        !report.checked.iter().any(|c| c.contains("evil.bin")),
        "{report:#?}"
    );
    // Without the swap, the replaced (unsigned) manifest is refused.
    let report = verify_dir(&r.dir, &r.pubkey).expect("verify runs");
    let f = report.failure.expect("refused");
    assert_eq!(f.file, MANIFEST_FILE, "{f:?}");
}

#[test]
fn sboms_are_read_from_the_image_that_was_verified() {
    let Some(r) = release(br#"{"spdxVersion": "SPDX-2.3"}"#) else {
        return;
    };
    // Another image whose embedded SPDX differs from the manifest's.
    let other_dir = r.dir.parent().expect("parent").join("other");
    std::fs::create_dir_all(&other_dir).expect("mkdir");
    let spdx_path = format!("/{}/{}", sbom::SBOM_DIR, sbom::SPDX_FILE);
    let cdx_path = format!("/{}/{}", sbom::SBOM_DIR, sbom::CYCLONEDX_FILE);
    let other = disk_image(
        &other_dir,
        &[
            (&spdx_path, br#"{"spdxVersion": "SPDX-2.3", "evil": 1}"#),
            (&cdx_path, br#"{"bomFormat": "CycloneDX"}"#),
        ],
    )
    .expect("other image");
    let other_bytes = std::fs::read(&other).expect("read");
    let raw = r.dir.join("test-tiny.raw");
    let p = raw.clone();
    set_hook(move |point| {
        if point == "artifacts" {
            replace(&p, &other_bytes);
        }
    });
    let report = verify_dir(&r.dir, &r.pubkey).expect("verify runs");
    clear_hook();
    assert_eq!(
        std::fs::read(&raw).expect("read"),
        std::fs::read(&other).expect("read"),
        "the hook replaced the image"
    );
    assert!(report.ok, "SBOMs read from the verified image: {report:#?}");
    assert!(
        report
            .checked
            .iter()
            .any(|c| c.contains("embedded /usr/share/keel/sbom/sbom.spdx.json")),
        "{report:#?}"
    );
    // The replaced image itself fails verification.
    let report = verify_dir(&r.dir, &r.pubkey).expect("verify runs");
    let f = report.failure.expect("refused");
    assert_eq!(f.file, "test-tiny.raw", "{f:?}");
}

#[test]
fn build_signing_keeps_the_password_out_of_the_environment() {
    for v in ["KEEL_KEY_PASSWORD", "KEEL_KEY_PASSWORD_FILE"] {
        assert!(
            std::env::var_os(v).is_none(),
            "{v} set in the test's environment"
        );
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("out");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("test-tiny.efi"), b"MZ not a real UKI").expect("write");
    let pw_file = tmp.path().join("password");
    std::fs::write(&pw_file, [PW, b"\n"].concat()).expect("write");
    let (key, pubkey, _) = keys();
    let ctx = ReleaseContext {
        out_dir: dir.clone(),
        image_name: "test-tiny".into(),
        image_version: "1.0".into(),
        definition_sha256: "ab".repeat(32),
        lock_sha256: None,
        source_date_epoch: 1_700_000_000,
        mkosi_version: "24.3".into(),
        artifacts: vec![dir.join("test-tiny.efi")],
        uki: None,
        verity_roothash: None,
        sign_key: Some(key),
    };
    after_build(&ctx, Some(&pw_file)).expect("signed with the password from the file");
    assert!(
        std::env::var_os("KEEL_KEY_PASSWORD").is_none(),
        "signing put the password into the environment"
    );
    let report = verify_dir(&dir, &pubkey).expect("verify runs");
    assert!(report.ok, "{report:#?}");
    // No password anywhere: a clear error, nothing guessed.
    let e = after_build(&ctx, None).expect_err("no password");
    assert!(format!("{e:#}").contains("no key password"), "{e:#}");
}
