//! `serve`: the HTTPS service until ctrl-c; `dev-certs`: a local CA and
//! certificates for tests and demos.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use crate::audit_sign::AuditKey;
use crate::config::Config;
use crate::{audit_heads, server, store};

/// Runs the service: signs the audit chain's tip, serves, and signs it again
/// at shutdown.
pub async fn serve(config: &Path) -> anyhow::Result<()> {
    let loaded = Config::load(config)?;
    crate::secfile::check_startup(config, &loaded)?;
    let audit_key = Arc::new(AuditKey::load(&loaded.config.audit_key)?);
    let store = store::open(&loaded.config.database)
        .await
        .context("opening database")?;
    if let Err(e) = audit_heads::sign_tip(&*store, &audit_key).await {
        tracing::error!("audit chain head not signed: {e}");
    }
    let signer = audit_heads::spawn_signer(
        store.clone(),
        audit_key.clone(),
        std::time::Duration::from_secs(loaded.config.audit_sign_secs.max(1)),
    );
    let app = Arc::new(server::App::new(&loaded, store.clone())?);
    let tls = server::tls_config(&loaded.config.tls_cert, &loaded.config.tls_key)?;
    let running = server::spawn(
        app,
        &loaded.config.listen,
        tls,
        loaded.config.max_body_bytes,
        &loaded.config.limits,
    )
    .await?;
    println!("keel-enroll listening on https://{}", running.addr);
    tokio::signal::ctrl_c()
        .await
        .context("waiting for ctrl-c")?;
    running.shutdown().await;
    signer.abort();
    if let Err(e) = audit_heads::sign_tip(&*store, &audit_key).await {
        eprintln!("warning: audit chain head not signed at shutdown: {e}");
    }
    Ok(())
}

/// Writes the dev certificates and prints their paths.
pub fn dev_certs(out: &Path, sans: &[String]) -> anyhow::Result<()> {
    crate::devcerts::write(out, sans)?;
    for f in crate::devcerts::FILES {
        println!("{}", out.join(f).display());
    }
    Ok(())
}
