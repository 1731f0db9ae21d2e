//! The command line of `keel-enroll-bench`.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// keel-enroll-bench: load generator for keel-enroll. Simulated nodes
/// (software TPM keys in TPM formats) enroll against a real `keel-enroll
/// serve` process on loopback over HTTPS.
#[derive(Debug, Clone, Parser)]
#[command(name = "keel-enroll-bench", version)]
pub struct BenchArgs {
    /// Number of simulated nodes (full enrollments).
    #[arg(long, default_value_t = 2000)]
    pub nodes: usize,
    /// Nodes enrolling at the same time.
    #[arg(long, default_value_t = 100)]
    pub concurrency: usize,
    /// Storage backend.
    #[arg(long, value_enum, default_value_t = Backend::Sqlite)]
    pub backend: Backend,
    /// EK/AK key type.
    #[arg(long, value_enum, default_value_t = KeyType::Ecc)]
    pub key: KeyType,
    /// PostgreSQL URL (default: start a throw-away server with keel-testbed).
    #[arg(long, env = "KEEL_BENCH_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Open loop: nodes arriving per second (default: closed loop, `--concurrency`
    /// nodes always in flight).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Share a pool of kept-alive connections between nodes instead of one new
    /// TLS connection per node (real nodes each connect afresh).
    #[arg(long)]
    pub reuse_connections: bool,
    /// The keel-enroll binary to run as the service (default: the
    /// `keel-enroll` beside this program, else the one on PATH).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Storage backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// Embedded SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// Key type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyType {
    /// ECC P-256 EK and AK.
    Ecc,
    /// RSA-2048 EK and AK.
    Rsa,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_debug_assert() {
        super::BenchArgs::command().debug_assert();
    }
}
