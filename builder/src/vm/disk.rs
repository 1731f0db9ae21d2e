//! The disk a VM boots from: big enough for the first boot to add /var.
//!
//! `keel build` writes an image exactly as big as its partitions (ESP, root,
//! verity); on first boot systemd-repart adds the writable /var partition in
//! the free space after them. A real node's disk has that space; an image
//! file booted as-is does not, and the boot ends in emergency mode with
//! "Dependency failed for var.mount". So the VM gets a disk of
//! [`VmOptions::disk_gib`]: with `snapshot`, a qcow2 overlay in the VM's
//! temporary directory backed by the untouched image; without, the image file
//! itself is grown (it is the guest's disk, writes included).

use std::path::{Path, PathBuf};

use anyhow::Context;
use keel_cmd::CommandRunExt;

use super::options::{ImageFormat, VmOptions};

const GIB: u64 = 1 << 30;

#[derive(serde::Deserialize)]
struct ImgInfo {
    #[serde(rename = "virtual-size")]
    virtual_size: u64,
}

/// The size the guest should see: the requested size, never less than the image.
pub fn target_size(image_bytes: u64, disk_gib: u64) -> u64 {
    image_bytes.max(disk_gib.saturating_mul(GIB))
}

/// The image's virtual size, from `qemu-img info`.
pub fn virtual_size(image: &Path, format: ImageFormat) -> anyhow::Result<u64> {
    let info: ImgInfo = std::process::Command::new("qemu-img")
        .args(["info", "--output=json", "-f", format.qemu_name()])
        .arg(image)
        .run_get_json()
        .with_context(|| format!("reading the size of {}", image.display()))?;
    Ok(info.virtual_size)
}

/// Returns the disk to hand QEMU: (path, format, QEMU `snapshot=`).
pub fn prepare(
    image: &Path,
    format: ImageFormat,
    opts: &VmOptions,
    vm_dir: &Path,
) -> anyhow::Result<(PathBuf, ImageFormat, bool)> {
    let size = virtual_size(image, format)?;
    let want = target_size(size, opts.disk_gib);
    if opts.snapshot {
        let overlay = vm_dir.join("disk.qcow2");
        std::process::Command::new("qemu-img")
            .args([
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                format.qemu_name(),
                "-b",
            ])
            .arg(image)
            .arg(&overlay)
            .arg(want.to_string())
            .run()
            .context("creating the VM's disk overlay")?;
        return Ok((overlay, ImageFormat::Qcow2, false));
    }
    if want > size {
        tracing::info!(
            image = %image.display(),
            from = size,
            to = want,
            "growing the image so the first boot has room for /var"
        );
        std::process::Command::new("qemu-img")
            .args(["resize", "-q", "-f", format.qemu_name()])
            .arg(image)
            .arg(want.to_string())
            .run()
            .with_context(|| format!("growing {}", image.display()))?;
    }
    Ok((image.to_path_buf(), format, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_size_never_shrinks() {
        assert_eq!(target_size(100, 8), 8 * GIB);
        assert_eq!(target_size(9 * GIB, 8), 9 * GIB);
        assert_eq!(target_size(5, 0), 5);
    }
}
