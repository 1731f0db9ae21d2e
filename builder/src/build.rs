//! `keel build` (being written).
use crate::cli::BuildArgs;

/// Runs `keel build`.
pub fn run(_args: BuildArgs) -> anyhow::Result<()> {
    anyhow::bail!("keel build is not implemented yet")
}
