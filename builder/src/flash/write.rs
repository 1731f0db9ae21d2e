//! Writing the image to the disk and reading it back.
//!
//! Writes and reads use `O_DIRECT` with 4 MiB blocks aligned in memory, so the
//! progress bar shows what the disk accepted (not what the page cache took)
//! and the read-back sees the disk's content, not cached pages. The write
//! ends with `fsync`, which also flushes the disk's volatile cache. The last
//! block is padded with zeros to the disk's logical block size.
//!
//! The image is hashed while it is written: the bytes on the disk are
//! exactly the bytes hashed, so comparing that hash (and the read-back's)
//! with the signed manifest's proves the disk holds the signed image, even if
//! the file changed after it was verified.

use std::io::{Read, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};

use super::device::Disk;
use crate::build::progress::Transfer;

/// Bytes per write and read.
pub const BLOCK: usize = 4 << 20;
/// Memory alignment for O_DIRECT (the largest logical block size in use).
const ALIGN: usize = 4096;

/// A [`BLOCK`]-sized buffer aligned to [`ALIGN`] (no unsafe: a larger
/// vector, used from its first aligned byte).
struct Aligned {
    storage: Vec<u8>,
    offset: usize,
}

impl Aligned {
    fn new() -> Aligned {
        let storage = vec![0u8; BLOCK + ALIGN];
        let offset = storage.as_ptr().align_offset(ALIGN);
        Aligned { storage, offset }
    }

    fn buf(&mut self) -> &mut [u8] {
        &mut self.storage[self.offset..self.offset + BLOCK]
    }
}

/// Reads until `buf` is full or the reader ends; returns the bytes read.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Opens the disk for writing: O_DIRECT, and O_EXCL, which the kernel
/// refuses with EBUSY while anything (a mount, swap, device-mapper) uses it.
pub fn open_exclusive(disk: &Disk) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_DIRECT | nix::libc::O_EXCL)
        .open(&disk.path)
        .map_err(|e| match e.raw_os_error() {
            Some(nix::libc::EBUSY) => crate::exit::Error::Refused(format!(
                "{} is busy (the kernel refused exclusive access: mounted, swap, RAID or device-mapper member); free it or pick another disk",
                disk.path.display()
            ))
            .into(),
            Some(nix::libc::EACCES | nix::libc::EPERM) => anyhow::anyhow!(
                "no permission to write {}: run keel flash as root (sudo)",
                disk.path.display()
            ),
            _ => anyhow::Error::new(e).context(format!("opening {} for writing", disk.path.display())),
        })
}

/// Writes the first `size` bytes of `image` to the disk; returns their SHA-256.
pub fn write_image(
    image: &Path,
    size: u64,
    disk: &Disk,
    dev: &mut std::fs::File,
) -> anyhow::Result<[u8; 32]> {
    let src = std::fs::File::open(image).with_context(|| format!("opening {}", image.display()))?;
    let mut src = src.take(size);
    let mut mem = Aligned::new();
    let mut hash = Sha256::new();
    let lb = disk.logical_block.max(1) as usize;
    let name = image
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut progress = Transfer::start(&format!("writing {name} to {}", disk.path.display()), size);
    loop {
        let buf = mem.buf();
        let n = fill(&mut src, buf).with_context(|| format!("reading {}", image.display()))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        let len = n.div_ceil(lb) * lb;
        buf[n..len].fill(0);
        dev.write_all(&buf[..len])
            .with_context(|| format!("writing to {}", disk.path.display()))?;
        progress.advance(n as u64);
        if n < BLOCK {
            break;
        }
    }
    dev.sync_all()
        .with_context(|| format!("flushing {}", disk.path.display()))?;
    progress.finish();
    Ok(hash.finalize().into())
}

/// Reads the first `size` bytes of the disk back (O_DIRECT); returns their SHA-256.
pub fn read_back(disk: &Disk, size: u64) -> anyhow::Result<[u8; 32]> {
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECT)
        .open(&disk.path)
        .with_context(|| format!("opening {} to read it back", disk.path.display()))?;
    let lb = disk.logical_block.max(1);
    let mut dev = dev.take(size.div_ceil(lb) * lb);
    let mut mem = Aligned::new();
    let mut hash = Sha256::new();
    let mut left = size;
    let mut progress = Transfer::start(&format!("reading {} back", disk.path.display()), size);
    while left > 0 {
        let buf = mem.buf();
        let n =
            fill(&mut dev, buf).with_context(|| format!("reading {} back", disk.path.display()))?;
        if n == 0 {
            anyhow::bail!(
                "{} ended after {} bytes while reading back {size}",
                disk.path.display(),
                size - left
            );
        }
        let take = (n as u64).min(left) as usize;
        hash.update(&buf[..take]);
        left -= take as u64;
        progress.advance(take as u64);
    }
    progress.finish();
    Ok(hash.finalize().into())
}

/// Zeros the first and last MiB of the image's span (both GPT headers), so
/// a disk holding a wrong or partial image does not boot it.
pub fn erase_partition_tables(dev: &mut std::fs::File, disk: &Disk, size: u64) {
    use std::io::{Seek as _, SeekFrom};
    let mut mem = Aligned::new();
    let mib: u64 = 1 << 20;
    let buf = &mut mem.buf()[..mib as usize];
    buf.fill(0);
    let tail = size.saturating_sub(mib) / mib * mib;
    for at in [0, tail] {
        let r = dev
            .seek(SeekFrom::Start(at))
            .and_then(|_| dev.write_all(buf))
            .and_then(|()| dev.sync_all());
        if let Err(e) = r {
            tracing::warn!(
                "erasing the partition table of {} at {at}: {e}",
                disk.path.display()
            );
        }
    }
}
