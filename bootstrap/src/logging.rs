//! One tracing subscriber: journald when running under systemd (stderr is
//! the journal: `JOURNAL_STREAM` is set), else plain stderr. `RUST_LOG`
//! overrides the level (default info).

use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;

/// Installs the subscriber; call once from main.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        if let Ok(j) = tracing_journald::layer() {
            let _ = tracing_subscriber::registry()
                .with(filter)
                .with(j.with_syslog_identifier("keel-bootstrap".into()))
                .try_init();
            return;
        }
    }
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false),
        )
        .try_init();
}
