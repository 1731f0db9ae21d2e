//! Deterministic dm-verity: re-hashes the root's verity partition with a
//! salt and superblock UUID derived from the build seed.
//!
//! Why this exists: systemd-repart 254 (the newest Debian 12 has) formats
//! dm-verity with a random salt and a random superblock UUID; a salt
//! derived from `Seed=` only arrived in systemd 255. So two builds of the
//! same definition and lock differ in the verity partition, hence in the
//! root hash, and through it in the UKI's command line, the ESP, the raw
//! disk and the qcow2: the build is not reproducible. This step, run after
//! mkosi and before anything is hashed, redoes what repart did with fixed
//! inputs:
//!
//! 1. find the root partition and its verity partition in the GPT;
//! 2. read the verity superblock mkosi wrote (`veritysetup dump`) and keep
//!    its hash algorithm, block sizes, block count and format, changing only
//!    salt and UUID;
//! 3. `veritysetup format` the root partition's bytes again into a temp
//!    file and write that over the verity partition (zero-filled);
//! 4. re-label both partitions: repart sets the root partition's UUID to
//!    the first 128 bits of the root hash and the verity partition's to the
//!    last 128 (Discoverable Partitions Specification), which is checked on
//!    the original image before anything changes;
//! 5. replace `roothash=OLD` in the UKI's `.cmdline` (the standalone
//!    `NAME.efi` and its copy in the ESP, byte for byte, same length), and
//!    rename the UKI in the ESP, whose file name carries the hash too;
//! 6. check the ESP's UKI equals the standalone one and that the old hash
//!    appears nowhere in the image any more.
//!
//! Nothing here is needed once the build host's systemd-repart derives the
//! salt from the seed itself; the step stays correct then (it only changes
//! salt and UUID, and does nothing when they already have the derived values).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context as _};
use keel_cmd::{CommandRunExt as _, Task};
use sha2::{Digest, Sha256};

use super::esp::ESP_TYPE;
use super::sfdisk::{Partition, Table};
use crate::fsutil::sha256_file;

/// (data, verity) partition type GUID pairs from the Discoverable
/// Partitions Specification: root on x86-64 and on arm64.
const VERITY_PAIRS: &[(&str, &str)] = &[
    (
        "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
        "2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5",
    ),
    (
        "B921B045-1DF0-41C3-AF44-4C6F280D3FAE",
        "DF3300CE-D69F-4C92-978C-9BFB0F38D820",
    ),
];

/// The parameters of a dm-verity superblock, as `veritysetup dump` prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    pub uuid: String,
    pub hash_type: u32,
    pub data_blocks: u64,
    pub data_block_size: u64,
    pub hash_block_size: u64,
    pub algorithm: String,
    /// Hex, or `-` for none.
    pub salt: String,
}

/// `Key: value` lines of veritysetup's output.
fn field<'a>(text: &'a str, key: &str) -> anyhow::Result<&'a str> {
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim())
        })
        .with_context(|| format!("veritysetup printed no `{key}:`"))
}

fn number<T: std::str::FromStr>(text: &str, key: &str) -> anyhow::Result<T> {
    let v = field(text, key)?;
    v.parse()
        .map_err(|_| anyhow::anyhow!("veritysetup's `{key}: {v}` is not a number"))
}

impl Superblock {
    /// Parses `veritysetup dump` output.
    pub fn parse(dump: &str) -> anyhow::Result<Superblock> {
        Ok(Superblock {
            uuid: field(dump, "UUID")?.to_string(),
            hash_type: number(dump, "Hash type")?,
            data_blocks: number(dump, "Data blocks")?,
            data_block_size: number(dump, "Data block size")?,
            hash_block_size: number(dump, "Hash block size")?,
            algorithm: field(dump, "Hash algorithm")?.to_string(),
            salt: field(dump, "Salt")?.to_string(),
        })
    }
}

/// The root hash `veritysetup format` printed.
pub fn parse_root_hash(format_output: &str) -> anyhow::Result<String> {
    let h = field(format_output, "Root hash")?;
    if h.len() < 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("veritysetup printed `Root hash: {h}`, not a hash");
    }
    Ok(h.to_ascii_lowercase())
}

/// `len` bytes derived from the seed for one purpose (`label`) and one
/// partition type: sha256 blocks over `keel-verity-LABEL:TYPE:SEED:COUNTER`.
fn derive(seed: &str, label: &str, part_type: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut counter = 0u32;
    while out.len() < len {
        let input = format!(
            "keel-verity-{label}:{}:{seed}:{counter}",
            part_type.to_ascii_lowercase()
        );
        out.extend_from_slice(&Sha256::digest(input.as_bytes()));
        counter += 1;
    }
    out.truncate(len);
    out
}

/// The verity salt for a partition type: `len` bytes (the length repart
/// chose) as hex.
pub fn derive_salt(seed: &str, part_type: &str, len: usize) -> String {
    hex::encode(derive(seed, "salt", part_type, len))
}

/// The verity superblock UUID for a partition type, shaped as a version 4 UUID.
pub fn derive_uuid(seed: &str, part_type: &str) -> String {
    let mut b = derive(seed, "uuid", part_type, 16);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The GPT partition UUIDs systemd-repart gives a verity pair for a root
/// hash: (data, verity) = (first 128 bits, last 128 bits), uppercase like sfdisk.
pub fn partition_uuids(roothash: &str) -> anyhow::Result<(String, String)> {
    if roothash.len() < 64 || !roothash.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("`{roothash}` is not a root hash");
    }
    let uuid = |h: &str| {
        let h = h.to_ascii_uppercase();
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    };
    let n = roothash.len();
    Ok((uuid(&roothash[..32]), uuid(&roothash[n - 32..])))
}

/// Why a UKI's root hash could not be replaced.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("the UKI is not a PE file: {0}")]
    NotPe(String),
    #[error("the UKI carries an Authenticode signature: patching its command line would break it (sign after the verity step)")]
    Signed,
    #[error("the UKI has no .cmdline section")]
    NoCmdline,
    #[error("the UKI does not contain `roothash={0}`")]
    NotFound(String),
    #[error(
        "the UKI contains the root hash {count} times, expected once (as `roothash=` in .cmdline)"
    )]
    Ambiguous { count: usize },
    #[error("the UKI's `roothash=` is outside its .cmdline section")]
    OutsideCmdline,
    #[error("the new root hash has another length than the old one")]
    Length,
}

/// Replaces `roothash=OLD` with `roothash=NEW` in a UKI. The old hash must
/// appear exactly once in the whole file, as `roothash=` inside `.cmdline`.
pub fn patch_uki(pe: &[u8], old: &str, new: &str) -> Result<Vec<u8>, PatchError> {
    use object::read::pe::PeFile64;
    use object::LittleEndian as LE;
    if old.len() != new.len() {
        return Err(PatchError::Length);
    }
    let file = PeFile64::parse(pe).map_err(|e| PatchError::NotPe(e.to_string()))?;
    let signed = file
        .data_directory(object::pe::IMAGE_DIRECTORY_ENTRY_SECURITY)
        .is_some_and(|d| d.size.get(LE) != 0);
    if signed {
        return Err(PatchError::Signed);
    }
    let (start, size) = file
        .section_table()
        .iter()
        .find(|s| s.raw_name() == b".cmdline")
        .map(|s| s.pe_file_range())
        .ok_or(PatchError::NoCmdline)?;
    let (start, end) = (start as usize, start as usize + size as usize);
    let hits: Vec<usize> = memchr::memmem::find_iter(pe, old.as_bytes()).collect();
    let pos = match hits.as_slice() {
        [] => return Err(PatchError::NotFound(old.to_string())),
        [p] => *p,
        _ => return Err(PatchError::Ambiguous { count: hits.len() }),
    };
    let key = b"roothash=";
    if pos < key.len() || &pe[pos - key.len()..pos] != key {
        return Err(PatchError::NotFound(old.to_string()));
    }
    if pos - key.len() < start || pos + old.len() > end {
        return Err(PatchError::OutsideCmdline);
    }
    let mut out = pe.to_vec();
    out[pos..pos + new.len()].copy_from_slice(new.as_bytes());
    Ok(out)
}

/// Absolute offsets of every needle in `len` bytes of `file` from `offset`,
/// as (needle index, offset), in file order.
pub fn find_in_file(
    file: &Path,
    offset: u64,
    len: u64,
    needles: &[&[u8]],
) -> std::io::Result<Vec<(usize, u64)>> {
    const CHUNK: usize = 16 << 20;
    let keep = needles.iter().map(|n| n.len()).max().unwrap_or(1).max(1) - 1;
    let finders: Vec<_> = needles.iter().map(memchr::memmem::Finder::new).collect();
    let mut f = File::open(file)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut f = f.take(len);
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK + keep);
    // Offset in the file of buf[0], and how many bytes of buf were already searched.
    let mut base = offset;
    let mut carried = 0usize;
    let mut hits = Vec::new();
    loop {
        let old = buf.len();
        buf.resize(old + CHUNK, 0);
        let n = f.read(&mut buf[old..])?;
        buf.truncate(old + n);
        if n == 0 {
            break;
        }
        for (i, fd) in finders.iter().enumerate() {
            for p in fd.find_iter(&buf) {
                // A match wholly inside the carried tail was reported last round.
                if p + needles[i].len() > carried {
                    hits.push((i, base + p as u64));
                }
            }
        }
        let cut = buf.len().saturating_sub(keep);
        buf.drain(..cut);
        base += cut as u64;
        carried = buf.len();
    }
    hits.sort_by_key(|&(i, at)| (at, i));
    Ok(hits)
}

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
    let old = super::outputs::roothash_from_uki(&uki_bytes)
        .context("the UKI's command line has no roothash=")?;
    check_labels(&data, &hash, &old).context("before re-hashing")?;

    let dir = tempfile::tempdir_in(raw.parent().unwrap_or(Path::new(".")))
        .context("creating a temp dir beside the image")?;
    let (hash_off, hash_len) = table.byte_range(&hash);
    let (data_off, data_len) = table.byte_range(&data);
    let hash_tmp = dir.path().join("verity.old");
    copy_out(raw, hash_off, hash_len, &hash_tmp)?;
    let sb = Superblock::parse(
        &Command::new("veritysetup")
            .arg("dump")
            .arg(&hash_tmp)
            .run_get_string()?,
    )
    .context("reading the verity superblock")?;
    std::fs::remove_file(&hash_tmp)?;
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
    if sb.data_blocks * sb.data_block_size > data_len {
        bail!(
            "the verity superblock covers {} bytes but the root partition has {data_len}",
            sb.data_blocks * sb.data_block_size
        );
    }

    let data_tmp = dir.path().join("root");
    copy_out(raw, data_off, data_len, &data_tmp)?;
    let tree = dir.path().join("verity.new");
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
    if new.len() != old.len() {
        bail!("new root hash {new} is not as long as the old {old}");
    }
    let tree_len = std::fs::metadata(&tree)?.len();
    if tree_len > hash_len {
        bail!("the new hash tree ({tree_len} bytes) does not fit the verity partition ({hash_len} bytes)");
    }
    copy_in(&tree, raw, hash_off, hash_len).context("writing the hash tree")?;
    Command::new("veritysetup")
        .arg("verify")
        .arg(format!("--hash-offset={hash_off}"))
        .arg(&data_tmp)
        .arg(raw)
        .arg(&new)
        .run()
        .context("checking the new hash tree in the image")?;
    drop(dir);

    let (data_uuid, hash_uuid) = partition_uuids(&new)?;
    for (p, u) in [(&data, &data_uuid), (&hash, &hash_uuid)] {
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
    for p in [&data, &hash] {
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
        &new,
    )
    .context("after re-hashing")?;

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

/// Checks that repart's partition UUIDs are the halves of `roothash`.
fn check_labels(data: &Partition, hash: &Partition, roothash: &str) -> anyhow::Result<()> {
    let (want_data, want_hash) = partition_uuids(roothash)?;
    let have = |p: &Partition| p.uuid.clone().unwrap_or_default().to_ascii_uppercase();
    if have(data) != want_data || have(hash) != want_hash {
        bail!(
            "partition UUIDs {} and {} are not the halves of root hash {roothash}: systemd-repart labels verity partitions differently than this step assumes",
            have(data),
            have(hash)
        );
    }
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

#[cfg(test)]
mod tests;
