//! The release directory: building `manifest.json` from a finished build and
//! signing the manifest and every artifact it lists.

use std::path::Path;

use anyhow::{bail, Context as _};
use keel_manifest::{Artifact, Build, Image, Manifest, Sbom, FORMAT_VERSION};
use sha2::{Digest as _, Sha256};

use super::{image, pcr, sbom, sign, ReleaseContext};

/// The manifest's file name in a release directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Hashes every artifact and computes the expected PCRs.
pub fn build_manifest(ctx: &ReleaseContext) -> anyhow::Result<Manifest> {
    let mut paths: Vec<std::path::PathBuf> = ctx
        .artifacts
        .iter()
        .map(|p| {
            if p.is_absolute() {
                p.clone()
            } else {
                ctx.out_dir.join(p)
            }
        })
        .collect();
    // The published SBOMs are release files too.
    for name in [sbom::SPDX_FILE, sbom::CYCLONEDX_FILE] {
        let p = ctx.out_dir.join(name);
        if p.exists() && !paths.iter().any(|q| q.file_name() == p.file_name()) {
            paths.push(p);
        }
    }
    let mut artifacts = Vec::new();
    for p in &paths {
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("artifact {} has no file name", p.display()))?
            .to_string();
        if p.parent() != Some(ctx.out_dir.as_path()) {
            bail!(
                "artifact {} is not in the output directory {}",
                p.display(),
                ctx.out_dir.display()
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

    let pcrs = match &ctx.uki {
        Some(uki) => {
            let uki_path = if uki.is_absolute() {
                uki.clone()
            } else {
                ctx.out_dir.join(uki)
            };
            let data = std::fs::read(&uki_path)
                .with_context(|| format!("reading UKI {}", uki_path.display()))?;
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
            pcr::expected_pcrs(&data, bootloader.as_deref())?
        }
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

/// Signs `manifest.json` and every artifact it lists (`F.sig`, `F.sigstore.json`).
/// Checks sizes and digests against the manifest first, so a file changed
/// after the build is never signed. Each file is read once: the digest
/// checked is the digest signed, and the manifest signed is the buffer parsed.
pub fn sign_dir(dir: &Path, key_path: &Path, password: &[u8]) -> anyhow::Result<()> {
    let key = sign::load_signing_key(key_path, password)?;
    let manifest_path = dir.join(MANIFEST_FILE);
    let bytes = std::fs::read(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let text = std::str::from_utf8(&bytes).context("manifest.json is not UTF-8")?;
    let m = keel_manifest::parse(text).context("parsing manifest.json")?;
    for a in &m.artifacts {
        let p = dir.join(&a.name);
        let (digest, size) = sign::sha256_file(&p)?;
        if size != a.size || hex::encode(digest) != a.sha256 {
            bail!(
                "{} does not match manifest.json (changed after the build?); not signing",
                a.name
            );
        }
        sign::sign_file_digest(&key, &p, &digest).with_context(|| format!("signing {}", a.name))?;
        tracing::info!(file = %a.name, "signed");
    }
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    sign::sign_file_digest(&key, &manifest_path, &digest).context("signing manifest.json")?;
    tracing::info!(file = MANIFEST_FILE, "signed");
    Ok(())
}
