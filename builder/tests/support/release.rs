//! A small signed release made without mkosi: a real GPT disk image with
//! an ext4 root holding the SBOMs (mkfs.ext4, sfdisk on a plain file,
//! debugfs reads it back), a stand-in UKI, both SBOMs, and `manifest.json`
//! signed the way `keel build --sign-key` signs. Tests tamper with it.

use std::path::{Path, PathBuf};
use std::process::Command;

use keel_builder::release::sign::generate_key_pair;
use keel_builder::release::{after_build_with_password, ReleaseContext};
use keel_builder::sbom;
use keel_cmd::CommandRunExt as _;

/// The test keys' password.
pub const PW: &[u8] = b"correct horse";

/// A GPT disk image with one x86-64 root partition (ext4) holding `files`.
pub fn disk_image(dir: &Path, files: &[(&str, &[u8])]) -> Option<PathBuf> {
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
pub fn keys() -> (PathBuf, PathBuf, PathBuf) {
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

/// A signed release in a temporary directory (removed on drop).
pub struct Release {
    _tmp: tempfile::TempDir,
    /// The release directory.
    pub dir: PathBuf,
    /// The release public key.
    pub pubkey: PathBuf,
    /// Another key's public half (must be refused).
    pub other_pub: PathBuf,
    /// An empty sigstore trusted root, for cosign's offline bundle check.
    pub trusted_root: PathBuf,
}

/// A signed release whose disk image embeds `embedded_spdx` as its SPDX
/// document (the published one is fixed, so other bytes make a mismatch);
/// `None` after a skip line when a tool is missing.
pub fn release(embedded_spdx: &[u8]) -> Option<Release> {
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
