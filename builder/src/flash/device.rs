//! The target disk of `keel flash`: what it is (from sysfs) and whether it
//! may be overwritten.
//!
//! A disk is refused when it is not a whole-disk block device, is read-only,
//! is smaller than the image, or is in use: the disk or any of its
//! partitions (or a device-mapper/RAID device stacked on them, from sysfs
//! `holders/`) is mounted (`/proc/self/mountinfo`, matched by device number
//! and by source path) or used as swap (`/proc/swaps`). The disk holding the
//! running system (`/`, `/boot`, ...) is always mounted, so it is refused by
//! the same rule, with its own wording. The final open is `O_EXCL`, which the
//! kernel refuses (EBUSY) for a disk that is in use in any other way.
//!
//! Parsing (`mountinfo`, `swaps`) is pure; [`inspect`] does the I/O.

use std::collections::BTreeSet;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::exit::Error::Refused;

/// Mount points whose disk is the running system's.
const SYSTEM_MOUNTS: [&str; 6] = ["/", "/boot", "/boot/efi", "/efi", "/usr", "/var"];

/// A whole-disk block device, as sysfs describes it.
#[derive(Debug, Clone)]
pub struct Disk {
    /// The path given (e.g. `/dev/sdb`).
    pub path: PathBuf,
    /// Kernel name (`sdb`, `loop3`, `nvme0n1`).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Logical block size (what O_DIRECT writes are aligned to).
    pub logical_block: u64,
    /// Vendor and model, or the loop device's backing file.
    pub description: String,
    /// Removable media (USB sticks, SD cards).
    pub removable: bool,
    read_only: bool,
    /// `MAJ:MIN` of the disk, its partitions and what is stacked on them.
    in_tree: Vec<Node>,
}

/// One device of a disk's tree (the disk, a partition, a holder).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Node {
    dev: String,
    name: String,
    /// Stacked on the disk (sysfs `holders/`: device-mapper, RAID).
    holder: bool,
}

/// One line of `/proc/self/mountinfo`, the fields Keel uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `MAJ:MIN` of the mounted filesystem's device.
    pub dev: String,
    /// Where it is mounted.
    pub mount_point: String,
    /// The mount source (`/dev/sdb1`, or `tmpfs`).
    pub source: String,
}

/// Parses `/proc/self/mountinfo` (see proc(5)); octal escapes (`\040`) in
/// paths are decoded.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            Some(Mount {
                dev: f.get(2)?.to_string(),
                mount_point: unescape(f.get(4)?),
                source: unescape(r.get(1)?),
            })
        })
        .collect()
}

/// The device paths of `/proc/swaps` (first column, header skipped).
pub fn parse_swaps(text: &str) -> Vec<String> {
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(unescape))
        .collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `MAJ:MIN` of a device number (glibc's `major`/`minor` encoding).
fn majmin(rdev: u64) -> String {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    format!("{major}:{minor}")
}

fn read_sys(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Reads what sysfs says about `path`; fails for anything but a whole disk.
pub fn inspect(path: &Path) -> anyhow::Result<Disk> {
    let md = std::fs::metadata(path).with_context(|| format!("opening {}", path.display()))?;
    if !md.file_type().is_block_device() {
        return Err(Refused(format!(
            "{} is not a block device; give the whole disk to write, e.g. /dev/sdb (lsblk lists them)",
            path.display()
        ))
        .into());
    }
    let dev = majmin(md.rdev());
    let sys = PathBuf::from("/sys/dev/block").join(&dev);
    let sys = sys
        .canonicalize()
        .with_context(|| format!("{} ({dev}) is not in sysfs", path.display()))?;
    let name = sys
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if sys.join("partition").exists() {
        let parent = sys
            .parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Err(Refused(format!(
            "{} is a partition ({name}); give the whole disk instead, e.g. /dev/{parent}",
            path.display()
        ))
        .into());
    }
    let sectors: u64 = read_sys(&sys, "size")
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("reading the size of {name} from sysfs"))?;
    let logical_block = read_sys(&sys, "queue/logical_block_size")
        .and_then(|s| s.parse().ok())
        .unwrap_or(512);
    let description = describe(&sys);
    let in_tree = device_tree(&sys, &dev, &name)?;
    Ok(Disk {
        path: path.to_path_buf(),
        name,
        size: sectors * 512,
        logical_block,
        description,
        removable: read_sys(&sys, "removable").as_deref() == Some("1"),
        read_only: read_sys(&sys, "ro").as_deref() == Some("1"),
        in_tree,
    })
}

/// What the disk is, for the technician: the loop device's file, or the
/// vendor and model sysfs reports.
fn describe(sys: &Path) -> String {
    match read_sys(sys, "loop/backing_file") {
        Some(f) => format!("loop device on {f}"),
        None => {
            let v = read_sys(sys, "device/vendor").unwrap_or_default();
            let m = read_sys(sys, "device/model").unwrap_or_default();
            let d = format!("{v} {m}").trim().to_string();
            if d.is_empty() {
                "no model information".into()
            } else {
                d
            }
        }
    }
}

/// The disk (`sys`, `dev`, `name`), its partitions, and the devices stacked
/// on any of them (LVM, dm-crypt, RAID), transitively.
fn device_tree(sys: &Path, dev: &str, name: &str) -> anyhow::Result<Vec<Node>> {
    let mut in_tree = vec![Node {
        dev: dev.to_string(),
        name: name.to_string(),
        holder: false,
    }];
    let mut dirs = vec![sys.to_path_buf()];
    for e in std::fs::read_dir(sys)?.flatten() {
        if e.path().join("partition").exists() {
            dirs.push(e.path());
            if let Some(d) = read_sys(&e.path(), "dev") {
                in_tree.push(Node {
                    dev: d,
                    name: e.file_name().to_string_lossy().into_owned(),
                    holder: false,
                });
            }
        }
    }
    while let Some(d) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(d.join("holders")) else {
            continue;
        };
        for h in rd.flatten() {
            let hp = h.path().canonicalize().unwrap_or(h.path());
            if let Some(dv) = read_sys(&hp, "dev") {
                let node = Node {
                    dev: dv,
                    name: h.file_name().to_string_lossy().into_owned(),
                    holder: true,
                };
                if !in_tree.iter().any(|n| n.dev == node.dev) {
                    in_tree.push(node);
                    dirs.push(hp);
                }
            }
        }
    }
    Ok(in_tree)
}

impl Disk {
    /// Why the disk must not be overwritten with an image of `image_size`
    /// bytes, given the current mounts and swaps; `None` when it may.
    pub fn refusal(&self, image_size: u64, mounts: &[Mount], swaps: &[String]) -> Option<String> {
        let p = self.path.display();
        let names: BTreeSet<String> = self
            .in_tree
            .iter()
            .map(|n| format!("/dev/{}", n.name))
            .collect();
        let ours = |dev: &str, source: &str| {
            self.in_tree.iter().any(|n| n.dev == dev)
                || names.contains(source)
                || std::fs::canonicalize(source)
                    .is_ok_and(|c| names.contains(&c.display().to_string()))
        };
        let used: Vec<&Mount> = mounts.iter().filter(|m| ours(&m.dev, &m.source)).collect();
        if let Some(sys) = used
            .iter()
            .find(|m| SYSTEM_MOUNTS.contains(&m.mount_point.as_str()))
        {
            return Some(format!(
                "{p} holds the running system ({} is mounted on {}); refusing to overwrite it: pick the disk of the node to install (lsblk lists disks)",
                sys.source, sys.mount_point
            ));
        }
        if !used.is_empty() {
            let list: Vec<String> = used
                .iter()
                .map(|m| format!("{} on {}", m.source, m.mount_point))
                .collect();
            return Some(format!(
                "{p} is mounted ({}); refusing to overwrite a disk in use: unmount it first (umount), or pick another disk",
                list.join(", ")
            ));
        }
        let swap: Vec<&String> = swaps.iter().filter(|s| ours("", s)).collect();
        if let Some(s) = swap.first() {
            return Some(format!(
                "{p} is in use as swap ({s}); refusing to overwrite it: swapoff {s} first, or pick another disk"
            ));
        }
        let stacked: Vec<&str> = self
            .in_tree
            .iter()
            .filter(|n| n.holder)
            .map(|n| n.name.as_str())
            .collect();
        if !stacked.is_empty() {
            return Some(format!(
                "{p} is in use by {} (LVM, dm-crypt or RAID); refusing to overwrite it: deactivate those first, or pick another disk",
                stacked.join(", ")
            ));
        }
        if self.read_only {
            return Some(format!(
                "{p} is read-only (write-protect switch on the card or stick?)"
            ));
        }
        if self.size < image_size {
            return Some(format!(
                "{p} is too small: {} ({} bytes), the image needs {} ({image_size} bytes); use a larger disk",
                indicatif::BinaryBytes(self.size),
                self.size,
                indicatif::BinaryBytes(image_size),
            ));
        }
        None
    }
}

/// The mounts and swaps of this machine, now.
pub fn current_use() -> anyhow::Result<(Vec<Mount>, Vec<String>)> {
    let mi =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    Ok((parse_mountinfo(&mi), parse_swaps(&swaps)))
}

#[cfg(test)]
mod tests;
