//! `manifest.json`, built from a finished build: every artifact's size and
//! sha256, the SBOMs the image embeds, and the PCR values a node booting
//! the release's UKI will measure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use keel_manifest::{Artifact, Build, Image, Manifest, PcrExpectation, Sbom, FORMAT_VERSION};

use super::{image, pcr, sign, ReleaseContext};
use crate::sbom;

/// The manifest's file name in a release directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Hashes every artifact and computes the expected PCRs.
pub fn build_manifest(ctx: &ReleaseContext) -> anyhow::Result<Manifest> {
    let paths = release_files(ctx);
    let artifacts = hash_artifacts(&ctx.out_dir, &paths)?;
    let sboms = sbom_entries(&artifacts);
    let pcrs = match &ctx.uki {
        Some(uki) => expected_pcrs(&in_out_dir(ctx, uki), &paths)?,
        None => Default::default(),
    };
    let m = Manifest {
        format_version: FORMAT_VERSION,
        image: Image {
            name: ctx.image_name.clone(),
            version: ctx.image_version.clone(),
        },
        build: Build {
            definition_sha256: ctx.definition_sha256.clone(),
            lock_sha256: ctx.lock_sha256.clone(),
            source_date_epoch: ctx.source_date_epoch,
            mkosi_version: ctx.mkosi_version.clone(),
            keel_version: env!("CARGO_PKG_VERSION").to_string(),
        },
        artifacts,
        sboms,
        verity_roothash: ctx.verity_roothash.clone(),
        pcrs,
    };
    m.validate()
        .context("the manifest written would be invalid")?;
    Ok(m)
}

/// `p` as given when absolute, else inside the output directory.
fn in_out_dir(ctx: &ReleaseContext, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        ctx.out_dir.join(p)
    }
}

/// The build's artifacts plus the published SBOMs (release files too).
fn release_files(ctx: &ReleaseContext) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = ctx.artifacts.iter().map(|p| in_out_dir(ctx, p)).collect();
    for name in [sbom::SPDX_FILE, sbom::CYCLONEDX_FILE] {
        let p = ctx.out_dir.join(name);
        if p.exists() && !paths.iter().any(|q| q.file_name() == p.file_name()) {
            paths.push(p);
        }
    }
    paths
}

/// Size and sha256 of each file, sorted by name; the manifest and
/// signatures themselves are skipped, and every file must be in `out_dir`.
fn hash_artifacts(out_dir: &Path, paths: &[PathBuf]) -> anyhow::Result<Vec<Artifact>> {
    let mut artifacts = Vec::new();
    for p in paths {
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("artifact {} has no file name", p.display()))?
            .to_string();
        if p.parent() != Some(out_dir) {
            bail!(
                "artifact {} is not in the output directory {}",
                p.display(),
                out_dir.display()
            );
        }
        if name == MANIFEST_FILE || name.ends_with(".sig") || name.ends_with(".sigstore.json") {
            continue;
        }
        let (digest, size) = sign::sha256_file(p)?;
        artifacts.push(Artifact {
            name,
            size,
            sha256: hex::encode(digest),
        });
    }
    artifacts.sort_by(|a, b| a.name.cmp(&b.name));
    artifacts.dedup_by(|a, b| a.name == b.name);
    Ok(artifacts)
}

/// The SBOMs among the artifacts, with where the image embeds them.
fn sbom_entries(artifacts: &[Artifact]) -> Vec<Sbom> {
    let mut sboms = Vec::new();
    for (format, name) in [
        ("spdx-2.3", sbom::SPDX_FILE),
        ("cyclonedx-1.5", sbom::CYCLONEDX_FILE),
    ] {
        if let Some(a) = artifacts.iter().find(|a| a.name == name) {
            sboms.push(Sbom {
                format: format.into(),
                path: format!("/{}/{name}", sbom::SBOM_DIR),
                sha256: a.sha256.clone(),
            });
        }
    }
    sboms
}

/// The PCRs of booting `uki`, with the boot loader read from the release's
/// raw disk image when there is one (a warning, not an error, if unreadable).
fn expected_pcrs(
    uki_path: &Path,
    paths: &[PathBuf],
) -> anyhow::Result<BTreeMap<u32, PcrExpectation>> {
    let data =
        std::fs::read(uki_path).with_context(|| format!("reading UKI {}", uki_path.display()))?;
    let bootloader = paths
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "raw"))
        .and_then(|raw| match image::read_boot_loader(raw) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("boot loader not read from {}: {e:#}", raw.display());
                None
            }
        });
    pcr::expected_pcrs(&data, bootloader.as_deref())
}
