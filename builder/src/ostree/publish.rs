//! `keel publish`: make the repository ready to serve. For every `keel/`
//! ref, static deltas from each of the previous N commits to the head (a
//! node a few releases behind still gets a delta), optionally one from
//! scratch (a first pull in one request stream); then the summary is
//! regenerated (refs, delta index) and signed.
//!
//! Deltas that exist already are kept; generating is the slow part (bsdiff
//! on changed files), so a second publish with no new commit is quick.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use ostree::gio;
use ostree::glib;
use ostree::prelude::*;
use serde::Serialize;

use super::keys::Signer;

/// How many previous releases get a delta to the head by default.
pub const DEFAULT_DELTAS: usize = 3;

/// What `keel publish` does.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Deltas from this many previous commits of each ref.
    pub deltas: usize,
    /// Also a delta from nothing to each head.
    pub from_scratch: bool,
}

/// One static delta of the repository.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Delta {
    #[serde(rename = "ref")]
    pub refname: String,
    /// `None`: from scratch.
    pub from: Option<String>,
    pub to: String,
    /// What a pull through it downloads: superblock, parts, and the
    /// "fallback" objects the delta leaves to be fetched loose (large new
    /// files libostree does not put into parts).
    pub size: u64,
    /// Made by this run (else it existed).
    pub generated: bool,
}

/// The outcome of a publish.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PublishReport {
    pub refs: Vec<(String, String)>,
    pub deltas: Vec<Delta>,
    pub summary_signed_by: String,
    pub seconds: f64,
}

/// OSTree's "modified base64" of a hex checksum: `/` as `_`, no padding.
pub fn checksum_b64(hex_checksum: &str) -> anyhow::Result<String> {
    let bytes = hex::decode(hex_checksum).context("checksum is not hex")?;
    Ok(base64::engine::general_purpose::STANDARD_NO_PAD
        .encode(bytes)
        .replace('/', "_"))
}

/// The directory of the delta `from` → `to` inside the repository.
pub fn delta_dir(repo_dir: &Path, from: Option<&str>, to: &str) -> anyhow::Result<PathBuf> {
    let to_b = checksum_b64(to)?;
    let rel = match from {
        Some(f) => {
            let f_b = checksum_b64(f)?;
            format!("{}/{}-{to_b}", &f_b[..2], &f_b[2..])
        }
        None => format!("{}/{}", &to_b[..2], &to_b[2..]),
    };
    Ok(repo_dir.join("deltas").join(rel))
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Stored bytes of the objects a delta leaves to be fetched loose (its
/// superblock's fallback list, `a(yaytt)`, the superblock's last member).
fn fallback_size(repo: &ostree::Repo, from: Option<&str>, to: &str) -> anyhow::Result<u64> {
    let path = delta_dir(&repo_path(repo)?, from, to)?.join("superblock");
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let ty = glib::VariantTy::new("(a{sv}tayay(a{sv}aya(say)sstayay)aya(uayttay)a(yaytt))")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let sb = glib::Variant::from_bytes_with_type(&glib::Bytes::from_owned(bytes), ty);
    let fallbacks = sb.child_value(sb.n_children() - 1);
    let mut total = 0;
    for i in 0..fallbacks.n_children() {
        let f = fallbacks.child_value(i);
        let objtype = f.child_value(0).get::<u8>().unwrap_or(0);
        let checksum = hex::encode(f.child_value(1).data());
        let objtype = match objtype {
            1 => ostree::ObjectType::File,
            2 => ostree::ObjectType::DirTree,
            3 => ostree::ObjectType::DirMeta,
            4 => ostree::ObjectType::Commit,
            other => anyhow::bail!(
                "fallback object of unknown type {other} in {}",
                path.display()
            ),
        };
        total += repo
            .query_object_storage_size(objtype, &checksum, gio::Cancellable::NONE)
            .with_context(|| format!("size of fallback object {checksum}"))?;
    }
    Ok(total)
}

fn repo_path(repo: &ostree::Repo) -> anyhow::Result<PathBuf> {
    repo.path()
        .path()
        .context("the repository has no local path")
}

/// The delta names (`FROM-TO` or `TO`) the repository has.
fn existing_deltas(repo: &ostree::Repo) -> anyhow::Result<Vec<String>> {
    Ok(repo
        .list_static_delta_names(gio::Cancellable::NONE)
        .context("listing static deltas")?
        .into_iter()
        .map(|s| s.to_string())
        .collect())
}

/// Generates the deltas of every `keel/` ref, regenerates and signs the summary.
pub fn publish(
    repo_dir: &Path,
    signer: &Signer,
    opts: &PublishOptions,
) -> anyhow::Result<PublishReport> {
    let started = std::time::Instant::now();
    let repo = super::open(repo_dir)?;
    let refs = super::keel_refs(&repo)?;
    if refs.is_empty() {
        anyhow::bail!(
            "{} has no keel/ refs yet: commit a release first (`keel repo commit --repo {} RELEASE_DIR`)",
            repo_dir.display(),
            repo_dir.display()
        );
    }
    let have = existing_deltas(&repo)?;
    let mut deltas = Vec::new();
    for (refname, head) in &refs {
        let history = super::history(&repo, refname, opts.deltas + 1)?;
        let mut froms: Vec<Option<String>> = history
            .iter()
            .skip(1)
            .map(|(c, _)| Some(c.clone()))
            .collect();
        if opts.from_scratch {
            froms.push(None);
        }
        for from in froms {
            let name = match &from {
                Some(f) => format!("{f}-{head}"),
                None => head.clone(),
            };
            let generated = !have.contains(&name);
            if generated {
                generate(&repo, from.as_deref(), head, refname)?;
            }
            let size = dir_size(&delta_dir(repo_dir, from.as_deref(), head)?)
                + fallback_size(&repo, from.as_deref(), head)?;
            deltas.push(Delta {
                refname: refname.clone(),
                from,
                to: head.clone(),
                size,
                generated,
            });
        }
    }
    write_summary(&repo, signer)?;
    Ok(PublishReport {
        refs,
        deltas,
        summary_signed_by: signer.fingerprint().to_string(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn generate(
    repo: &ostree::Repo,
    from: Option<&str>,
    to: &str,
    refname: &str,
) -> anyhow::Result<()> {
    tracing::info!(
        "generating static delta for {refname}: {} -> {}",
        from.map(|f| &f[..12]).unwrap_or("(scratch)"),
        &to[..12]
    );
    let params = glib::VariantDict::new(None);
    params.insert_value("verbose", &false.to_variant());
    repo.static_delta_generate(
        ostree::StaticDeltaGenerateOpt::Major,
        from,
        to,
        None,
        Some(&params.end()),
        gio::Cancellable::NONE,
    )
    .with_context(|| {
        format!(
            "generating the static delta {} -> {to} of {refname}",
            from.unwrap_or("(scratch)")
        )
    })
}

/// Regenerates the summary (refs and the static-delta index) and signs it.
fn write_summary(repo: &ostree::Repo, signer: &Signer) -> anyhow::Result<()> {
    repo.regenerate_summary(None, gio::Cancellable::NONE)
        .context("regenerating the summary")?;
    repo.add_gpg_signature_summary(
        &[signer.fingerprint()],
        Some(signer.homedir()?),
        gio::Cancellable::NONE,
    )
    .context("signing the summary")
}

/// Bytes of every object a commit reaches, as stored (compressed): what a
/// pull without any delta downloads.
pub fn commit_size(repo_dir: &Path, commit: &str) -> anyhow::Result<u64> {
    let repo = super::open(repo_dir)?;
    let objects = repo
        .traverse_commit(commit, 0, gio::Cancellable::NONE)
        .with_context(|| format!("walking commit {commit}"))?;
    let mut total = 0;
    for o in &objects {
        total += repo
            .query_object_storage_size(o.object_type(), o.checksum(), gio::Cancellable::NONE)
            .with_context(|| format!("size of object {}", o.checksum()))?;
    }
    Ok(total)
}
