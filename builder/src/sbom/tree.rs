//! The image tree's finalization during a build: refuse key material
//! ([`super::keyscan`]), take the inventory (packages from the tree's dpkg
//! database, `.deb` checksums from apt indexes, Keel's own binaries), and
//! write both SBOMs into the tree and beside the image.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use super::{dpkg, keyscan, Binary, Inventory, CYCLONEDX_FILE, SBOM_DIR, SPDX_FILE};
use crate::release::sign;

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
        (SPDX_FILE, super::spdx(&inv)),
        (CYCLONEDX_FILE, super::cyclonedx(&inv)),
    ];
    let in_image = ctx.root.join(SBOM_DIR);
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
pub fn inventory(ctx: &TreeContext, source_date_epoch: Option<i64>) -> anyhow::Result<Inventory> {
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
        Some(e) => super::rfc3339(e),
        None => super::rfc3339(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
        ),
    };
    Ok(Inventory {
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
pub fn keel_binaries(root: &Path) -> anyhow::Result<Vec<Binary>> {
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
                out.push(Binary {
                    path: format!("/{dir}/{name}"),
                    sha256: hex::encode(d),
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}
