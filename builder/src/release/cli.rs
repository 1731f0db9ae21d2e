//! The release subcommands: `keel key generate`, `keel sign` and
//! `keel verify`. Each is a thin layer over the library functions of
//! [`crate::release`].

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};

use crate::exit::Error::Verification;

/// `keel key ...`
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Write a cosign-compatible encrypted ECDSA P-256 key pair: PREFIX.key and PREFIX.pub;
    /// with --ostree also the OSTree release repository's key beside them: ostree-gpg.key
    /// and ostree-gpg.pub (or later: `keel repo key generate`).
    /// The password comes from KEEL_KEY_PASSWORD or --password-file, never the command line.
    Generate(KeyGenerateArgs),
}

/// Options of `keel key generate`.
#[derive(Debug, Args)]
pub struct KeyGenerateArgs {
    /// Path prefix of the key files (`release` writes release.key and release.pub).
    #[arg(long)]
    pub out: PathBuf,
    /// File whose first line is the password (else env KEEL_KEY_PASSWORD).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Also write the OSTree release repository's signing key (ostree-gpg.key and
    /// ostree-gpg.pub, same password) beside the key pair. Off by default, so several
    /// key pairs (release, bundle) can live in one directory.
    #[arg(long)]
    pub ostree: bool,
}

/// Options of `keel sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// Release directory holding manifest.json and the artifacts it lists.
    pub dir: PathBuf,
    /// Encrypted cosign private key.
    #[arg(long)]
    pub key: PathBuf,
    /// File whose first line is the key password (else env KEEL_KEY_PASSWORD).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
}

/// Options of `keel verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Release directory holding manifest.json, the artifacts and their signatures.
    pub dir: PathBuf,
    /// The release public key (PEM, as written by `keel key generate` or cosign).
    #[arg(long)]
    pub key: PathBuf,
    /// Print a JSON report on stdout (the exit code still says pass or fail).
    #[arg(long)]
    pub json: bool,
}

/// Runs `keel key ...`.
pub fn run_key(cmd: KeyCommand) -> anyhow::Result<()> {
    match cmd {
        KeyCommand::Generate(a) => {
            let pw = super::sign::password(a.password_file.as_deref())?;
            if pw.is_empty() {
                bail!("refusing an empty key password");
            }
            let (ostree_key, ostree_pub) = crate::ostree::keys::beside(&a.out);
            for p in [&ostree_key, &ostree_pub].into_iter().filter(|_| a.ostree) {
                if p.exists() {
                    bail!(
                        "{} exists already; refusing to overwrite a key",
                        p.display()
                    );
                }
            }
            let (key, public) = super::sign::generate_key_pair(&a.out, &pw)?;
            println!(
                "private key: {} (encrypted, keep it in your CI secret store)",
                key.display()
            );
            println!(
                "public key:  {} (publish it; nodes and `keel verify` use it)",
                public.display()
            );
            if !a.ostree {
                return Ok(());
            }
            // The release repository's key goes beside it (see crate::ostree::keys).
            let fpr = crate::ostree::keys::generate(
                &ostree_key,
                &ostree_pub,
                crate::ostree::keys::DEFAULT_UID,
                &pw,
            )?;
            crate::ostree::cli::print_key_lines(&ostree_key, &ostree_pub, &fpr);
            Ok(())
        }
    }
}

/// Runs `keel sign DIR --key K`.
pub fn run_sign(a: SignArgs) -> anyhow::Result<()> {
    let pw = super::sign::password(a.password_file.as_deref())?;
    super::sign_dir(&a.dir, &a.key, &pw).with_context(|| format!("signing {}", a.dir.display()))
}

/// Runs `keel verify DIR --key PUB`; fails naming the first mismatching file.
pub fn run_verify(a: VerifyArgs) -> anyhow::Result<()> {
    let report = super::verify::verify_dir(&a.dir, &a.key)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for c in &report.checked {
            println!("ok      {c}");
        }
        for s in &report.skipped {
            println!("skipped {s}");
        }
    }
    match report.failure {
        Some(f) => {
            Err(Verification(format!("verification failed: {}: {}", f.file, f.reason)).into())
        }
        None => {
            if !a.json {
                println!("release in {} verified", a.dir.display());
            }
            Ok(())
        }
    }
}
