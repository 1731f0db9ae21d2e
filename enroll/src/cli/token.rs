//! `token create`: a one-time enrollment token, printed once.

use std::path::Path;

use super::context::admin;
use super::TokenCmd;

/// Runs a `token` command.
pub async fn run(config: &Path, cmd: &TokenCmd) -> anyhow::Result<()> {
    match cmd {
        TokenCmd::Create {
            store,
            ttl_hours,
            ek_sha256,
        } => {
            let t = admin(config)
                .await?
                .create_token_for(store, ttl_hours * 3600, ek_sha256.as_deref())
                .await?;
            println!("{t}");
            eprintln!(
                "one-time token for store {store}, valid {ttl_hours} h; it is not shown again"
            );
        }
    }
    Ok(())
}
