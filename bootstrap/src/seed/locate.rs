//! Finding the seed: a path from the command line (directory, ISO 9660 or
//! FAT image file, or block device), a volume labelled CIDATA/cidata, or
//! /var/lib/cloud/seed/nocloud under the target root.
//!
//! Images are read without mounting: `xorriso` extracts from ISO 9660
//! (Rock Ridge/Joliet names, as `cloud-localds` writes them) and `mcopy`
//! from FAT, both through keel-cmd. This works on image files and block
//! devices alike and needs no loop devices.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use keel_cmd::CommandRunExt;

use super::{Seed, SeedError};

/// The seed files a NoCloud volume may hold.
pub const FILES: [&str; 3] = ["meta-data", "user-data", "network-config"];

/// A seed that was found, with where it came from.
#[derive(Debug)]
pub struct Located {
    /// The parsed seed.
    pub seed: Seed,
    /// Where it was read from (for logs and `status`).
    pub source: PathBuf,
}

/// Filesystem of a seed image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageKind {
    /// ISO 9660 (cloud-localds' default).
    Iso9660,
    /// FAT (`cloud-localds --filesystem vfat`).
    Vfat,
}

/// Finds and parses the seed. `explicit` is `--seed`; `root` is the target
/// root whose var/lib/cloud/seed/nocloud is the last place looked.
pub fn locate(explicit: Option<&Path>, root: &Path) -> Result<Located, SeedError> {
    if let Some(p) = explicit {
        return load_any(p);
    }
    for label in ["CIDATA", "cidata"] {
        let dev = PathBuf::from("/dev/disk/by-label").join(label);
        if dev.exists() {
            return load_any(&dev);
        }
    }
    if let Some(dev) = blkid_label() {
        return load_any(&dev);
    }
    let dir = root.join("var/lib/cloud/seed/nocloud");
    if dir.join("meta-data").exists() {
        return load_any(&dir);
    }
    Err(SeedError::NotFound(dir))
}

/// Loads a seed from a directory, image file or block device.
pub fn load_any(path: &Path) -> Result<Located, SeedError> {
    let seed = if path.is_dir() {
        Seed::load_dir(path)?
    } else {
        let tmp = tempfile::tempdir().map_err(|source| SeedError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
        extract(path, tmp.path())?;
        Seed::load_dir(tmp.path())?
    };
    Ok(Located {
        seed,
        source: path.to_path_buf(),
    })
}

fn blkid_label() -> Option<PathBuf> {
    for label in ["CIDATA", "cidata"] {
        let out = Command::new("blkid")
            .args(["-t", &format!("LABEL={label}"), "-o", "device"])
            .run_get_string()
            .ok()?;
        if let Some(dev) = out.lines().next().filter(|l| !l.is_empty()) {
            return Some(PathBuf::from(dev));
        }
    }
    None
}

/// Detects ISO 9660 vs FAT from the first sectors.
pub fn detect(path: &Path) -> Result<ImageKind, SeedError> {
    let io = |source| SeedError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut head = Vec::with_capacity(0x8006);
    std::fs::File::open(path)
        .map_err(io)?
        .take(0x8006)
        .read_to_end(&mut head)
        .map_err(io)?;
    if head.get(0x8001..0x8006) == Some(b"CD001") {
        return Ok(ImageKind::Iso9660);
    }
    let boot_sig = head.get(510..512) == Some(&[0x55, 0xAA]);
    let fat_name = head.get(54..57) == Some(b"FAT") || head.get(82..87) == Some(b"FAT32");
    if boot_sig && fat_name {
        return Ok(ImageKind::Vfat);
    }
    Err(SeedError::UnknownImage(path.to_path_buf()))
}

/// Copies the seed files out of an image into `dest`.
pub fn extract(image: &Path, dest: &Path) -> Result<(), SeedError> {
    let img = |source| SeedError::Image {
        path: image.to_path_buf(),
        source,
    };
    match detect(image)? {
        ImageKind::Iso9660 => {
            // -extract of a missing file is an error: list the root first.
            let listing = Command::new("xorriso")
                .args(["-osirrox", "on", "-indev"])
                .arg(image)
                .args(["-find", "/"])
                .run_get_string()
                .map_err(img)?;
            let mut cmd = Command::new("xorriso");
            cmd.args(["-osirrox", "on", "-indev"]).arg(image);
            let mut any = false;
            for f in FILES {
                if listing.contains(&format!("'/{f}'")) {
                    cmd.args(["-extract", &format!("/{f}")]).arg(dest.join(f));
                    any = true;
                }
            }
            if any {
                cmd.run().map_err(img)?;
            }
        }
        ImageKind::Vfat => {
            for f in FILES {
                let r = Command::new("mcopy")
                    .env("MTOOLS_SKIP_CHECK", "1")
                    .arg("-i")
                    .arg(image)
                    .arg(format!("::{f}"))
                    .arg(dest.join(f))
                    .run();
                if let Err(e) = r {
                    // mcopy fails for a file the volume does not hold.
                    if !matches!(e, keel_cmd::CmdError::Failed { .. }) {
                        return Err(img(e));
                    }
                }
            }
        }
    }
    Ok(())
}
