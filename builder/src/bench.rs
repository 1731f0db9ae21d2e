//! `keel bench` (being written).
use crate::cli::BenchArgs;

/// Runs `keel bench`.
pub fn run(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("keel bench is not implemented yet")
}
