//! Reading a release's OS tree out of its raw disk image.
//!
//! The root partition (erofs, dm-verity data) is mounted read-only through a
//! loop device at its offset: the kernel's own erofs reader gives exactly
//! what a node would see (owners, modes, xattrs, symlinks, hard links) from
//! the very bytes the verity root hash and the cosign signature cover.
//! `fsck.erofs --extract` (erofs-utils 1.5, bookworm) was the alternative
//! and was rejected: it splits hard links into copies and, without root,
//! drops ownership. The build's staged tree is gone once mkosi finishes and
//! would not be the signed bytes anyway. Mounting needs root, like `keel
//! build`.
//!
//! The ESP (vfat) is copied with `mcopy` (no mount needed); its files get
//! fixed modes (0644, directories 0755) since vfat has none, so the commit
//! does not depend on the umask.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};
use keel_cmd::CommandRunExt as _;

use crate::release::image::{self, types, Partition};

/// A release image opened for committing: its root tree mounted, its ESP copied.
pub struct Opened {
    /// Mount point of the root partition (read-only).
    pub root: PathBuf,
    /// A copy of the ESP's files.
    pub esp: PathBuf,
    /// OSTree architecture name from the root partition's type (`x86_64`).
    pub arch: &'static str,
    mounted: bool,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("root", &self.root)
            .field("arch", &self.arch)
            .finish_non_exhaustive()
    }
}

impl Drop for Opened {
    fn drop(&mut self) {
        if self.mounted {
            if let Err(e) = Command::new("umount").arg(&self.root).run() {
                tracing::warn!("unmounting {}: {e}", self.root.display());
            }
        }
    }
}

/// The root partition and the architecture its type GUID names.
pub fn root_partition(parts: &[Partition]) -> anyhow::Result<(&Partition, &'static str)> {
    for p in parts {
        match p.type_guid.as_str() {
            types::ROOT_X86_64 => return Ok((p, "x86_64")),
            types::ROOT_ARM64 => return Ok((p, "aarch64")),
            _ => {}
        }
    }
    bail!(
        "the image has no root partition of a known architecture (x86-64 or arm64 root type GUID)"
    )
}

/// Opens the raw disk image at `image` (a path to an already verified file,
/// possibly `/proc/PID/fd/N`): mounts its root partition and copies its ESP
/// into a temporary directory under `work` (which must allow mounts).
pub fn open(image: &Path) -> anyhow::Result<Opened> {
    let parts = image::partitions(image)?;
    let (root_part, arch) = root_partition(&parts)?;
    let esp_part = parts
        .iter()
        .find(|p| p.type_guid == types::ESP)
        .context("the image has no ESP (EFI system partition): nothing to boot")?;
    let dir = tempfile::Builder::new()
        .prefix("keel-ostree-")
        .tempdir()
        .context("creating a temporary directory")?;
    let root = dir.path().join("root");
    let esp = dir.path().join("esp");
    std::fs::create_dir_all(&root)?;
    std::fs::create_dir_all(&esp)?;
    let mut opened = Opened {
        root,
        esp,
        arch,
        mounted: false,
        _dir: dir,
    };
    copy_esp(image, esp_part, &opened.esp)?;
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "committing a release needs root: its root partition is mounted read-only to read the tree with its exact owners, modes and xattrs (run as root, like `keel build`)"
        );
    }
    keel_cmd::Task::new("Mounting the release's root partition read-only", "mount")
        .args([
            "-o".into(),
            format!(
                "ro,nodev,nosuid,noexec,loop,offset={},sizelimit={}",
                root_part.offset, root_part.size
            ),
        ])
        .args([image, opened.root.as_path()])
        .run()
        .context("mounting the root partition (loop devices available? the kernel reads erofs?)")?;
    opened.mounted = true;
    Ok(opened)
}

/// Copies every file of the ESP to `dest` with fixed modes.
fn copy_esp(image: &Path, esp: &Partition, dest: &Path) -> anyhow::Result<()> {
    Command::new("mcopy")
        .args(["-s", "-n", "-i"])
        .arg(format!("{}@@{}", image.display(), esp.offset))
        .arg("::/")
        .arg(format!("{}/", dest.display()))
        .run()
        .context("copying the ESP's files with mcopy")?;
    normalize_modes(dest)
}

fn normalize_modes(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let ft = e.file_type()?;
        let mode = if ft.is_dir() {
            normalize_modes(&e.path())?;
            0o755
        } else if ft.is_file() {
            0o644
        } else {
            bail!(
                "{} on the ESP is neither a file nor a directory",
                e.path().display()
            );
        };
        std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Files under `dir` (relative paths with a leading `/`) whose sha256 is `sha256`.
pub fn find_by_sha256(dir: &Path, sha256: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    walk(dir, dir, &mut |rel, p| {
        if crate::fsutil::sha256_file(p)? == sha256 {
            out.push(rel);
        }
        Ok(())
    })?;
    out.sort();
    Ok(out)
}

fn walk(
    base: &Path,
    dir: &Path,
    f: &mut dyn FnMut(String, &Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            walk(base, &p, f)?;
        } else {
            let rel = p.strip_prefix(base).unwrap_or(&p);
            f(format!("/{}", rel.display()), &p)?;
        }
    }
    Ok(())
}
