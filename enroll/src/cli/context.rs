//! What the admin commands share: the configuration, the store and the audit
//! key opened the way the service opens them.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use crate::admin::Admin;
use crate::audit_sign::{AuditKey, AuditPub};
use crate::config::Config;

/// An admin context: the store, the audit key, the OS user as actor.
pub async fn admin(config: &Path) -> anyhow::Result<Admin> {
    let loaded = Config::load(config)?;
    crate::secfile::check_startup(config, &loaded)?;
    let store = crate::store::open(&loaded.config.database)
        .await
        .context("opening database")?;
    let audit_key = Arc::new(AuditKey::load(&loaded.config.audit_key)?);
    // An empty chain gets its genesis head, so the first change can be signed.
    if let Err(e) = crate::audit_heads::sign_tip(&*store, &audit_key).await {
        tracing::warn!("audit chain head not signed: {e}");
    }
    Ok(Admin {
        store,
        config_sha256: loaded.sha256,
        actor: crate::admin::os_actor(),
        audit_key,
        issuers: Vec::new(),
    })
}

/// `--key PUB`, or the public half of the configured audit key.
pub fn audit_pub(config: &Path, key: Option<&Path>) -> anyhow::Result<AuditPub> {
    match key {
        Some(k) => Ok(AuditPub::load(k)?),
        None => {
            let loaded = Config::load(config)?;
            Ok(AuditKey::load(&loaded.config.audit_key)?.public().clone())
        }
    }
}

/// An admin context that can also take material back (revoke, reenroll): the
/// issuers of the configuration's `[stores.*]` tables.
pub fn with_issuers(config: &Path, mut a: Admin) -> anyhow::Result<Admin> {
    let loaded = Config::load(config)?;
    a.issuers = crate::issue::from_config(&loaded.config, a.store.clone())
        .context("loading join-material issuers (to take the node's material back)")?;
    Ok(a)
}
