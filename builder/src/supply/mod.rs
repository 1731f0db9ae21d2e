//! Supply chain: SBOMs from the image's own package database, the private-key
//! scan of the image tree, the signed release manifest, and verification.
//!
//! The build calls [`finalize_tree`] on the image root after packages are
//! installed and before the image is sealed, and [`after_build`] once the
//! artifacts exist in the output directory. `keel sign`, `keel verify` and
//! `keel key generate` call [`release::sign_dir`], [`verify::verify_dir`] and
//! [`sign::generate_key_pair`].

pub mod cli;
pub mod dpkg;
pub mod image;
pub mod keyscan;
pub mod pcr;
pub mod release;
pub mod sbom;
pub mod sign;
pub mod verify;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

/// What [`finalize_tree`] needs to know about the image tree being built.
#[derive(Debug, Clone)]
pub struct TreeContext {
    /// The image root (mkosi's `$BUILDROOT`).
    pub root: PathBuf,
    /// Where the SBOMs are published beside the image (the output directory).
    pub publish_dir: PathBuf,
    pub image_name: String,
    pub image_version: String,
    /// e.g. `debian`.
    pub distribution: String,
    /// e.g. `bookworm`.
    pub release: String,
    /// Debian architecture name, e.g. `amd64`.
    pub architecture: String,
}

/// What [`after_build`] needs to know about a finished build.
#[derive(Debug, Clone)]
pub struct ReleaseContext {
    pub out_dir: PathBuf,
    pub image_name: String,
    pub image_version: String,
    pub definition_sha256: String,
    pub lock_sha256: Option<String>,
    pub source_date_epoch: i64,
    pub mkosi_version: String,
    /// Files in `out_dir` that make up the release (image, UKI, SBOMs, ...).
    pub artifacts: Vec<PathBuf>,
    /// The unified kernel image, for the expected PCR 11 / PCR 4 values.
    pub uki: Option<PathBuf>,
    pub verity_roothash: Option<String>,
    /// Encrypted cosign private key; for the password see [`after_build`].
    pub sign_key: Option<PathBuf>,
}

/// Environment variable naming a directory of apt `*_Packages` indexes to
/// take `.deb` checksums from, besides the image's own `/var/lib/apt/lists`.
pub const APT_LISTS_ENV: &str = "KEEL_APT_LISTS";

/// Writes the SBOMs into the image tree and `publish_dir`, and fails if the
/// tree contains private key material.
pub fn finalize_tree(ctx: &TreeContext) -> anyhow::Result<()> {
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok());
    finalize_tree_at(ctx, epoch)
}

/// [`finalize_tree`] with the documents' creation time given (`None`: now)
/// instead of read from `SOURCE_DATE_EPOCH`.
pub fn finalize_tree_at(ctx: &TreeContext, source_date_epoch: Option<i64>) -> anyhow::Result<()> {
    let scan = keyscan::scan_tree(&ctx.root).context("scanning image tree for private keys")?;
    for f in &scan.exempt {
        tracing::info!(path = %f.path.display(), kind = f.kind, "key-like data in an unmodified package file (public archive content), allowed");
    }
    let findings = scan.findings;
    if let Some(first) = findings.first() {
        let list: Vec<String> = findings
            .iter()
            .map(|f| format!("  {} ({})", f.path.display(), f.kind))
            .collect();
        bail!(
            "the image contains private key material, refusing to seal it (first: {}):\n{}\nkeys must be created on the node at first boot or delivered by enrollment, never baked into an image",
            first.path.display(),
            list.join("\n")
        );
    }
    let inv = inventory(ctx, source_date_epoch)?;
    tracing::info!(
        packages = inv.packages.len(),
        with_checksum = inv
            .packages
            .iter()
            .filter(|p| p.deb_sha256.is_some())
            .count(),
        keel_binaries = inv.binaries.len(),
        "writing SBOMs"
    );
    let docs = [
        (sbom::SPDX_FILE, sbom::spdx(&inv)),
        (sbom::CYCLONEDX_FILE, sbom::cyclonedx(&inv)),
    ];
    let in_image = ctx.root.join(sbom::SBOM_DIR);
    for dir in [&in_image, &ctx.publish_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, doc) in &docs {
            let mut text = serde_json::to_string_pretty(doc).context("serialising SBOM")?;
            text.push('\n');
            let path = dir.join(name);
            keel_cmd::fs::write_atomic(&path, text.as_bytes(), 0o644)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}

/// Builds the SBOM inventory of the tree (packages, checksums, licenses, Keel binaries).
pub fn inventory(
    ctx: &TreeContext,
    source_date_epoch: Option<i64>,
) -> anyhow::Result<sbom::Inventory> {
    let own_lists = ctx.root.join("var/lib/apt/lists");
    // Inside mkosi's finalize sandbox /var/lib/apt is mkosi's package cache
    // (the lists it installed from), even when the image keeps none.
    let sandbox_lists = PathBuf::from("/var/lib/apt/lists");
    let extra = std::env::var_os(APT_LISTS_ENV).map(PathBuf::from);
    let mut dirs: Vec<&Path> = vec![&own_lists];
    if let Some(e) = &extra {
        dirs.push(e);
    }
    dirs.push(&sandbox_lists);
    let packages =
        dpkg::load_packages(&ctx.root, &dirs).context("reading the image's dpkg database")?;
    let created = match source_date_epoch {
        Some(e) => sbom::rfc3339(e),
        None => sbom::rfc3339(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
        ),
    };
    Ok(sbom::Inventory {
        image_name: ctx.image_name.clone(),
        image_version: ctx.image_version.clone(),
        distro: distro_qualifier(&ctx.distribution, &ctx.release),
        packages,
        binaries: keel_binaries(&ctx.root)?,
        created,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

/// `debian-12` for Debian bookworm (purl `distro` qualifier).
pub fn distro_qualifier(distribution: &str, release: &str) -> String {
    let num = match release {
        "bullseye" => "11",
        "bookworm" => "12",
        "trixie" => "13",
        "forky" => "14",
        other => other,
    };
    format!("{distribution}-{num}")
}

/// Keel's own programs in the tree: `/usr/bin/keel*`, `/usr/lib/keel/*`.
pub fn keel_binaries(root: &Path) -> anyhow::Result<Vec<sbom::Binary>> {
    let mut out = Vec::new();
    for (dir, prefix) in [
        ("usr/bin", "keel"),
        ("usr/lib/keel", ""),
        ("usr/libexec/keel", ""),
    ] {
        let Ok(rd) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(prefix) && e.file_type().is_ok_and(|t| t.is_file()) {
                let (d, _) = sign::sha256_file(&e.path())?;
                out.push(sbom::Binary {
                    path: format!("/{dir}/{name}"),
                    sha256: hex::encode(d),
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Writes `manifest.json` into the output directory and, with a signing key,
/// signs it and every artifact. The key password is read into memory from
/// `password_file` (first line), else the file named by
/// `KEEL_KEY_PASSWORD_FILE`, else `KEEL_KEY_PASSWORD`, and handed to the
/// signing code; it is never put into the process environment, so no child
/// (mkosi, git, ...) can inherit it.
pub fn after_build(ctx: &ReleaseContext, password_file: Option<&Path>) -> anyhow::Result<()> {
    if ctx.sign_key.is_none() {
        return write_manifest(ctx);
    }
    let env_file = std::env::var_os("KEEL_KEY_PASSWORD_FILE").map(PathBuf::from);
    let pw = sign::password(password_file.or(env_file.as_deref()))?;
    after_build_with_password(ctx, &pw)
}

/// [`after_build`] with the key password given.
pub fn after_build_with_password(ctx: &ReleaseContext, password: &[u8]) -> anyhow::Result<()> {
    write_manifest(ctx)?;
    if let Some(key) = &ctx.sign_key {
        release::sign_dir(&ctx.out_dir, key, password).context("signing release")?;
    }
    Ok(())
}

fn write_manifest(ctx: &ReleaseContext) -> anyhow::Result<()> {
    let manifest = release::build_manifest(ctx).context("building release manifest")?;
    let path = ctx.out_dir.join(release::MANIFEST_FILE);
    keel_cmd::fs::write_atomic(&path, manifest.to_json().as_bytes(), 0o644)
        .with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(path = %path.display(), artifacts = manifest.artifacts.len(), "wrote release manifest");
    Ok(())
}

#[cfg(test)]
mod tests;
