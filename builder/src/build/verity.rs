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
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{bail, Context as _};
use sha2::{Digest, Sha256};

use super::sfdisk::Partition;

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

mod rehash;

pub use rehash::{make_deterministic, Rehashed};

#[cfg(test)]
mod tests;
