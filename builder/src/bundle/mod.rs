//! `keel bundle`: sign GitOps bundles for store nodes.
//!
//! `keel bundle sign REPO --key cosign.key` takes the committed tree of a
//! bundle repository (HEAD by default, via `git archive`, so untracked or
//! uncommitted files never get signed), writes its canonical manifest to
//! `.keel/manifest` and a cosign-format signature of it to `.keel/signature`,
//! and with `--commit` commits both. The node (keel-bootstrap sync) refuses a
//! bundle whose tree differs from the signed manifest by a single byte or mode.
//! The signature verifies with the real tool too:
//! `cosign verify-blob --key cosign.pub --signature .keel/signature .keel/manifest`.

pub use keel_manifest::bundle as manifest;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use base64::Engine;
use clap::{Args, Subcommand};
use keel_cmd::CommandRunExt;
use sha2::{Digest, Sha256};

/// `keel bundle` subcommands.
#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Sign the committed tree of a bundle repository (.keel/manifest + .keel/signature).
    Sign(SignBundleArgs),
    /// Print the canonical manifest of a directory (to sign with `cosign sign-blob` yourself).
    Manifest {
        /// Bundle directory (a checkout; .git is skipped).
        dir: PathBuf,
    },
}

/// Options of `keel bundle sign`.
#[derive(Debug, Args)]
pub struct SignBundleArgs {
    /// The bundle's Git work tree.
    pub repo: PathBuf,
    /// cosign-format private key (`keel key generate` or `cosign generate-key-pair`).
    #[arg(long)]
    pub key: PathBuf,
    /// File holding the key's password (else env KEEL_KEY_PASSWORD).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Revision whose tree is signed.
    #[arg(long, default_value = "HEAD")]
    pub rev: String,
    /// Commit .keel/manifest and .keel/signature afterwards.
    #[arg(long)]
    pub commit: bool,
}

/// Dispatches `keel bundle`.
pub fn run(cmd: BundleCommand) -> anyhow::Result<()> {
    match cmd {
        BundleCommand::Sign(a) => {
            let password = crate::supply::sign::password(a.password_file.as_deref())?;
            let key = crate::supply::sign::load_signing_key(&a.key, &password)?;
            let digest = sign_repo(&a.repo, &a.rev, &key, a.commit)?;
            println!("signed bundle manifest sha256:{}", hex::encode(digest));
            Ok(())
        }
        BundleCommand::Manifest { dir } => {
            print!("{}", manifest::build(&dir)?);
            Ok(())
        }
    }
}

/// Signs the tree of `rev` in `repo`; returns the manifest's SHA-256.
pub fn sign_repo(
    repo: &Path,
    rev: &str,
    key: &p256::ecdsa::SigningKey,
    commit: bool,
) -> anyhow::Result<[u8; 32]> {
    let tmp = tempfile::tempdir().context("creating temp dir")?;
    let tar = tmp.path().join("tree.tar");
    let tree = tmp.path().join("tree");
    std::fs::create_dir(&tree)?;
    Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["archive", "--format=tar", "-o"])
        .arg(&tar)
        .arg(rev)
        .run()
        .with_context(|| format!("reading {rev} of {}", repo.display()))?;
    Command::new("tar")
        .arg("-C")
        .arg(&tree)
        .arg("-xf")
        .arg(&tar)
        .run()?;
    let text = manifest::build(&tree)?;
    let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
    let sig = crate::supply::sign::sign_digest(key, &digest)?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(sig);
    let dot = repo.join(".keel");
    std::fs::create_dir_all(&dot).with_context(|| format!("creating {}", dot.display()))?;
    std::fs::write(repo.join(manifest::MANIFEST_PATH), &text).context("writing manifest")?;
    std::fs::write(repo.join(manifest::SIGNATURE_PATH), format!("{b64}\n"))
        .context("writing signature")?;
    if commit {
        Command::new("git")
            .arg("-C")
            .arg(repo)
            .args([
                "add",
                "--",
                manifest::MANIFEST_PATH,
                manifest::SIGNATURE_PATH,
            ])
            .run()?;
        Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(["commit", "-q", "-m", "keel: sign bundle", "--"])
            .args([manifest::MANIFEST_PATH, manifest::SIGNATURE_PATH])
            .run()
            .context("committing the signature")?;
    }
    Ok(digest)
}

#[cfg(test)]
mod tests;
