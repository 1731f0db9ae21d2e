//! The re-hashing itself ([`make_deterministic`]): the steps the module
//! documentation of [`super`] lists, run on a built raw image with the real
//! `veritysetup`, `sfdisk` and mtools.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};
use keel_cmd::{CommandRunExt as _, Task};

use super::{
    check_labels, derive_salt, derive_uuid, find_in_file, parse_root_hash, partition_uuids,
    patch_uki, Superblock, VERITY_PAIRS,
};
use crate::build::esp::ESP_TYPE;
use crate::build::sfdisk::{Partition, Table};
use crate::fsutil::sha256_file;

/// What [`make_deterministic`] changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rehashed {
    pub old_roothash: String,
    pub new_roothash: String,
}

/// Re-hashes the verity partition of `raw` with a salt and UUID derived
/// from `seed`, and carries the new root hash into the GPT, the standalone
/// UKI `uki` and the UKI in the ESP. `None` when the image has no verity
/// partition, or it already has the derived salt and UUID.
pub fn make_deterministic(raw: &Path, uki: &Path, seed: &str) -> anyhow::Result<Option<Rehashed>> {
    let table = Table::load(raw)?;
    let Some((data_type, data, hash)) = VERITY_PAIRS
        .iter()
        .find_map(|(d, v)| Some((*d, table.find_type(d)?.clone(), table.find_type(v)?.clone())))
    else {
        return Ok(None);
    };
    let uki_bytes = std::fs::read(uki).with_context(|| format!("reading {}", uki.display()))?;
    let old = crate::build::outputs::roothash_from_uki(&uki_bytes)
        .context("the UKI's command line has no roothash=")?;
    check_labels(&data, &hash, &old).context("before re-hashing")?;

    let dir = tempfile::tempdir_in(raw.parent().unwrap_or(Path::new(".")))
        .context("creating a temp dir beside the image")?;
    let hash_range = table.byte_range(&hash);
    let data_range = table.byte_range(&data);
    let sb = read_superblock(raw, hash_range, dir.path())?;
    let salt = if sb.salt == "-" {
        "-".to_string()
    } else {
        derive_salt(seed, data_type, sb.salt.len() / 2)
    };
    let uuid = derive_uuid(seed, data_type);
    if sb.salt == salt && sb.uuid == uuid {
        tracing::debug!("verity salt and UUID already derived from the seed");
        return Ok(None);
    }
    if sb.data_blocks * sb.data_block_size > data_range.1 {
        bail!(
            "the verity superblock covers {} bytes but the root partition has {}",
            sb.data_blocks * sb.data_block_size,
            data_range.1
        );
    }

    let (new, data_tmp, tree) = format_tree(raw, &sb, &salt, &uuid, data_range, dir.path())?;
    if new.len() != old.len() {
        bail!("new root hash {new} is not as long as the old {old}");
    }
    write_tree(raw, &tree, &data_tmp, hash_range, &new)?;
    drop(dir);

    relabel(raw, &data, &hash, &new)?;
    let patched = patch_uki(&uki_bytes, &old, &new).context("patching the UKI")?;
    keel_cmd::fs::write_atomic(uki, &patched, 0o644)
        .with_context(|| format!("writing {}", uki.display()))?;
    let esp = table
        .find_type(ESP_TYPE)
        .context("verity image without an ESP")?;
    patch_esp(raw, &table, esp, &old, &new, &sha256_file(uki)?)?;
    check_gone(raw, &old)?;
    tracing::info!(old = %old, new = %new, "verity root hash now derived from the seed");
    Ok(Some(Rehashed {
        old_roothash: old,
        new_roothash: new,
    }))
}

/// The superblock mkosi wrote at the start of the verity partition
/// (`veritysetup dump` of a copy in `dir`).
fn read_superblock(
    raw: &Path,
    (hash_off, hash_len): (u64, u64),
    dir: &Path,
) -> anyhow::Result<Superblock> {
    let hash_tmp = dir.join("verity.old");
    copy_out(raw, hash_off, hash_len, &hash_tmp)?;
    let sb = Superblock::parse(
        &Command::new("veritysetup")
            .arg("dump")
            .arg(&hash_tmp)
            .run_get_string()?,
    )
    .context("reading the verity superblock")?;
    std::fs::remove_file(&hash_tmp)?;
    Ok(sb)
}

/// `veritysetup format` of a copy of the root partition (in `dir`) with the
/// superblock's parameters and the given salt and UUID; returns the new
/// root hash, the copy and the new hash tree.
fn format_tree(
    raw: &Path,
    sb: &Superblock,
    salt: &str,
    uuid: &str,
    (data_off, data_len): (u64, u64),
    dir: &Path,
) -> anyhow::Result<(String, PathBuf, PathBuf)> {
    let data_tmp = dir.join("root");
    copy_out(raw, data_off, data_len, &data_tmp)?;
    let tree = dir.join("verity.new");
    File::create(&tree)?;
    let mut task = Task::new(
        "Re-hashing the root's dm-verity tree with a salt derived from the seed",
        "veritysetup",
    )
    .args([
        "format".to_string(),
        format!("--hash={}", sb.algorithm),
        format!("--data-block-size={}", sb.data_block_size),
        format!("--hash-block-size={}", sb.hash_block_size),
        format!("--format={}", sb.hash_type),
        format!("--data-blocks={}", sb.data_blocks),
        format!("--salt={salt}"),
        format!("--uuid={uuid}"),
    ]);
    task.cmd().arg(&data_tmp).arg(&tree);
    let printed = task.run_get_string()?;
    let new = parse_root_hash(&printed)?;
    Ok((new, data_tmp, tree))
}

/// Writes the new hash tree over the verity partition (zero-filled) and has
/// `veritysetup verify` check it in place against the root partition's copy.
fn write_tree(
    raw: &Path,
    tree: &Path,
    data_tmp: &Path,
    (hash_off, hash_len): (u64, u64),
    new: &str,
) -> anyhow::Result<()> {
    let tree_len = std::fs::metadata(tree)?.len();
    if tree_len > hash_len {
        bail!("the new hash tree ({tree_len} bytes) does not fit the verity partition ({hash_len} bytes)");
    }
    copy_in(tree, raw, hash_off, hash_len).context("writing the hash tree")?;
    Command::new("veritysetup")
        .arg("verify")
        .arg(format!("--hash-offset={hash_off}"))
        .arg(data_tmp)
        .arg(raw)
        .arg(new)
        .run()
        .context("checking the new hash tree in the image")?;
    Ok(())
}

/// Sets both partitions' UUIDs to the halves of the new root hash, and
/// checks sfdisk changed nothing else.
fn relabel(raw: &Path, data: &Partition, hash: &Partition, new: &str) -> anyhow::Result<()> {
    let (data_uuid, hash_uuid) = partition_uuids(new)?;
    for (p, u) in [(data, &data_uuid), (hash, &hash_uuid)] {
        let n = p.number().context("partition without a number")?;
        Command::new("sfdisk")
            .arg("--part-uuid")
            .arg(raw)
            .arg(n.to_string())
            .arg(u)
            .run()
            .context("setting the partition UUID")?;
    }
    let relabelled = Table::load(raw)?;
    for p in [data, hash] {
        let q = relabelled
            .partitions
            .iter()
            .find(|q| q.node == p.node)
            .context("partition gone after relabelling")?;
        if (q.start, q.size, &q.type_guid, &q.name) != (p.start, p.size, &p.type_guid, &p.name) {
            bail!("sfdisk changed more than partition {}'s UUID", p.node);
        }
    }
    check_labels(
        relabelled.find_type(&data.type_guid).context("root gone")?,
        relabelled
            .find_type(&hash.type_guid)
            .context("verity gone")?,
        new,
    )
    .context("after re-hashing")
}

/// Copies `len` bytes at `offset` of `image` into the file `dest`.
fn copy_out(image: &Path, offset: u64, len: u64, dest: &Path) -> anyhow::Result<()> {
    let mut f = File::open(image)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut out = File::create(dest)?;
    let n = std::io::copy(&mut f.take(len), &mut out)?;
    if n != len {
        bail!("{} ends inside a partition", image.display());
    }
    Ok(())
}

/// Writes `src` at `offset` of `image` and zeroes the rest of `len` bytes.
fn copy_in(src: &Path, image: &Path, offset: u64, len: u64) -> anyhow::Result<()> {
    let mut out = std::fs::OpenOptions::new().write(true).open(image)?;
    out.seek(SeekFrom::Start(offset))?;
    let n = std::io::copy(&mut File::open(src)?, &mut out)?;
    let mut left = len
        .checked_sub(n)
        .context("hash tree larger than its partition")?;
    let zeros = vec![0u8; 1 << 20];
    while left > 0 {
        let k = left.min(zeros.len() as u64) as usize;
        out.write_all(&zeros[..k])?;
        left -= k as u64;
    }
    out.sync_all()?;
    Ok(())
}

/// Replaces the old hash in the ESP's copy of the UKI (in place: same
/// length, same clusters), renames files whose names carry it, and checks
/// the ESP's UKI is now byte-identical to the standalone one.
fn patch_esp(
    raw: &Path,
    table: &Table,
    esp: &Partition,
    old: &str,
    new: &str,
    uki_sha: &str,
) -> anyhow::Result<()> {
    let (off, len) = table.byte_range(esp);
    let needle = format!("roothash={old}");
    let hits = find_in_file(raw, off, len, &[needle.as_bytes()])?;
    let at = match hits.as_slice() {
        [(_, at)] => *at,
        [] => bail!("the ESP has no contiguous `{needle}`: is the UKI missing or fragmented?"),
        _ => bail!(
            "the ESP has {} copies of `{needle}`, expected one",
            hits.len()
        ),
    };
    let mut f = std::fs::OpenOptions::new().write(true).open(raw)?;
    f.seek(SeekFrom::Start(at + "roothash=".len() as u64))?;
    f.write_all(new.as_bytes())?;
    f.sync_all()?;
    drop(f);

    let img = format!("{}@@{off}", raw.display());
    let listing = Command::new("mdir")
        .args(["-/", "-b", "-i", &img, "::/"])
        .run_get_string()
        .context("listing the ESP")?;
    for path in listing.lines().map(|l| l.trim_end_matches('/')) {
        if path.contains(old) {
            Command::new("mren")
                .args(["-i", &img, path, &path.replace(old, new)])
                .run()
                .context("renaming in the ESP")?;
        }
    }
    let listing = Command::new("mdir")
        .args(["-/", "-b", "-i", &img, "::/"])
        .run_get_string()
        .context("listing the ESP")?;
    if let Some(l) = listing.lines().find(|l| l.contains(old)) {
        bail!("the ESP still has {l}");
    }
    let tmp = tempfile::tempdir()?;
    let mut matched = Vec::new();
    for path in listing
        .lines()
        .filter(|l| l.starts_with("::/EFI/Linux/") && l.to_ascii_lowercase().ends_with(".efi"))
    {
        let dest = tmp.path().join("uki.efi");
        Command::new("mcopy")
            .args(["-n", "-i", &img, path])
            .arg(&dest)
            .run()
            .context("reading the UKI back from the ESP")?;
        if sha256_file(&dest)? == uki_sha {
            matched.push(path.to_string());
        }
    }
    if matched.is_empty() {
        bail!("no UKI in the ESP's /EFI/Linux equals the patched standalone UKI");
    }
    tracing::debug!(?matched, "the ESP's UKI equals the standalone UKI");
    Ok(())
}

/// Fails when the old root hash still appears anywhere in the image: as
/// text (either case, UTF-8 or UTF-16), as bytes, or as either GPT UUID.
fn check_gone(raw: &Path, old: &str) -> anyhow::Result<()> {
    let lower = old.to_ascii_lowercase();
    let upper = old.to_ascii_uppercase();
    let utf16: Vec<u8> = lower.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let bytes = hex::decode(&lower).context("root hash is not hex")?;
    // GPT stores a GUID's first three fields little-endian.
    let gpt = |b: &[u8]| -> Vec<u8> {
        let mut g = b.to_vec();
        g[0..4].reverse();
        g[4..6].reverse();
        g[6..8].reverse();
        g
    };
    let n = bytes.len();
    let needles: Vec<Vec<u8>> = vec![
        lower.into_bytes(),
        upper.into_bytes(),
        utf16,
        bytes.clone(),
        gpt(&bytes[..16]),
        gpt(&bytes[n - 16..]),
    ];
    let refs: Vec<&[u8]> = needles.iter().map(Vec::as_slice).collect();
    let len = std::fs::metadata(raw)?.len();
    let hits = find_in_file(raw, 0, len, &refs)?;
    if let Some((i, at)) = hits.first() {
        bail!(
            "the old root hash is still in {} at byte {at} (form {i}) after re-hashing",
            raw.display()
        );
    }
    Ok(())
}
