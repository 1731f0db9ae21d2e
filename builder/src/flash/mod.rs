//! `keel flash RELEASE_DIR DEVICE --key release.pub`: a field technician
//! writes a signed release to a node's disk (or a USB stick to boot it from).
//!
//! In order: the release is verified with [`crate::release::verify::verify_dir`]
//! (manifest signature, every artifact's size, digest and signature); the
//! disk is checked ([`device`]: whole disk, not in use, not the running
//! system, large enough); the technician confirms (types the disk's name,
//! or `--yes`); the raw image is written ([`write`]) while being hashed, then
//! read back; both hashes must equal the signed manifest's. Nothing is
//! written before every check passed. The summary names what the node will
//! report when it enrolls (image name, version, dm-verity root hash).

pub mod device;
pub mod write;

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::Args;
use indicatif::BinaryBytes;
use keel_manifest::{Artifact, Manifest};

use crate::exit::Error::{Refused, Verification};
use crate::release::{sign, verify, MANIFEST_FILE};

/// Options of `keel flash`.
#[derive(Debug, Args)]
pub struct FlashArgs {
    /// Release directory (manifest.json, its signature, NAME.raw and its signature).
    pub release_dir: PathBuf,
    /// The whole disk to overwrite, e.g. /dev/sdb (not a partition).
    pub device: PathBuf,
    /// The release public key (PEM, as for `keel verify`).
    #[arg(long)]
    pub key: PathBuf,
    /// Which raw image of the release to write, when it holds several.
    #[arg(long)]
    pub image: Option<String>,
    /// Do not ask for confirmation (scripts). Without it, stdin must be a
    /// terminal and the disk's name must be typed.
    #[arg(long)]
    pub yes: bool,
}

/// What was verified and will be written.
struct Release {
    manifest: Manifest,
    raw: Artifact,
    checks: usize,
    skipped: Vec<String>,
}

/// Verifies the release, then loads the manifest from the bytes whose
/// signature is checked once more here (the manifest used is the signed one,
/// even if the file was replaced after `verify_dir` read it).
fn verified_release(dir: &Path, key: &Path, image: Option<&str>) -> anyhow::Result<Release> {
    let report = verify::verify_dir(dir, key)
        .with_context(|| format!("verifying the release in {}", dir.display()))?;
    if let Some(f) = &report.failure {
        return Err(Verification(format!(
            "the release in {} failed verification: {}: {}; nothing was written. Get the release again from its source (or check --key is the release's public key)",
            dir.display(),
            f.file,
            f.reason
        ))
        .into());
    }
    let bytes = std::fs::read(dir.join(MANIFEST_FILE))
        .with_context(|| format!("reading {MANIFEST_FILE}"))?;
    let sig = std::fs::read_to_string(dir.join(format!("{MANIFEST_FILE}.sig")))
        .with_context(|| format!("reading {MANIFEST_FILE}.sig"))?;
    let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&bytes).into();
    sign::verify_digest(&sign::load_public_key(key)?, &digest, &sig).context(Verification(
        format!("{MANIFEST_FILE} changed after it was verified"),
    ))?;
    let text = String::from_utf8(bytes).context("manifest.json is not UTF-8")?;
    let manifest = keel_manifest::parse(&text)?;
    let raws: Vec<&Artifact> = manifest
        .artifacts
        .iter()
        .filter(|a| a.name.ends_with(".raw"))
        .collect();
    let raw = match (image, raws.as_slice()) {
        (Some(name), _) => raws
            .iter()
            .find(|a| a.name == name)
            .copied()
            .with_context(|| {
                format!(
                    "the release has no raw image {name} (it has: {})",
                    raws.iter()
                        .map(|a| a.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?,
        (None, [one]) => *one,
        (None, []) => bail!(
            "the release in {} has no raw disk image (NAME.raw) to write",
            dir.display()
        ),
        (None, many) => bail!(
            "the release has several raw images ({}); choose one with --image",
            many.iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
    .clone();
    Ok(Release {
        raw,
        checks: report.checked.len(),
        skipped: report.skipped,
        manifest,
    })
}

/// Asks the technician to type the disk's name; refuses without a terminal.
fn confirm(disk: &device::Disk, what: &str) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Refused(format!(
            "refusing to overwrite {} without confirmation: stdin is not a terminal; run it from a terminal, or pass --yes if you are sure",
            disk.path.display()
        ))
        .into());
    }
    let mut err = std::io::stderr().lock();
    writeln!(
        err,
        "\nThis ERASES everything on {} ({}, {}{}) and writes {what}.",
        disk.path.display(),
        disk.description,
        BinaryBytes(disk.size),
        if disk.removable { ", removable" } else { "" }
    )?;
    write!(err, "Type the disk's name ({}) to continue: ", disk.name)?;
    err.flush()?;
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    let answer = line.trim();
    if answer != disk.name && answer != disk.path.display().to_string() {
        return Err(Refused(format!(
            "not confirmed (typed {answer:?}, expected {}); nothing was written",
            disk.name
        ))
        .into());
    }
    Ok(())
}

/// Runs `keel flash`.
pub fn run(a: FlashArgs) -> anyhow::Result<()> {
    let r = verified_release(&a.release_dir, &a.key, a.image.as_deref())?;
    eprintln!(
        "release {} {} verified ({} checks passed{})",
        r.manifest.image.name,
        r.manifest.image.version,
        r.checks,
        if r.skipped.is_empty() {
            String::new()
        } else {
            format!("; not checked: {}", r.skipped.join("; "))
        }
    );
    crate::exit::require(&a.device, "device")?;
    let disk = device::inspect(&a.device)?;
    let (mounts, swaps) = device::current_use()?;
    if let Some(why) = disk.refusal(r.raw.size, &mounts, &swaps) {
        return Err(Refused(format!("{why}; nothing was written")).into());
    }
    let what = format!(
        "{} {} ({}, {})",
        r.manifest.image.name,
        r.manifest.image.version,
        r.raw.name,
        BinaryBytes(r.raw.size)
    );
    if !a.yes {
        confirm(&disk, &what)?;
    }
    let mut dev = write::open_exclusive(&disk)?;
    let image = a.release_dir.join(&r.raw.name);
    let started = std::time::Instant::now();
    let written = write::write_image(&image, r.raw.size, &disk, &mut dev)?;
    let elapsed = started.elapsed();
    if hex::encode(written) != r.raw.sha256 {
        write::erase_partition_tables(&mut dev, &disk, r.raw.size);
        return Err(Verification(format!(
            "{} changed after it was verified (wrote sha256 {}, the signed manifest says {}); its partition tables on {} were erased so it does not boot. Get the release again and re-run",
            r.raw.name,
            hex::encode(written),
            r.raw.sha256,
            disk.path.display()
        ))
        .into());
    }
    let back = write::read_back(&disk, r.raw.size)?;
    if hex::encode(back) != r.raw.sha256 {
        write::erase_partition_tables(&mut dev, &disk, r.raw.size);
        bail!(
            "reading {} back gave sha256 {}, not the image's {}: the disk does not store what was written (faulty disk or stick?); its partition tables were erased. Use another disk",
            disk.path.display(),
            hex::encode(back),
            r.raw.sha256
        );
    }
    drop(dev);
    print!("{}", summary(&r, &disk, elapsed));
    Ok(())
}

/// The summary printed after a successful flash.
fn summary(r: &Release, disk: &device::Disk, elapsed: std::time::Duration) -> String {
    let m = &r.manifest;
    let rate = (u128::from(r.raw.size) * 1000 / elapsed.as_millis().max(1)) as u64;
    let mut s = format!(
        "flashed {} {} to {}\n",
        m.image.name,
        m.image.version,
        disk.path.display()
    );
    let mut line = |k: &str, v: String| s += &format!("  {k:<12} {v}\n");
    line(
        "image",
        format!(
            "{}, {}, sha256 {}",
            r.raw.name,
            BinaryBytes(r.raw.size),
            r.raw.sha256
        ),
    );
    line(
        "disk",
        format!(
            "{} ({}, {}{})",
            disk.name,
            disk.description,
            BinaryBytes(disk.size),
            if disk.removable { ", removable" } else { "" }
        ),
    );
    line(
        "written",
        format!(
            "{} in {:.1} s ({}/s), read back: identical to the signed manifest",
            BinaryBytes(r.raw.size),
            elapsed.as_secs_f64(),
            BinaryBytes(rate)
        ),
    );
    line(
        "verity root",
        m.verity_roothash
            .clone()
            .unwrap_or_else(|| "none (this image has no dm-verity root)".into()),
    );
    line(
        "PCRs",
        if m.pcrs.is_empty() {
            "none predicted".into()
        } else {
            m.pcrs
                .keys()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        },
    );
    s += &format!(
        "the node reports release {n} {v} when it enrolls: keel-enroll admits it only if its manifests-dir holds this release's signed manifest and the store accepts {n} {v} (min-release, deny-releases).\n\
         next: attach the node's seed (keel seed), boot the node from this disk and watch for `keel-bootstrap:` lines on its console (docs/field-technician.md).\n",
        n = m.image.name,
        v = m.image.version
    );
    s
}
