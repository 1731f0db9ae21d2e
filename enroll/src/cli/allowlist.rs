//! `allowlist import`: purchasing's EK allow-list.

use std::path::Path;

use super::context::admin;
use super::AllowlistCmd;

/// Runs an `allowlist` command.
pub async fn run(config: &Path, cmd: &AllowlistCmd) -> anyhow::Result<()> {
    match cmd {
        AllowlistCmd::Import { csv } => {
            let n = admin(config).await?.import_allowlist(csv).await?;
            println!("imported {n} allow-list entries");
        }
    }
    Ok(())
}
