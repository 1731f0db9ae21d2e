//! The one place the `tracing` subscriber is set up for the `keel` binary.
use tracing_subscriber::EnvFilter;

/// Logs to stderr at info level (debug with `-v`, trace with `-vv`); `RUST_LOG` wins.
pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
