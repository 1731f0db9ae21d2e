//! Releases: the signed release directory a build produces and what reads it.
//!
//! After a build, [`after_build`] writes `manifest.json` ([`manifest`]: every
//! artifact's size and sha256, the SBOMs, the expected PCR values from
//! [`pcr`]) and, with a key, signs the manifest and every artifact in cosign's
//! formats ([`sign`], [`sign_dir`]). `keel verify` ([`verify`]) checks it all
//! again, reading the SBOMs out of the disk image ([`image`]); `keel flash`
//! verifies the same way before it writes. `keel key generate`, `keel sign`
//! and `keel verify` are in [`cli`].

pub mod cli;
pub mod image;
pub mod manifest;
pub mod pcr;
pub mod sign;
pub mod verify;

pub use manifest::{build_manifest, MANIFEST_FILE};

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};

use crate::exit;

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
        sign_dir(&ctx.out_dir, key, password).context("signing release")?;
    }
    Ok(())
}

fn write_manifest(ctx: &ReleaseContext) -> anyhow::Result<()> {
    let manifest = build_manifest(ctx).context("building release manifest")?;
    let path = ctx.out_dir.join(MANIFEST_FILE);
    keel_cmd::fs::write_atomic(&path, manifest.to_json().as_bytes(), 0o644)
        .with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(path = %path.display(), artifacts = manifest.artifacts.len(), "wrote release manifest");
    Ok(())
}

/// Signs `manifest.json` and every artifact it lists (`F.sig`, `F.sigstore.json`).
/// Checks sizes and digests against the manifest first, so a file changed
/// after the build is never signed. Each file is read once: the digest
/// checked is the digest signed, and the manifest signed is the buffer parsed.
pub fn sign_dir(dir: &Path, key_path: &Path, password: &[u8]) -> anyhow::Result<()> {
    exit::require(dir, "release directory")?;
    exit::require(&dir.join(MANIFEST_FILE), "release manifest")?;
    exit::require(key_path, "signing key")?;
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
            return Err(exit::Error::Verification(format!(
                "{} does not match manifest.json (changed after the build?); not signing",
                a.name
            ))
            .into());
        }
        sign::sign_file_digest(&key, &p, &digest).with_context(|| format!("signing {}", a.name))?;
        tracing::info!(file = %a.name, "signed");
    }
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    sign::sign_file_digest(&key, &manifest_path, &digest).context("signing manifest.json")?;
    tracing::info!(file = MANIFEST_FILE, "signed");
    Ok(())
}

#[cfg(test)]
mod tests;
