//! `keel pool`: look into the package pool and export one lock's packages.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::Pool;
use crate::lock::Lock;

/// `keel pool` subcommands.
#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Write the .debs of one lock (and the lock) into DEST, a pool of its
    /// own: archive it next to the release; `keel build --pool DEST` builds
    /// from it after the archive has dropped those versions.
    Export(ExportArgs),
    /// How many of a lock's packages the pool holds.
    Status(StatusArgs),
}

/// Where the lock and the pool are.
#[derive(Debug, Args)]
pub struct PoolSource {
    /// An image definition directory (its packages.lock) or a lock file
    /// (e.g. the packages.lock a build wrote beside its outputs).
    pub lock: PathBuf,
    /// The pool; default: CACHE_DIR/pool.
    #[arg(long)]
    pub pool: Option<PathBuf>,
    /// The build cache directory whose pool is meant.
    #[arg(long, default_value = "/var/cache/keel")]
    pub cache_dir: PathBuf,
}

/// Options of `keel pool export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub source: PoolSource,
    /// Directory to write (created; an existing pool there is added to).
    pub dest: PathBuf,
}

/// Options of `keel pool status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub source: PoolSource,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn load_lock(path: &Path) -> anyhow::Result<Lock> {
    let file = if path.is_dir() {
        path.join(crate::lock::FILE_NAME)
    } else {
        path.to_path_buf()
    };
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    Ok(Lock::parse(&text, &file)?)
}

impl PoolSource {
    fn open(&self) -> anyhow::Result<(Lock, Pool)> {
        let lock = load_lock(&self.lock)?;
        let dir = self
            .pool
            .clone()
            .unwrap_or_else(|| Pool::default_dir(&self.cache_dir));
        Ok((lock, Pool::open(&dir)?))
    }
}

/// Runs a `keel pool` subcommand.
pub fn run(cmd: PoolCommand) -> anyhow::Result<()> {
    match cmd {
        PoolCommand::Export(a) => {
            let (lock, pool) = a.source.open()?;
            let n = pool
                .export(&lock, &a.dest)
                .context("exporting the pool (build the image once with this lock to fill it)")?;
            println!("exported {n} packages to {}", a.dest.display());
            Ok(())
        }
        PoolCommand::Status(a) => {
            let (lock, pool) = a.source.open()?;
            let all = lock.all_packages();
            let missing: Vec<String> = all
                .iter()
                .filter(|p| !pool.contains(p))
                .map(|p| p.pin())
                .collect();
            if a.json {
                let v = serde_json::json!({
                    "pool": pool.dir(),
                    "packages": all.len(),
                    "pooled": all.len() - missing.len(),
                    "missing": missing,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{}: {} of {} locked packages pooled",
                    pool.dir().display(),
                    all.len() - missing.len(),
                    all.len()
                );
                for m in &missing {
                    println!("  missing {m}");
                }
            }
            Ok(())
        }
    }
}
