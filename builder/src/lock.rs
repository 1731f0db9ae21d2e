//! `keel lock` (being written).
use crate::cli::LockArgs;

/// Runs `keel lock`.
pub fn run(_args: LockArgs) -> anyhow::Result<()> {
    anyhow::bail!("keel lock is not implemented yet")
}
