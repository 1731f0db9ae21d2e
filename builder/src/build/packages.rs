//! Which packages a build installs and where they come from: the lock,
//! checked against the archive and the package pool before mkosi runs, and
//! the pool filled from apt's download cache after it succeeded.
//!
//! A locked version the archive still offers comes from the archive (apt
//! checks it against the signed index, whose digest we compare with the
//! lock's). One it no longer offers comes from the pool, staged into the
//! work directory's package folder for mkosi's local repository after its
//! digest was checked. One neither has stops a release build with the
//! names, the pool looked in and the ways out; `--relock` instead
//! re-resolves against today's archive for this build only.

use std::path::Path;

use anyhow::Context as _;

use super::Prepared;
use crate::cli::BuildArgs;
use crate::lock::{apt::PrivateApt, Lock, LockedPackage};
use crate::pool::Pool;

/// What [`plan`] decided.
#[derive(Debug)]
pub struct Plan {
    /// A lock re-resolved by `--relock` (None: the definition's lock stands).
    pub relocked: Option<Lock>,
    /// Locked packages the archive lacks and the pool supplies.
    pub from_pool: Vec<LockedPackage>,
}

/// The package pool this build uses.
pub fn pool(args: &BuildArgs) -> anyhow::Result<Pool> {
    let dir = args
        .pool
        .clone()
        .unwrap_or_else(|| Pool::default_dir(&args.cache_dir));
    Ok(Pool::open(&dir)?)
}

/// Checks `prep`'s lock against the archive and the pool.
pub fn plan(args: &BuildArgs, prep: &Prepared, lock: &Lock, pool: &Pool) -> anyhow::Result<Plan> {
    let state = args.cache_dir.join("apt-check");
    let apt = PrivateApt::new(&prep.spec, &prep.mirrors, Some(&state))?;
    let check = apt.check(lock)?;
    let (from_pool, gone): (Vec<LockedPackage>, Vec<LockedPackage>) =
        check.missing.into_iter().partition(|p| pool.contains(p));
    if gone.is_empty() {
        if !from_pool.is_empty() {
            tracing::info!(
                "{} locked package(s) no longer in the archive come from the pool {}",
                from_pool.len(),
                pool.dir().display()
            );
        }
        return Ok(Plan {
            relocked: None,
            from_pool,
        });
    }
    let lock_file = prep.image_dir.join(crate::lock::FILE_NAME);
    let pins: Vec<String> = gone.iter().map(LockedPackage::pin).collect();
    if !args.relock {
        anyhow::bail!(
            "{file} is stale: neither the archive nor the package pool {pool} has {n} of its locked versions: {list}.\n\
             Ways out:\n  \
             - move the lock to the archive's current versions and commit it: `keel lock --update {dir}`\n  \
             - or build from the pool archived with the release (`keel pool export`): `keel build --pool DIR {dir}`\n\
             (For a demo or a test, `keel build --relock` re-resolves for this build only.)",
            file = lock_file.display(),
            pool = pool.dir().display(),
            n = pins.len(),
            list = pins.join(", "),
            dir = prep.image_dir.display(),
        );
    }
    let new = crate::lock::apt::resolve_with(&apt, &prep.spec).context("re-resolving the lock")?;
    // One line a log reader cannot miss: this build is not from the committed lock.
    eprintln!(
        "keel: {} is stale ({} gone: {}); --relock: building from a lock re-resolved against today's archive, written to the output directory",
        lock_file.display(),
        pins.len(),
        pins.join(", ")
    );
    eprint!("{}", crate::lock::diff_text(lock, &new));
    Ok(Plan {
        relocked: Some(new),
        from_pool: Vec::new(),
    })
}

/// Puts the pool's share of the packages where mkosi's local repository
/// picks them up.
pub fn stage(plan: &Plan, pool: &Pool, work: &Path) -> anyhow::Result<()> {
    if plan.from_pool.is_empty() {
        return Ok(());
    }
    pool.stage(&plan.from_pool, &work.join(crate::render::PACKAGE_DIR))
        .context("taking packages from the pool")
}

/// After a successful build: adds the .debs apt downloaded to the pool.
pub fn harvest(lock: &Lock, pool: &Pool, cache_dir: &Path) -> anyhow::Result<()> {
    let archives = super::mkosi::apt_archives(cache_dir);
    let h = pool
        .harvest(lock, &archives)
        .with_context(|| format!("adding packages to the pool {}", pool.dir().display()))?;
    tracing::info!(
        "package pool {}: {} added, {} already there, {} not downloaded by this build",
        pool.dir().display(),
        h.added,
        h.present,
        h.absent
    );
    Ok(())
}
