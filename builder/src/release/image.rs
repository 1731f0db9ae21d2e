//! Reading files out of a raw disk image without mounting it: the GPT is
//! parsed here ([`parse_gpt`], pure), the file system is read by the real
//! tools through keel-cmd: `debugfs` (ext4, at an offset, no root needed),
//! `mcopy` (the vfat ESP), else `systemd-dissect --copy-from` (any file system,
//! needs root and loop devices), else `fsck.erofs --extract` / `unsquashfs` on
//! a copy of the partition.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context as _};
use keel_cmd::CommandRunExt as _;

/// GPT partition type GUIDs (Discoverable Partitions Specification).
pub mod types {
    pub const ESP: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
    pub const ROOT_X86_64: &str = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709";
    pub const USR_X86_64: &str = "8484680c-9521-48c6-9c11-b0720656f69e";
    pub const ROOT_ARM64: &str = "b921b045-1df0-41c3-af44-4c6f280d3fae";
    pub const USR_ARM64: &str = "b0e01050-ee5f-4390-949a-9101b17104e9";
    pub const LINUX_DATA: &str = "0fc63daf-8483-4772-8e79-3d69d8477de4";
}

/// One GPT partition entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Type GUID, lowercase text form.
    pub type_guid: String,
    pub label: String,
    /// Byte offset and size in the image.
    pub offset: u64,
    pub size: u64,
}

fn guid(b: &[u8]) -> String {
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{}-{}",
        b[3],
        b[2],
        b[1],
        b[0],
        b[5],
        b[4],
        b[7],
        b[6],
        hex::encode(&b[8..10]),
        hex::encode(&b[10..16])
    )
}

/// Parses the GPT from the first bytes of a disk (at least 34 sectors),
/// trying 512- and 4096-byte sectors.
pub fn parse_gpt(head: &[u8]) -> anyhow::Result<Vec<Partition>> {
    for sector in [512usize, 4096] {
        let Some(hdr) = head.get(sector..sector + 92) else {
            continue;
        };
        if &hdr[..8] != b"EFI PART" {
            continue;
        }
        let u64_at = |o: usize| u64::from_le_bytes(hdr[o..o + 8].try_into().unwrap_or_default());
        let u32_at = |o: usize| u32::from_le_bytes(hdr[o..o + 4].try_into().unwrap_or_default());
        let entries_lba = u64_at(72) as usize;
        let (count, esize) = (u32_at(80) as usize, u32_at(84) as usize);
        if esize < 128 || count > 1024 {
            bail!("GPT header has implausible entry size {esize} or count {count}");
        }
        let mut out = Vec::new();
        for i in 0..count {
            let off = entries_lba * sector + i * esize;
            let e = head
                .get(off..off + 128)
                .context("GPT entries beyond the bytes read")?;
            if e[..16].iter().all(|&b| b == 0) {
                continue;
            }
            let first = u64::from_le_bytes(e[32..40].try_into()?);
            let last = u64::from_le_bytes(e[40..48].try_into()?);
            let name: Vec<u16> = e[56..128]
                .chunks(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .take_while(|&c| c != 0)
                .collect();
            out.push(Partition {
                type_guid: guid(&e[..16]),
                label: String::from_utf16_lossy(&name),
                offset: first * sector as u64,
                size: (last + 1 - first) * sector as u64,
            });
        }
        return Ok(out);
    }
    bail!("no GPT partition table found")
}

/// Reads the partition table of an image file.
pub fn partitions(image: &Path) -> anyhow::Result<Vec<Partition>> {
    let mut f =
        std::fs::File::open(image).with_context(|| format!("opening {}", image.display()))?;
    let mut head = vec![0u8; 4096 * 34];
    let n = f.read(&mut head)?;
    head.truncate(n);
    parse_gpt(&head).with_context(|| format!("reading partition table of {}", image.display()))
}

fn fs_magic(image: &Path, p: &Partition) -> anyhow::Result<&'static str> {
    let mut f = std::fs::File::open(image)?;
    let mut b = vec![0u8; 2048];
    f.seek(SeekFrom::Start(p.offset))?;
    f.read_exact(&mut b)?;
    Ok(if b[1080..1082] == [0x53, 0xef] {
        "ext4"
    } else if b[1024..1028] == [0xe2, 0xe1, 0xf5, 0xe0] {
        "erofs"
    } else if &b[..4] == b"hsqs" {
        "squashfs"
    } else if &b[82..87] == b"FAT32" || &b[54..59] == b"FAT16" || &b[54..59] == b"FAT12" {
        "vfat"
    } else {
        "unknown"
    })
}

/// Copies `path` (absolute, inside the OS tree) out of the image's root or
/// /usr partition to `dest`.
pub fn copy_from_image(image: &Path, path: &str, dest: &Path) -> anyhow::Result<()> {
    let parts = partitions(image)?;
    let usr = parts
        .iter()
        .find(|p| [types::USR_X86_64, types::USR_ARM64].contains(&p.type_guid.as_str()));
    let root = parts.iter().find(|p| {
        [types::ROOT_X86_64, types::ROOT_ARM64, types::LINUX_DATA].contains(&p.type_guid.as_str())
    });
    let (part, inner) = match (usr, path.strip_prefix("/usr")) {
        (Some(u), Some(rest)) => (u, rest.to_string()),
        _ => (
            root.context("image has no root or /usr partition")?,
            path.to_string(),
        ),
    };
    let fs = fs_magic(image, part)?;
    if fs == "ext4" {
        let spec = format!("{}?offset={}", image.display(), part.offset);
        Command::new("debugfs")
            .args(["-R", &format!("dump {inner} {}", dest.display()), &spec])
            .run()
            .context("reading ext4 partition with debugfs")?;
        // debugfs reports a missing file on stderr but exits 0.
        if !dest.exists() {
            bail!("{path} is not in the image");
        }
        return Ok(());
    }
    if nix_is_root() {
        let r = Command::new("systemd-dissect")
            .arg("--copy-from")
            .arg(image)
            .arg(path)
            .arg(dest)
            .run();
        if r.is_ok() {
            return Ok(());
        }
    }
    let tmp = tempfile::tempdir().context("creating temp dir")?;
    let part_file = tmp.path().join("part.img");
    copy_range(image, part.offset, part.size, &part_file)?;
    let out = tmp.path().join("x");
    match fs {
        "erofs" => Command::new("fsck.erofs")
            .arg(format!("--extract={}", out.display()))
            .arg("--no-preserve")
            .arg(&part_file)
            .run()
            .context("extracting erofs partition")?,
        "squashfs" => Command::new("unsquashfs")
            .arg("-d")
            .arg(&out)
            .arg(&part_file)
            .arg(inner.trim_start_matches('/'))
            .run()
            .context("extracting squashfs partition")?,
        other => bail!("cannot read a {other} partition without root (systemd-dissect)"),
    }
    std::fs::copy(out.join(inner.trim_start_matches('/')), dest)
        .with_context(|| format!("{path} is not in the image"))?;
    Ok(())
}

fn nix_is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

fn copy_range(image: &Path, offset: u64, size: u64, dest: &Path) -> anyhow::Result<()> {
    let mut f = std::fs::File::open(image)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut out = std::fs::File::create(dest)?;
    std::io::copy(&mut f.take(size), &mut out).context("copying partition")?;
    Ok(())
}

/// The systemd-boot binary from the image's ESP, if it has one.
pub fn read_boot_loader(image: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    let parts = partitions(image)?;
    let Some(esp) = parts.iter().find(|p| p.type_guid == types::ESP) else {
        return Ok(None);
    };
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("boot.efi");
    for candidate in [
        "::/EFI/systemd/systemd-bootx64.efi",
        "::/EFI/BOOT/BOOTX64.EFI",
    ] {
        let r = Command::new("mcopy")
            .arg("-n")
            .arg("-i")
            .arg(format!("{}@@{}", image.display(), esp.offset))
            .arg(candidate)
            .arg(&out)
            .run();
        if r.is_ok() {
            return Ok(Some(std::fs::read(&out)?));
        }
    }
    Ok(None)
}
