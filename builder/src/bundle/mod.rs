//! `keel bundle`: sign GitOps bundles for store nodes.
//!
//! `keel bundle sign REPO --key cosign.key --store ID` takes the committed
//! tree of a bundle repository (HEAD by default, via `git archive`, so
//! untracked or uncommitted files never get signed), writes its canonical
//! manifest to `.keel/manifest` and a cosign-format signature of it to
//! `.keel/signature`, and with `--commit` commits both. The node
//! (keel-bootstrap sync) refuses a bundle whose tree differs from the signed
//! manifest by a single byte or mode.
//!
//! The manifest's signed header names the store, the ref the nodes follow
//! (`--ref`, else the branch checked out) and a serial: `--serial N`, else
//! one more than the serial of the manifest already committed at `--rev`
//! (1 for the first). Nodes apply only a serial above the one they applied
//! last, so an explicit serial at or below the committed one is refused here
//! already.
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
        /// The store the bundle is for (keel-enroll's `[stores.<id>]`).
        #[arg(long)]
        store: String,
        /// The Git ref the nodes follow (as in `[stores.<id>.gitops] ref`).
        #[arg(long = "ref")]
        reference: String,
        /// The serial (at least 1, above every serial the nodes applied).
        #[arg(long)]
        serial: u64,
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
    /// The store the bundle is for (keel-enroll's `[stores.<id>]`).
    #[arg(long)]
    pub store: String,
    /// The Git ref the nodes follow (as in `[stores.<id>.gitops] ref`);
    /// default: the branch checked out in REPO.
    #[arg(long = "ref")]
    pub reference: Option<String>,
    /// The serial; default: one more than the serial committed at --rev
    /// (1 for the first signed bundle).
    #[arg(long)]
    pub serial: Option<u64>,
}

/// Dispatches `keel bundle`.
pub fn run(cmd: BundleCommand) -> anyhow::Result<()> {
    match cmd {
        BundleCommand::Sign(a) => {
            let header = header_for(&a.repo, &a.rev, &a.store, a.reference, a.serial)?;
            let password = crate::release::sign::password(a.password_file.as_deref())?;
            let key = crate::release::sign::load_signing_key(&a.key, &password)?;
            let digest = sign_repo(&a.repo, &a.rev, &header, &key, a.commit)?;
            println!(
                "signed bundle manifest sha256:{} (store {}, ref {}, serial {})",
                hex::encode(digest),
                header.store,
                header.reference,
                header.serial
            );
            Ok(())
        }
        BundleCommand::Manifest {
            dir,
            store,
            reference,
            serial,
        } => {
            let header = manifest::Header::new(store, reference, serial)?;
            print!("{}", manifest::build(&dir, &header)?);
            Ok(())
        }
    }
}

/// The serial of the manifest committed at `rev` (0 when there is none or
/// it is the old v1 format without a serial).
pub fn committed_serial(repo: &Path, rev: &str) -> anyhow::Result<u64> {
    let spec = format!("{rev}:{}", manifest::MANIFEST_PATH);
    let exists = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["cat-file", "-e", &spec])
        .run()
        .is_ok();
    if !exists {
        return Ok(0);
    }
    let text = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["cat-file", "blob", &spec])
        .run_get_string()
        .with_context(|| format!("reading {spec}"))?;
    if text.starts_with(manifest::HEADER_V1) {
        return Ok(0);
    }
    let m = manifest::parse(&text).with_context(|| {
        format!("the manifest committed at {rev} is malformed; give --serial explicitly")
    })?;
    Ok(m.header.serial)
}

/// The header for signing `rev` of `repo`: `reference` or the branch checked
/// out; `serial` or one more than the committed one (an explicit serial must
/// be above it).
pub fn header_for(
    repo: &Path,
    rev: &str,
    store: &str,
    reference: Option<String>,
    serial: Option<u64>,
) -> anyhow::Result<manifest::Header> {
    let reference = match reference {
        Some(r) => r,
        None => {
            let branch = Command::new("git")
                .arg("-C")
                .arg(repo)
                .args(["symbolic-ref", "-q", "--short", "HEAD"])
                .run_get_string()
                .map(|s| s.trim().to_string())
                .ok()
                .filter(|s| !s.is_empty());
            branch.ok_or_else(|| {
                anyhow::anyhow!(
                    "{} has no branch checked out; name the ref the nodes follow with --ref",
                    repo.display()
                )
            })?
        }
    };
    let committed = committed_serial(repo, rev)?;
    let serial = match serial {
        Some(s) if s <= committed => anyhow::bail!(
            "--serial {s} is not above serial {committed} already committed at {rev}; nodes \
             that applied it would refuse the bundle as a replay or rollback (use at least {})",
            committed + 1
        ),
        Some(s) => s,
        None => committed + 1,
    };
    Ok(manifest::Header::new(store, reference, serial)?)
}

/// Signs the tree of `rev` in `repo` with `header`; returns the manifest's SHA-256.
pub fn sign_repo(
    repo: &Path,
    rev: &str,
    header: &manifest::Header,
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
    let text = manifest::build(&tree, header)?;
    let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
    let sig = crate::release::sign::sign_digest(key, &digest)?;
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
            .args(["commit", "-q", "-m"])
            .arg(format!("keel: sign bundle (serial {})", header.serial))
            .arg("--")
            .args([manifest::MANIFEST_PATH, manifest::SIGNATURE_PATH])
            .run()
            .context("committing the signature")?;
    }
    Ok(digest)
}
