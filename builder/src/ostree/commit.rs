//! `keel repo commit`: a built, signed release directory becomes one signed
//! commit on `keel/<image>/<arch>/<channel>`.
//!
//! The release is verified first with `keel verify`'s code (manifest
//! signature, every artifact's digest and signature); the manifest committed
//! is the buffer whose signature was checked, and the raw image is hashed
//! again through the descriptor it is then mounted through, so a file
//! swapped after the check is not what gets committed. The commit's time is
//! the release's SOURCE_DATE_EPOCH and its parent the ref's current head:
//! the same release on the same history gives the same commit checksum, and
//! committing a release that is already the head changes nothing.

use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use ostree::gio;
use ostree::glib;
use ostree::prelude::*;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::{extract, keys::Signer, meta};
use crate::release::MANIFEST_FILE;

/// What `keel repo commit` needs besides the two directories.
#[derive(Debug)]
pub struct CommitOptions<'a> {
    /// The release's cosign public key (what `keel verify --key` takes).
    pub cosign_pub: &'a Path,
    pub signer: &'a Signer,
    /// The ref's last part (`stable`).
    pub channel: &'a str,
}

/// The outcome, printed as text or JSON.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CommitReport {
    #[serde(rename = "ref")]
    pub refname: String,
    pub commit: String,
    pub parent: Option<String>,
    pub image: String,
    pub version: String,
    pub arch: String,
    pub uki_path: String,
    /// The UKI's file name on the release's ESP (it holds the root hash).
    pub uki_esp_name: String,
    pub verity_roothash: Option<String>,
    /// The ref's head already was this release: nothing was written.
    pub unchanged: bool,
    pub seconds: f64,
}

/// The release as verified: what the commit is made from.
struct Verified {
    manifest: keel_manifest::Manifest,
    manifest_text: String,
    manifest_sig: String,
    raw: std::fs::File,
    uki_sha256: String,
}

/// Verifies the release in `dir` and keeps the verified bytes.
fn verify_release(dir: &Path, cosign_pub: &Path) -> anyhow::Result<Verified> {
    let report = crate::release::verify::verify_dir(dir, cosign_pub)
        .with_context(|| format!("verifying the release in {}", dir.display()))?;
    if let Some(f) = report.failure {
        bail!(
            "the release in {} does not verify with {}: {}: {} (sign it with `keel sign`, or rebuild it)",
            dir.display(),
            cosign_pub.display(),
            f.file,
            f.reason
        );
    }
    let bytes = std::fs::read(dir.join(MANIFEST_FILE)).context("reading manifest.json")?;
    let sig = std::fs::read_to_string(dir.join(format!("{MANIFEST_FILE}.sig")))
        .context("reading manifest.json.sig")?;
    // The bytes committed are the bytes whose signature is checked here.
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    let key = crate::release::sign::load_public_key(cosign_pub)?;
    crate::release::sign::verify_digest(&key, &digest, sig.trim())
        .context("manifest.json changed after it was verified")?;
    let text = String::from_utf8(bytes).context("manifest.json is not UTF-8")?;
    let manifest = keel_manifest::parse(&text).context("parsing manifest.json")?;
    let raw_a = manifest
        .artifacts
        .iter()
        .find(|a| a.name.ends_with(".raw"))
        .context(
            "the release has no raw disk image (add \"raw\" to [output] formats and rebuild)",
        )?;
    let uki_a = manifest
        .artifacts
        .iter()
        .find(|a| a.name.ends_with(".efi"))
        .context("the release has no UKI (.efi): a node could not boot it")?;
    let mut raw = std::fs::File::open(dir.join(&raw_a.name))
        .with_context(|| format!("opening {}", raw_a.name))?;
    let (d, _) = crate::release::sign::sha256_reader(&mut raw)
        .with_context(|| format!("reading {}", raw_a.name))?;
    if hex::encode(d) != raw_a.sha256 {
        bail!("{} changed after it was verified", raw_a.name);
    }
    Ok(Verified {
        manifest_text: text,
        manifest_sig: sig.trim().to_string(),
        uki_sha256: uki_a.sha256.clone(),
        manifest,
        raw,
    })
}

/// Commits the release in `release_dir` to the repository at `repo_dir`.
pub fn commit_release(
    repo_dir: &Path,
    release_dir: &Path,
    opts: &CommitOptions<'_>,
) -> anyhow::Result<CommitReport> {
    let started = std::time::Instant::now();
    super::check_ref_part("channel", opts.channel)?;
    let repo = super::open(repo_dir)?;
    let v = verify_release(release_dir, opts.cosign_pub)?;
    let m = &v.manifest;
    super::check_ref_part("image name", &m.image.name)?;
    let manifest_sha = hex::encode(Sha256::digest(v.manifest_text.as_bytes()));
    // The verified file, whatever its path names by now.
    let fd_path = PathBuf::from(format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        v.raw.as_raw_fd()
    ));
    let opened = extract::open(&fd_path)?;
    let refname = super::ref_name(&m.image.name, opened.arch, opts.channel);
    let parent = repo.resolve_rev(&refname, true)?.map(|s| s.to_string());
    let mut report = CommitReport {
        refname: refname.clone(),
        commit: String::new(),
        parent: parent.clone(),
        image: m.image.name.clone(),
        version: m.image.version.clone(),
        arch: opened.arch.to_string(),
        uki_path: String::new(),
        uki_esp_name: String::new(),
        verity_roothash: m.verity_roothash.clone(),
        unchanged: false,
        seconds: 0.0,
    };
    if let Some(head) = &parent {
        if same_release_at_head(&repo, head, &manifest_sha, &mut report)? {
            report.seconds = started.elapsed().as_secs_f64();
            return Ok(report);
        }
    }
    (report.uki_path, report.uki_esp_name) = stage_uki(&opened, &v.uki_sha256, &m.image.name)?;
    for d in ["boot", "efi"] {
        let p = opened.root.join(d);
        if p.is_dir() && std::fs::read_dir(&p)?.next().is_some() {
            bail!("the root partition has files under /{d}; Keel images keep boot files on the ESP only");
        }
    }
    let meta_v = metadata(&v, &manifest_sha, &report)?;
    let epoch = u64::try_from(m.build.source_date_epoch)
        .context("the release's SOURCE_DATE_EPOCH is negative")?;
    let subject = format!("{} {}", m.image.name, m.image.version);
    tracing::info!(release = %release_dir.display(), "writing the root tree into the repository");
    let tx = repo.auto_transaction(gio::Cancellable::NONE)?;
    let root = write_tree(&repo, &opened)?;
    let checksum = repo
        .write_commit_with_time(
            parent.as_deref(),
            Some(&subject),
            None,
            Some(&meta_v),
            &root,
            epoch,
            gio::Cancellable::NONE,
        )
        .context("writing the commit")?
        .to_string();
    repo.transaction_set_ref(None, &refname, Some(&checksum));
    tx.commit(gio::Cancellable::NONE)
        .context("committing the transaction")?;
    repo.sign_commit(
        &checksum,
        opts.signer.fingerprint(),
        Some(opts.signer.homedir()?),
        gio::Cancellable::NONE,
    )
    .context("signing the commit")?;
    drop(opened);
    report.commit = checksum;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// When the ref's head `head` already carries this release (same manifest
/// digest), fills `report` from it and returns true: committing the
/// release that is already the head changes nothing.
fn same_release_at_head(
    repo: &ostree::Repo,
    head: &str,
    manifest_sha: &str,
    report: &mut CommitReport,
) -> anyhow::Result<bool> {
    let (c, _) = repo.load_commit(head)?;
    if super::commit_meta(&c, meta::MANIFEST_SHA256).as_deref() != Some(manifest_sha) {
        return Ok(false);
    }
    report.commit = head.to_string();
    report.parent = ostree::commit_get_parent(&c).map(|s| s.to_string());
    report.uki_path = super::commit_meta(&c, meta::UKI_PATH).unwrap_or_default();
    report.uki_esp_name = super::commit_meta(&c, meta::UKI_ESP_NAME).unwrap_or_default();
    report.unchanged = true;
    Ok(true)
}

/// Finds the release's UKI (by digest) in the ESP copy and gives it the
/// fixed name `/EFI/Linux/IMAGE.efi`; returns its path in the commit
/// (`/boot/EFI/Linux/IMAGE.efi`) and its name on the ESP.
fn stage_uki(
    opened: &extract::Opened,
    uki_sha256: &str,
    image: &str,
) -> anyhow::Result<(String, String)> {
    let ukis: Vec<String> = extract::find_by_sha256(&opened.esp, uki_sha256)?
        .into_iter()
        .filter(|p| p.starts_with("/EFI/Linux/"))
        .collect();
    let Some(uki_rel) = ukis.first() else {
        bail!("the image's ESP has no UKI under /EFI/Linux with the release's UKI digest {uki_sha256}: the raw image and the .efi artifact disagree");
    };
    // The ESP's UKI file name carries the verity root hash, so it changes
    // with every release; under a fixed name libostree sees one modified
    // file and bsdiffs it (a few KiB) instead of sending a new 50 MB file.
    let esp_name = uki_rel.rsplit('/').next().unwrap_or_default().to_string();
    let fixed = format!("/EFI/Linux/{image}.efi");
    if *uki_rel != fixed {
        let dest = opened.esp.join(fixed.trim_start_matches('/'));
        if dest.exists() {
            bail!("the ESP has both {uki_rel} and {fixed}: which UKI boots is ambiguous");
        }
        std::fs::rename(opened.esp.join(uki_rel.trim_start_matches('/')), &dest)
            .context("renaming the UKI in the ESP copy")?;
    }
    Ok((format!("/boot{fixed}"), esp_name))
}

/// Writes the root tree, with the ESP's files under /boot, into the
/// repository (inside the caller's transaction); returns the tree's root.
fn write_tree(repo: &ostree::Repo, opened: &extract::Opened) -> anyhow::Result<ostree::RepoFile> {
    let mtree = ostree::MutableTree::new();
    repo.write_directory_to_mtree(
        &gio::File::for_path(&opened.root),
        &mtree,
        None,
        gio::Cancellable::NONE,
    )
    .context("writing the root tree (a device node or socket in the image?)")?;
    let boot = mtree.ensure_dir("boot")?;
    let boot_meta = boot.metadata_checksum();
    repo.write_directory_to_mtree(
        &gio::File::for_path(&opened.esp),
        &boot,
        None,
        gio::Cancellable::NONE,
    )
    .context("writing the ESP's files under /boot")?;
    if !boot_meta.is_empty() {
        // /boot keeps the root partition's own directory metadata.
        boot.set_metadata_checksum(&boot_meta);
    }
    let root = repo.write_mtree(&mtree, gio::Cancellable::NONE)?;
    root.downcast::<ostree::RepoFile>()
        .map_err(|_| anyhow::anyhow!("libostree returned no repository file for the tree"))
}

/// The commit's metadata dictionary (`a{sv}`, string values).
fn metadata(v: &Verified, manifest_sha: &str, r: &CommitReport) -> anyhow::Result<glib::Variant> {
    let m = &v.manifest;
    let dict = glib::VariantDict::new(None);
    let put = |k: &str, s: &str| dict.insert_value(k, &s.to_variant());
    put(meta::VERSION, &m.image.version);
    put(meta::IMAGE, &m.image.name);
    put(meta::ARCH, &r.arch);
    put(
        meta::SOURCE_DATE_EPOCH,
        &m.build.source_date_epoch.to_string(),
    );
    if let Some(h) = &m.verity_roothash {
        put(meta::VERITY_ROOTHASH, h);
    }
    put(meta::UKI_PATH, &r.uki_path);
    put(meta::UKI_ESP_NAME, &r.uki_esp_name);
    put(meta::UKI_SHA256, &v.uki_sha256);
    put(meta::MANIFEST_SHA256, manifest_sha);
    put(meta::MANIFEST, &v.manifest_text);
    put(meta::MANIFEST_SIGNATURE, &v.manifest_sig);
    Ok(dict.end())
}
