//! `keel repo log`: the releases on each `keel/` ref, newest first, with
//! their metadata, whether a signature is attached, and which static deltas
//! lead to them.

use std::path::Path;

use anyhow::Context as _;
use ostree::gio;
use serde::Serialize;

use super::meta;

/// One commit of a ref.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Entry {
    pub commit: String,
    pub parent: Option<String>,
    /// Commit time (the release's SOURCE_DATE_EPOCH), seconds.
    pub timestamp: u64,
    pub version: Option<String>,
    pub verity_roothash: Option<String>,
    pub uki_path: Option<String>,
    pub uki_sha256: Option<String>,
    pub manifest_sha256: Option<String>,
    /// Has a GPG signature in its detached metadata.
    pub signed: bool,
    /// Commits a static delta to this one starts from (`scratch`: none).
    pub deltas_from: Vec<String>,
}

/// One ref and its history.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RefLog {
    #[serde(rename = "ref")]
    pub refname: String,
    pub commits: Vec<Entry>,
}

/// The history of every `keel/` ref, at most `limit` commits each.
pub fn log(repo_dir: &Path, limit: usize) -> anyhow::Result<Vec<RefLog>> {
    let repo = super::open(repo_dir)?;
    let deltas: Vec<String> = repo
        .list_static_delta_names(gio::Cancellable::NONE)
        .context("listing static deltas")?
        .into_iter()
        .map(|s| s.to_string())
        .collect();
    let mut out = Vec::new();
    for (refname, _) in super::keel_refs(&repo)? {
        let mut commits = Vec::new();
        for (c, v) in super::history(&repo, &refname, limit)? {
            let detached = repo
                .read_commit_detached_metadata(&c, gio::Cancellable::NONE)
                .with_context(|| format!("reading the signatures of {c}"))?;
            let signed = detached.is_some_and(|d| {
                ostree::glib::VariantDict::new(Some(&d)).contains("ostree.gpgsigs")
            });
            let deltas_from = deltas
                .iter()
                .filter_map(|d| match d.split_once('-') {
                    Some((from, to)) if to == c => Some(from.to_string()),
                    None if *d == c => Some("scratch".to_string()),
                    _ => None,
                })
                .collect();
            let m = |k| super::commit_meta(&v, k);
            commits.push(Entry {
                parent: ostree::commit_get_parent(&v).map(|s| s.to_string()),
                timestamp: ostree::commit_get_timestamp(&v),
                version: m(meta::VERSION),
                verity_roothash: m(meta::VERITY_ROOTHASH),
                uki_path: m(meta::UKI_PATH),
                uki_sha256: m(meta::UKI_SHA256),
                manifest_sha256: m(meta::MANIFEST_SHA256),
                signed,
                deltas_from,
                commit: c,
            });
        }
        out.push(RefLog { refname, commits });
    }
    Ok(out)
}
