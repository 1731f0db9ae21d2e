//! `audit ...`: check the hash chain and its signed heads, adopt an old
//! chain, write and check the daily exports.

use std::path::Path;

use super::context::{admin, audit_pub};
use super::AuditCmd;
use crate::audit_sign::AuditPub;

/// Runs an `audit` command.
pub async fn run(config: &Path, cmd: &AuditCmd) -> anyhow::Result<()> {
    match cmd {
        AuditCmd::Verify { key } => {
            let key = key.as_deref().map(AuditPub::load).transpose()?;
            let r = admin(config).await?.audit_verify_with(key.as_ref()).await?;
            println!(
                "audit log OK: {} rows, head {}; {} signed heads verified, last signed row {}",
                r.rows, r.head, r.heads.heads, r.heads.last_signed
            );
            if r.heads.unsigned_tail > 0 {
                println!(
                    "{} rows after row {} are not signed yet (the service signs every audit-sign-secs)",
                    r.heads.unsigned_tail, r.heads.last_signed
                );
            }
        }
        AuditCmd::Adopt => match admin(config).await?.audit_adopt().await? {
            Some(h) => println!("audit chain signed up to row {} ({})", h.seq, h.hash),
            None => println!("audit chain already signed; nothing to adopt"),
        },
        AuditCmd::VerifyExport { file, key } => {
            let key = audit_pub(config, key.as_deref())?;
            let r = crate::audit_heads::check_export(file, &key)?;
            println!(
                "export OK: {} ({} rows, {} nodes, config {}), signature by audit key {}, signed chain head row {}",
                r.day,
                r.rows,
                r.nodes,
                r.config_sha256.as_deref().unwrap_or("not recorded"),
                key.key_id,
                r.head.seq
            );
        }
        AuditCmd::Export { day, out } => {
            let loaded = crate::config::Config::load(config)?;
            let p = admin(config)
                .await?
                .audit_export(day, out, Some(&loaded))
                .await?;
            println!("{}", p.display());
        }
    }
    Ok(())
}
