//! What the release repository tests share: keys, a synthetic signed
//! release (a real GPT disk made by systemd-repart: ESP, erofs root,
//! dm-verity), and a client repository driven by the real `ostree` CLI.
// Each test binary uses a part of this.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use keel_builder::ostree::keys;
use keel_cmd::CommandRunExt;

pub const PASSWORD: &str = "ostree-test-password";

/// Why these tests cannot run here, if so.
pub fn skip_reason() -> Option<String> {
    if !keel_testbed::is_root() {
        return Some("needs root (the release's root partition is loop-mounted)".into());
    }
    let tools = [
        "ostree",
        "gpg",
        "gpgconf",
        "mount",
        "mcopy",
        "systemd-repart",
        "mkfs.erofs",
        "mkfs.vfat",
    ];
    keel_testbed::require(&tools).err().map(|e| e.to_string())
}

/// A cosign key pair and the OSTree key beside it, in a temp dir.
pub struct Keys {
    /// Holds the key files.
    pub _dir: tempfile::TempDir,
    pub cosign_key: PathBuf,
    pub cosign_pub: PathBuf,
    pub ostree_key: PathBuf,
    pub ostree_pub: PathBuf,
}

impl Keys {
    pub fn new() -> Keys {
        let dir = tempfile::tempdir().expect("tmp");
        let (cosign_key, cosign_pub) = keel_builder::release::sign::generate_key_pair(
            &dir.path().join("cosign"),
            PASSWORD.as_bytes(),
        )
        .expect("cosign key");
        let (ostree_key, ostree_pub) = keys::beside(&cosign_key);
        keys::generate(&ostree_key, &ostree_pub, "Keel test", PASSWORD.as_bytes())
            .expect("ostree key");
        Keys {
            _dir: dir,
            cosign_key,
            cosign_pub,
            ostree_key,
            ostree_pub,
        }
    }

    pub fn signer(&self) -> keys::Signer {
        keys::Signer::load(&self.ostree_key, PASSWORD.as_bytes()).expect("load ostree key")
    }
}

/// Deterministic filler bytes (incompressible).
pub fn filler(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Writes an OS tree: /usr with some bulk, /etc, a setuid file, a file of
/// another owner, a symlink, an empty /boot on the root and the UKI on the
/// ESP side. `change` adds one file and changes another (a small update).
pub fn write_tree(root: &Path, version: &str, change: bool) {
    use std::os::unix::fs::PermissionsExt;
    let w = |rel: &str, data: &[u8], mode: u32| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, data).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    for i in 0..40u64 {
        w(
            &format!("usr/lib/synth/blob{i:02}"),
            &filler(i, 64 * 1024),
            0o644,
        );
    }
    w(
        "usr/bin/hello",
        format!("#!/bin/sh\necho hello {}\n", if change { 2 } else { 1 }).as_bytes(),
        0o755,
    );
    w("usr/bin/suid", b"setuid", 0o4755);
    w(
        "usr/lib/os-release",
        format!("ID=keel\nVERSION_ID={version}\n").as_bytes(),
        0o644,
    );
    w("etc/hostname", b"synth\n", 0o644);
    w("var/lib/owned", b"owned", 0o640);
    std::os::unix::fs::chown(root.join("var/lib/owned"), Some(1000), Some(1000)).expect("chown");
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).expect("symlink");
    if change {
        w("usr/lib/synth/new-file", &filler(99, 16 * 1024), 0o644);
    }
    let mut uki = b"MZ synthetic UKI ".to_vec();
    uki.extend_from_slice(version.as_bytes());
    uki.extend_from_slice(&filler(7, 256 * 1024));
    w("boot/EFI/Linux/synth.efi", &uki, 0o644);
}

/// Makes a signed release directory from `tree` like `keel build` would:
/// synth.raw (systemd-repart: ESP, erofs root with verity), synth.efi,
/// manifest.json, all signed with `cosign_key`.
pub fn make_release(tree: &Path, out: &Path, version: &str, cosign_key: &Path) {
    std::fs::create_dir_all(out).expect("out");
    let defs = out.join(".defs");
    std::fs::create_dir_all(&defs).expect("defs");
    for (n, c) in [
        ("00-esp.conf", "[Partition]\nType=esp\nFormat=vfat\nCopyFiles=/boot:/\nSizeMinBytes=40M\nSizeMaxBytes=40M\n"),
        ("10-root.conf", "[Partition]\nType=root\nFormat=erofs\nCopyFiles=/\nExcludeFiles=/boot/\nVerity=data\nVerityMatchKey=root\nMinimize=best\n"),
        ("11-verity.conf", "[Partition]\nType=root-verity\nVerity=hash\nVerityMatchKey=root\nMinimize=best\n"),
    ] {
        std::fs::write(defs.join(n), c).expect("def");
    }
    let raw = out.join("synth.raw");
    let json: serde_json::Value = Command::new("systemd-repart")
        .args([
            "--empty=create",
            "--size=auto",
            "--dry-run=no",
            "--offline=yes",
            "--json=short",
        ])
        .arg(format!("--definitions={}", defs.display()))
        .arg(format!("--root={}", tree.display()))
        .arg("--seed=0e5b2e4c-6a3d-4b8e-9d6f-2f1c3a4b5c6d")
        .arg(&raw)
        .run_get_json()
        .expect("systemd-repart");
    std::fs::remove_dir_all(&defs).expect("rm defs");
    let roothash = json
        .as_array()
        .and_then(|a| a.iter().find_map(|p| p["roothash"].as_str()))
        .map(str::to_string);
    std::fs::copy(tree.join("boot/EFI/Linux/synth.efi"), out.join("synth.efi")).expect("uki");
    let ctx = keel_builder::release::ReleaseContext {
        out_dir: out.to_path_buf(),
        image_name: "synth".into(),
        image_version: version.into(),
        definition_sha256: keel_builder::fsutil::sha256(version.as_bytes()),
        lock_sha256: None,
        source_date_epoch: 1_700_000_000 + version.len() as i64,
        mkosi_version: "none (systemd-repart)".into(),
        artifacts: vec![raw, out.join("synth.efi")],
        uki: None,
        verity_roothash: roothash,
        sign_key: Some(cosign_key.to_path_buf()),
    };
    keel_builder::release::after_build_with_password(&ctx, PASSWORD.as_bytes())
        .expect("sign release");
}

/// A client repository with a remote `keel` for `url`.
pub struct Client {
    pub dir: tempfile::TempDir,
}

impl Client {
    /// `ostree init` and `ostree remote add` with GPG checks on and `ca` trusted.
    pub fn new(url: &str, gpg_pub: &Path, ca: &Path) -> Client {
        let dir = tempfile::tempdir().expect("tmp");
        let c = Client { dir };
        c.ostree(&["init", "--mode=bare-user"]).expect("init");
        c.ostree(&[
            "remote",
            "add",
            "--set=gpg-verify=true",
            "--set=gpg-verify-summary=true",
            &format!("--set=gpgkeypath={}", gpg_pub.display()),
            &format!("--set=tls-ca-path={}", ca.display()),
            "keel",
            url,
        ])
        .expect("remote add");
        c
    }

    pub fn ostree(&self, args: &[&str]) -> Result<String, keel_cmd::CmdError> {
        Command::new("ostree")
            .arg(format!("--repo={}", self.dir.path().display()))
            .args(args)
            .run_get_string()
    }

    /// `ostree pull keel REF` (a checksum works as REF too); stdout.
    pub fn pull(&self, refspec: &str) -> Result<String, keel_cmd::CmdError> {
        self.ostree(&["pull", "keel", refspec])
    }
}

/// Runs the `keel` binary with the key password in its environment.
pub fn keel(args: &[&str]) -> Result<String, keel_cmd::CmdError> {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .env("CI", "true")
        .env("KEEL_KEY_PASSWORD", PASSWORD)
        .run_get_string()
}

/// `cp -a` (keeps owners and modes of the repository's objects).
pub fn copy_tree(from: &Path, to: &Path) {
    Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .run()
        .expect("cp -a");
}
