//! `keel repo ...` and `keel publish`: thin layers over [`super`].

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::{commit, keys, log, publish};

/// `keel repo ...`
#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Create an archive-mode OSTree repository (kept if it exists).
    Init(InitArgs),
    /// Verify a signed release directory and commit it, signed, to its ref.
    Commit(CommitArgs),
    /// Show each ref's releases, newest first.
    Log(LogArgs),
    /// The repository's signing key.
    #[command(subcommand)]
    Key(KeyCommand),
}

/// `keel repo key ...`
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Write DIR/ostree-gpg.key (ed25519 OpenPGP secret key, password
    /// protected, 0600) and DIR/ostree-gpg.pub. `keel key generate` does this
    /// too, beside the cosign key; this is for an existing cosign key.
    Generate(KeyGenerateArgs),
}

/// Options of `keel repo init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Repository directory.
    pub dir: PathBuf,
}

/// Options of `keel repo commit`.
#[derive(Debug, Args)]
pub struct CommitArgs {
    /// Repository directory (`keel repo init`).
    #[arg(long)]
    pub repo: PathBuf,
    /// Release directory (`keel build --out`, signed).
    pub release: PathBuf,
    /// The release's cosign public key, to verify it before committing.
    #[arg(long)]
    pub key: PathBuf,
    #[command(flatten)]
    pub signing: SigningArgs,
    /// Last part of the ref keel/IMAGE/ARCH/CHANNEL.
    #[arg(long, default_value = super::DEFAULT_CHANNEL)]
    pub channel: String,
    /// Print a JSON report on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The repository signing key and its password.
#[derive(Debug, Args)]
pub struct SigningArgs {
    /// OSTree signing key (default: ostree-gpg.key beside --key).
    #[arg(long)]
    pub ostree_key: Option<PathBuf>,
    /// File whose first line is the key password (else the file named by
    /// env KEEL_KEY_PASSWORD_FILE, else env KEEL_KEY_PASSWORD).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
}

/// Options of `keel repo log`.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Repository directory.
    #[arg(long)]
    pub repo: PathBuf,
    /// At most this many commits per ref.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Options of `keel repo key generate`.
#[derive(Debug, Args)]
pub struct KeyGenerateArgs {
    /// Directory to write ostree-gpg.key and ostree-gpg.pub into.
    #[arg(long)]
    pub out: PathBuf,
    /// File whose first line is the password (else env KEEL_KEY_PASSWORD).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// The key's OpenPGP user ID.
    #[arg(long, default_value = keys::DEFAULT_UID)]
    pub uid: String,
}

/// Options of `keel publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Repository directory.
    #[arg(long)]
    pub repo: PathBuf,
    /// OSTree signing key (ostree-gpg.key) for the summary.
    #[arg(long)]
    pub ostree_key: PathBuf,
    /// File whose first line is the key password (else env
    /// KEEL_KEY_PASSWORD_FILE's file, else env KEEL_KEY_PASSWORD).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Static deltas to each head from this many previous releases.
    #[arg(long, default_value_t = publish::DEFAULT_DELTAS)]
    pub deltas: usize,
    /// Also a delta from nothing to each head (a first pull in one piece).
    #[arg(long)]
    pub from_scratch: bool,
    /// Print a JSON report on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs `keel repo ...`.
pub fn run_repo(cmd: RepoCommand) -> anyhow::Result<()> {
    match cmd {
        RepoCommand::Init(a) => {
            super::init(&a.dir)?;
            println!(
                "OSTree repository (archive mode) ready in {}",
                a.dir.display()
            );
            Ok(())
        }
        RepoCommand::Commit(a) => run_commit(a),
        RepoCommand::Log(a) => run_log(a),
        RepoCommand::Key(KeyCommand::Generate(a)) => {
            let pw = crate::release::sign::password(a.password_file.as_deref())?;
            std::fs::create_dir_all(&a.out)
                .with_context(|| format!("creating {}", a.out.display()))?;
            let (key, public) = (a.out.join(keys::KEY_FILE), a.out.join(keys::PUB_FILE));
            let fpr = keys::generate(&key, &public, &a.uid, &pw)?;
            print_key_lines(&key, &public, &fpr);
            Ok(())
        }
    }
}

/// Prints where a new OSTree key went (also used by `keel key generate`).
pub fn print_key_lines(key: &Path, public: &Path, fingerprint: &str) {
    println!(
        "OSTree signing key: {} (ed25519 OpenPGP, same password, keep it with the cosign key)",
        key.display()
    );
    println!(
        "OSTree public key:  {} (fingerprint {fingerprint}; nodes' remotes use it as gpgkeypath)",
        public.display()
    );
}

/// The key password: `--password-file`, else env KEEL_KEY_PASSWORD_FILE's
/// file, else env KEEL_KEY_PASSWORD.
pub fn password(file: Option<&Path>) -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>> {
    let env_file = std::env::var_os("KEEL_KEY_PASSWORD_FILE").map(PathBuf::from);
    crate::release::sign::password(file.or(env_file.as_deref()))
}

fn run_commit(a: CommitArgs) -> anyhow::Result<()> {
    let ostree_key = a
        .signing
        .ostree_key
        .clone()
        .unwrap_or_else(|| keys::beside(&a.key).0);
    let pw = password(a.signing.password_file.as_deref())?;
    let signer = keys::Signer::load(&ostree_key, &pw)?;
    let r = commit::commit_release(
        &a.repo,
        &a.release,
        &commit::CommitOptions {
            cosign_pub: &a.key,
            signer: &signer,
            channel: &a.channel,
        },
    )?;
    print_commit(&r, a.json)
}

/// Prints a commit report (text or JSON).
pub fn print_commit(r: &commit::CommitReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else if r.unchanged {
        println!(
            "{} {} is already the head of {} ({})",
            r.image, r.version, r.refname, r.commit
        );
    } else {
        println!(
            "committed {} {} to {} in {:.1} s:\n  commit {}\n  uki    {}",
            r.image, r.version, r.refname, r.seconds, r.commit, r.uki_path
        );
    }
    Ok(())
}

fn run_log(a: LogArgs) -> anyhow::Result<()> {
    let logs = log::log(&a.repo, a.limit)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&logs)?);
        return Ok(());
    }
    for l in &logs {
        println!("{}", l.refname);
        for e in &l.commits {
            println!(
                "  {}  {:<12} {}{}",
                &e.commit[..16],
                e.version.as_deref().unwrap_or("-"),
                if e.signed { "signed" } else { "UNSIGNED" },
                if e.deltas_from.is_empty() {
                    String::new()
                } else {
                    format!(", deltas from {}", e.deltas_from.len())
                }
            );
        }
    }
    Ok(())
}

/// Runs `keel publish`.
pub fn run_publish(a: PublishArgs) -> anyhow::Result<()> {
    let pw = password(a.password_file.as_deref())?;
    let signer = keys::Signer::load(&a.ostree_key, &pw)?;
    let r = publish::publish(
        &a.repo,
        &signer,
        &publish::PublishOptions {
            deltas: a.deltas,
            from_scratch: a.from_scratch,
        },
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    for d in &r.deltas {
        println!(
            "{} delta {} -> {}: {} bytes{}",
            d.refname,
            d.from.as_deref().map(|f| &f[..12]).unwrap_or("scratch"),
            &d.to[..12],
            d.size,
            if d.generated { " (new)" } else { "" }
        );
    }
    println!(
        "summary of {} ref(s) signed by {} ({:.1} s)",
        r.refs.len(),
        r.summary_signed_by,
        r.seconds
    );
    Ok(())
}

/// `keel build --ostree-repo DIR`: commits the release just built and
/// signed in `out_dir`, with the keys beside `sign_key`.
pub fn commit_after_build(
    repo: &Path,
    out_dir: &Path,
    sign_key: &Path,
    password_file: Option<&Path>,
) -> anyhow::Result<commit::CommitReport> {
    let cosign_pub = sign_key.with_extension("pub");
    if !cosign_pub.is_file() {
        anyhow::bail!(
            "--ostree-repo verifies the release with the public key beside --sign-key, and {} does not exist",
            cosign_pub.display()
        );
    }
    let pw = password(password_file)?;
    let signer = keys::Signer::load(&keys::beside(sign_key).0, &pw)?;
    if !repo.join("config").is_file() {
        super::init(repo)?;
    }
    commit::commit_release(
        repo,
        out_dir,
        &commit::CommitOptions {
            cosign_pub: &cosign_pub,
            signer: &signer,
            channel: super::DEFAULT_CHANNEL,
        },
    )
}
