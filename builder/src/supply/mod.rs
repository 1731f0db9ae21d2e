//! Supply chain: SBOMs from the image's own package database, the private-key
//! scan of the image tree, the signed release manifest, and verification.
//!
//! The build calls [`finalize_tree`] on the image root after packages are
//! installed and before the image is sealed, and [`after_build`] once the
//! artifacts exist in the output directory.

use std::path::PathBuf;

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
    /// Encrypted cosign private key; password from `KEEL_KEY_PASSWORD` or a password file.
    pub sign_key: Option<PathBuf>,
}

/// Writes the SBOMs into the image tree and `publish_dir`, and fails if the
/// tree contains private key material.
pub fn finalize_tree(ctx: &TreeContext) -> anyhow::Result<()> {
    anyhow::bail!("sbom generation for {} not implemented yet", ctx.root.display())
}

/// Writes `out_dir/manifest.json` and, with a signing key, signs it and every artifact.
pub fn after_build(ctx: &ReleaseContext) -> anyhow::Result<()> {
    anyhow::bail!("release manifest for {} not implemented yet", ctx.out_dir.display())
}
