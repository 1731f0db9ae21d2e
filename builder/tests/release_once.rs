//! What is verified is what is used: `keel verify` parses the manifest
//! bytes it checked the signature over and reads the SBOMs out of the image
//! it hashed, even when a file is replaced right after its check (the
//! verifier's observer hook swaps it). Runs mkfs.ext4, sfdisk and debugfs
//! (see [`support::release`]).

mod support;

use std::path::Path;

use keel_builder::release::verify::{verify_dir, verify_dir_observed};
use keel_builder::release::MANIFEST_FILE;
use keel_builder::sbom;
use support::release::{disk_image, release};

/// Replaces `path` by `data` the way an attacker would: a new file renamed
/// over it (the verifier's open descriptor keeps the old inode).
fn replace(path: &Path, data: &[u8]) {
    let tmp = path.with_extension("swap");
    std::fs::write(&tmp, data).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
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
    let report = verify_dir_observed(&r.dir, &r.pubkey, &mut |point| {
        if point == MANIFEST_FILE {
            replace(&mpath, evil_json.as_bytes());
        }
    })
    .expect("verify runs");
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
    let report = verify_dir_observed(&r.dir, &r.pubkey, &mut |point| {
        if point == "artifacts" {
            replace(&raw, &other_bytes);
        }
    })
    .expect("verify runs");
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
