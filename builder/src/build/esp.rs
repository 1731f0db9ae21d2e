//! Deterministic ESP: stamps the vfat volume label's directory entry with
//! `SOURCE_DATE_EPOCH`.
//!
//! Why this exists: systemd-repart formats the ESP with mkfs.fat, and
//! mkfs.fat 4.2 (Debian 12) writes the build's wall-clock time into the
//! volume label entry of the root directory; it ignores
//! `SOURCE_DATE_EPOCH`. Everything else in the ESP already has fixed times
//! (mkosi normalises them), so those few bytes alone made two builds of the
//! same lock differ. This step rewrites only that entry's date and time
//! fields, in place. [`root_dir_range`] and [`stamp_label`] are pure.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{bail, Context as _};

use super::sfdisk::Table;

/// The ESP partition type GUID.
pub const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";

fn le16(b: &[u8], at: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn le32(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]))
}

/// Where the root directory starts and how many bytes of it to look at (the
/// fixed root region of FAT12/16, the first cluster on FAT32), from the
/// boot sector. Offsets are relative to the start of the file system.
pub fn root_dir_range(boot: &[u8]) -> anyhow::Result<(u64, u64)> {
    if boot.len() < 512 || boot[510..512] != [0x55, 0xaa] {
        bail!("no FAT boot sector");
    }
    let bytes_per_sector = le16(boot, 11);
    let per_cluster = u64::from(boot[13]);
    let reserved = le16(boot, 14);
    let fats = u64::from(boot[16]);
    let root_entries = le16(boot, 17);
    let fat_size = match le16(boot, 22) {
        0 => le32(boot, 36),
        n => n,
    };
    if bytes_per_sector == 0 || per_cluster == 0 || fats == 0 || fat_size == 0 {
        bail!("not a FAT file system");
    }
    let fat_end = (reserved + fats * fat_size) * bytes_per_sector;
    if root_entries != 0 {
        return Ok((fat_end, root_entries * 32));
    }
    let root_cluster = le32(boot, 44);
    if root_cluster < 2 {
        bail!("FAT32 root cluster {root_cluster}");
    }
    let cluster = per_cluster * bytes_per_sector;
    Ok((fat_end + (root_cluster - 2) * cluster, cluster))
}

/// FAT (date, time) for a Unix time, in UTC.
fn fat_datetime(epoch: i64) -> anyhow::Result<(u16, u16)> {
    let t = time::OffsetDateTime::from_unix_timestamp(epoch).context("SOURCE_DATE_EPOCH")?;
    let year = t.year() - 1980;
    if !(0..128).contains(&year) {
        bail!("{} cannot be stored in a FAT date", t.year());
    }
    let date = ((year as u16) << 9) | ((t.month() as u16) << 5) | u16::from(t.day());
    let time =
        (u16::from(t.hour()) << 11) | (u16::from(t.minute()) << 5) | u16::from(t.second() / 2);
    Ok((date, time))
}

/// Sets the creation, access and modification times of the volume label
/// entry in `dir` to `epoch`. Returns whether `dir` had a label entry.
pub fn stamp_label(dir: &mut [u8], epoch: i64) -> anyhow::Result<bool> {
    let (date, time) = fat_datetime(epoch)?;
    for e in dir.chunks_exact_mut(32) {
        match e[0] {
            0x00 => break,
            0xe5 => continue,
            _ => {}
        }
        // 0x08: volume label; 0x0f (long-name piece) also has the bit set.
        if e[11] & 0x08 == 0 || e[11] & 0x0f == 0x0f {
            continue;
        }
        e[13] = 0;
        e[14..16].copy_from_slice(&time.to_le_bytes());
        e[16..18].copy_from_slice(&date.to_le_bytes());
        e[18..20].copy_from_slice(&date.to_le_bytes());
        e[22..24].copy_from_slice(&time.to_le_bytes());
        e[24..26].copy_from_slice(&date.to_le_bytes());
        return Ok(true);
    }
    Ok(false)
}

/// Stamps the volume label entry of the ESP in `raw` with `epoch`. Does
/// nothing for an image without an ESP, or an ESP without a label entry.
pub fn normalize(raw: &Path, epoch: i64) -> anyhow::Result<()> {
    let table = Table::load(raw)?;
    let Some(esp) = table.find_type(ESP_TYPE) else {
        return Ok(());
    };
    let (off, len) = table.byte_range(esp);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(raw)?;
    let mut boot = vec![0u8; 512];
    f.seek(SeekFrom::Start(off))?;
    f.read_exact(&mut boot)?;
    let (dir_off, dir_len) = root_dir_range(&boot).context("reading the ESP's boot sector")?;
    if dir_off + dir_len > len {
        bail!("the ESP's root directory lies outside the partition");
    }
    let mut dir = vec![0u8; dir_len as usize];
    f.seek(SeekFrom::Start(off + dir_off))?;
    f.read_exact(&mut dir)?;
    if stamp_label(&mut dir, epoch)? {
        f.seek(SeekFrom::Start(off + dir_off))?;
        f.write_all(&dir)?;
        f.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FAT32 boot sector: 512-byte sectors, 8 per cluster, 32 reserved,
    /// 2 FATs of 100 sectors, root in cluster 2.
    fn fat32_boot() -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[11..13].copy_from_slice(&512u16.to_le_bytes());
        b[13] = 8;
        b[14..16].copy_from_slice(&32u16.to_le_bytes());
        b[16] = 2;
        b[36..40].copy_from_slice(&100u32.to_le_bytes());
        b[44..48].copy_from_slice(&2u32.to_le_bytes());
        b[510] = 0x55;
        b[511] = 0xaa;
        b
    }

    #[test]
    fn root_directory_is_found_on_fat32_and_fat16() {
        assert_eq!(
            root_dir_range(&fat32_boot()).expect("fat32"),
            ((32 + 200) * 512, 8 * 512)
        );
        let mut b = fat32_boot();
        b[17..19].copy_from_slice(&512u16.to_le_bytes());
        b[22..24].copy_from_slice(&50u16.to_le_bytes());
        assert_eq!(
            root_dir_range(&b).expect("fat16"),
            ((32 + 100) * 512, 512 * 32)
        );
        assert!(root_dir_range(&[0u8; 512]).is_err());
    }

    #[test]
    fn only_the_label_entry_gets_the_epoch() {
        let mut dir = vec![0u8; 32 * 4];
        let entry = |name: &[u8; 11], attr: u8| {
            let mut e = [0x11u8; 32];
            e[..11].copy_from_slice(name);
            e[11] = attr;
            e
        };
        dir[..32].copy_from_slice(&entry(b"LONGNAMEPRT", 0x0f));
        dir[32..64].copy_from_slice(&entry(b"ESP        ", 0x08));
        dir[64..96].copy_from_slice(&entry(b"EFI        ", 0x10));
        let before = dir.clone();
        // 2026-11-30 02:21:41 UTC (test-tiny's lock date).
        assert!(stamp_label(&mut dir, 1_796_005_301).expect("stamps"));
        assert_eq!(dir[..32], before[..32], "long-name entries untouched");
        assert_eq!(dir[64..], before[64..], "other entries untouched");
        let e = &dir[32..64];
        let date = ((2026 - 1980) << 9) | (11 << 5) | 30u16;
        let time = (2 << 11) | (21 << 5) | 20u16;
        assert_eq!(e[..13], before[32..45], "name and attributes kept");
        assert_eq!(e[13], 0);
        assert_eq!(e[14..16], time.to_le_bytes());
        assert_eq!(e[16..18], date.to_le_bytes());
        assert_eq!(e[18..20], date.to_le_bytes());
        assert_eq!(e[20..22], before[52..54], "cluster high word kept");
        assert_eq!(e[22..24], time.to_le_bytes());
        assert_eq!(e[24..26], date.to_le_bytes());
        assert_eq!(e[26..], before[58..64]);
        let mut none = vec![0u8; 64];
        assert!(!stamp_label(&mut none, 1_796_005_301).expect("no label"));
        assert!(
            stamp_label(&mut dir, 0).is_err(),
            "1970 is before FAT's epoch"
        );
    }
}
