//! Hooks mkosi calls back into during a build (being written).
use crate::cli::FinalizeArgs;

/// Runs `keel internal finalize`.
pub fn finalize(_args: FinalizeArgs) -> anyhow::Result<()> {
    anyhow::bail!("keel internal finalize is not implemented yet")
}
