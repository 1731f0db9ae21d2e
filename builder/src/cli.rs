//! The `keel` command line: one [`Commands`] variant per subcommand, and
//! [`run`], which dispatches each to the library.
//!
//! Other parts of the builder add their own subcommands here with a small
//! edit: a variant in [`Commands`] and an arm in [`run`]. Keep each arm a
//! one-line call into the module that owns the command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Keel builds immutable, signed OS images for store edge nodes.
#[derive(Debug, Parser)]
#[command(
    name = "keel",
    version,
    propagate_version = true,
    after_long_help = crate::exit::HELP
)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Commands,
}

/// Keel's subcommands.
#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Build a disk image (raw + qcow2) from an image definition directory.
    Build(BuildArgs),
    /// Resolve every package of an image to an exact version into packages.lock.
    Lock(LockArgs),
    /// Compare cold and warm `keel build` with bare `mkosi build` and time a no-change rebuild.
    Bench(BenchArgs),
    /// Hooks that mkosi calls back into during `keel build` (not for direct use).
    #[command(hide = true, subcommand)]
    Internal(InternalCommand),
    // Other subcommands (vm, key, sign, verify, sbom, flash, seed) are added below this line.
    /// Release signing keys.
    #[command(subcommand)]
    Key(crate::release::cli::KeyCommand),
    /// Sign manifest.json and every artifact of a release directory (cosign formats).
    Sign(crate::release::cli::SignArgs),
    /// Verify a release: manifest signature, every artifact, the SBOMs inside the image.
    Verify(crate::release::cli::VerifyArgs),
    /// Write SBOMs for a Debian tree (what `keel build` does inside the image).
    #[command(hide = true)]
    Sbom(crate::sbom::cli::SbomArgs),
    /// Boot images under QEMU with UEFI firmware and a software TPM.
    #[command(subcommand)]
    Vm(crate::vm::cli::VmCommand),
    /// Sign GitOps bundles for store nodes (.keel/manifest + .keel/signature).
    #[command(subcommand)]
    Bundle(crate::bundle::BundleCommand),
    /// The package pool that keeps a lock buildable after the archive moved on.
    #[command(subcommand)]
    Pool(crate::pool::cli::PoolCommand),
    /// Write a verified release to a node's disk (or a USB stick), read it back, compare.
    Flash(crate::flash::FlashArgs),
    /// Make a node's first-boot seed (cloud-init NoCloud, ISO or FAT, label cidata).
    Seed(crate::seed::SeedArgs),
    /// The OSTree release repository: init, commit a signed release, log, key.
    #[command(subcommand)]
    Repo(crate::ostree::cli::RepoCommand),
    /// Make a release repository ready to serve: static deltas, signed summary.
    Publish(crate::ostree::cli::PublishArgs),
}

/// Options of `keel build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Image definition directory (holds image.toml).
    pub image_dir: PathBuf,
    /// Output directory for IMAGE.raw, IMAGE.qcow2, the UKI and build-record.json.
    #[arg(long, default_value = "out")]
    pub out: PathBuf,
    /// Package cache reused between builds.
    #[arg(long, default_value = "/var/cache/keel")]
    pub cache_dir: PathBuf,
    /// Build even when every input matches the last build record.
    #[arg(long)]
    pub force: bool,
    /// Build twice from clean and report whether the outputs are bit-identical.
    #[arg(long)]
    pub check_reproducible: bool,
    /// Print a JSON summary on stdout instead of a human one.
    #[arg(long)]
    pub json: bool,
    /// Sign the release manifest with this cosign private key.
    #[arg(long)]
    pub sign_key: Option<PathBuf>,
    /// File holding the signing key's password (else the file named by env
    /// KEEL_KEY_PASSWORD_FILE, else env KEEL_KEY_PASSWORD); read into memory,
    /// never passed on to mkosi or any other child.
    #[arg(long, requires = "sign_key")]
    pub sign_key_password_file: Option<PathBuf>,
    /// Keep the rendered mkosi configuration and work directory for inspection.
    #[arg(long)]
    pub keep_work: bool,
    /// Package pool: .debs of earlier builds by digest, used for locked
    /// versions the archive no longer offers (default CACHE_DIR/pool; an
    /// exported pool works too).
    #[arg(long)]
    pub pool: Option<PathBuf>,
    /// When the lock is stale (neither archive nor pool has a locked
    /// version), re-resolve it against today's archive for this build only,
    /// instead of failing. For demos and tests; a release build stays strict.
    #[arg(long)]
    pub relock: bool,
    /// After the build, commit the signed release to this OSTree repository
    /// (created if missing), signed with ostree-gpg.key beside --sign-key.
    #[arg(long, requires = "sign_key")]
    pub ostree_repo: Option<PathBuf>,
}

/// Options of `keel lock`.
#[derive(Debug, Args)]
pub struct LockArgs {
    /// Image definition directory (holds image.toml); packages.lock is written beside it.
    pub image_dir: PathBuf,
    /// Re-resolve against today's archive even when a lock exists (else an
    /// existing lock is only checked).
    #[arg(long)]
    pub update: bool,
    /// Print the lock on stdout instead of writing packages.lock.
    #[arg(long)]
    pub dry_run: bool,
}

/// Options of `keel bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Image definition directory (holds image.toml).
    pub image_dir: PathBuf,
    /// Scratch directory for the benchmark's outputs and caches.
    #[arg(long, default_value = "/var/tmp/keel-bench")]
    pub work: PathBuf,
    /// How many alternating rounds of (keel, mkosi) to run for each of cold and warm.
    #[arg(long, default_value_t = 1)]
    pub rounds: u32,
}

/// Hidden subcommands that run inside a build.
#[derive(Debug, Subcommand)]
pub enum InternalCommand {
    /// Called by the rendered mkosi.finalize script on the image root.
    Finalize(FinalizeArgs),
}

/// Options of `keel internal finalize`.
#[derive(Debug, Args)]
pub struct FinalizeArgs {
    /// The image root ($BUILDROOT).
    #[arg(long)]
    pub root: PathBuf,
    /// Where published files (SBOMs) go ($OUTPUTDIR).
    #[arg(long)]
    pub publish_dir: PathBuf,
    #[arg(long)]
    pub image_name: String,
    #[arg(long)]
    pub image_version: String,
    /// e.g. debian ($DISTRIBUTION).
    #[arg(long)]
    pub distribution: String,
    /// e.g. bookworm ($RELEASE).
    #[arg(long)]
    pub release: String,
    /// Debian architecture, e.g. amd64 ($DISTRIBUTION_ARCHITECTURE).
    #[arg(long)]
    pub architecture: String,
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Commands::Build(args) => crate::build::run(args),
        Commands::Lock(args) => crate::lock::run(args),
        Commands::Bench(args) => crate::bench::run(args),
        Commands::Internal(InternalCommand::Finalize(args)) => crate::hooks::finalize(args),
        // Other subcommands' arms go below this line.
        Commands::Vm(cmd) => crate::vm::cli::run(cmd),
        Commands::Bundle(cmd) => crate::bundle::run(cmd),
        Commands::Pool(cmd) => crate::pool::cli::run(cmd),
        Commands::Key(cmd) => crate::release::cli::run_key(cmd),
        Commands::Sign(args) => crate::release::cli::run_sign(args),
        Commands::Verify(args) => crate::release::cli::run_verify(args),
        Commands::Sbom(args) => crate::sbom::cli::run_sbom(args),
        Commands::Flash(args) => crate::flash::run(args),
        Commands::Seed(args) => crate::seed::run(args),
        Commands::Repo(cmd) => crate::ostree::cli::run_repo(cmd),
        Commands::Publish(args) => crate::ostree::cli::run_publish(args),
    }
}

/// The whole `keel` program: parse the command line, set up logging, run,
/// report the error with its causes, and return the exit code
/// [`crate::exit`] documents. The `keel` binary and the VM tests' copy of
/// it (`keel-test-cli`) are this one function.
pub fn main() -> std::process::ExitCode {
    // A usage error exits here with clap's code 2 (exit::Code::Usage).
    let cli = Cli::parse();
    keel_cmd::logging::init(&keel_cmd::logging::Options {
        verbose: cli.verbose,
        ..Default::default()
    });
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            std::process::ExitCode::from(crate::exit::code_of(&err).value())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}
