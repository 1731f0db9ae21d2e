//! The one place a Keel binary sets up its `tracing` subscriber (`keel`,
//! `keel-bootstrap`, `keel-enroll`): events go to stderr, or to the journal
//! for a binary that asks for it and runs under systemd (its stderr is
//! then the journal: `JOURNAL_STREAM` is set). `RUST_LOG` overrides the
//! level.

use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;

/// How a binary logs.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The level when `RUST_LOG` is unset: info, debug with 1 (`-v`),
    /// trace with 2 or more.
    pub verbose: u8,
    /// Log to the journal with this syslog identifier when running under
    /// systemd; `None`: always stderr.
    pub journald: Option<&'static str>,
    /// Show each event's target (the module that logged it).
    pub targets: bool,
}

/// The filter directive for `verbose` when `RUST_LOG` is unset.
pub fn default_level(verbose: u8) -> &'static str {
    match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    }
}

/// Installs the subscriber; call once, first thing in `main`. A second call
/// (a test calling a binary's entry point twice) keeps the first.
pub fn init(opts: &Options) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_level(opts.verbose)));
    if let Some(id) = opts.journald {
        if std::env::var_os("JOURNAL_STREAM").is_some() {
            if let Ok(j) = tracing_journald::layer() {
                let _ = tracing_subscriber::registry()
                    .with(filter)
                    .with(j.with_syslog_identifier(id.to_string()))
                    .try_init();
                return;
            }
        }
    }
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(opts.targets),
        )
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_table() {
        assert_eq!(default_level(0), "info");
        assert_eq!(default_level(1), "debug");
        assert_eq!(default_level(2), "trace");
        assert_eq!(default_level(9), "trace");
    }

    #[test]
    fn init_twice_keeps_the_first() {
        init(&Options::default());
        init(&Options {
            verbose: 2,
            journald: Some("keel-test"),
            targets: true,
        });
        tracing::info!("still logging");
    }
}
