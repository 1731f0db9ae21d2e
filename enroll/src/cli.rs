//! The command line: the service, admin commands and the benchmark.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// keel-enroll: the central enrollment service for Keel store nodes.
#[derive(Debug, Parser)]
#[command(name = "keel-enroll", version)]
pub struct Cli {
    /// Service configuration file.
    #[arg(
        long,
        global = true,
        env = "KEEL_ENROLL_CONFIG",
        default_value = "/etc/keel-enroll/keel-enroll.toml"
    )]
    pub config: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTPS service.
    Serve,
    /// Write a local CA, a server certificate and a node CA (tests and demos).
    DevCerts {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Extra DNS names or IP addresses for the server certificate.
        #[arg(long = "san")]
        sans: Vec<String>,
    },
    /// EK allow-list from purchasing.
    #[command(subcommand)]
    Allowlist(AllowlistCmd),
    /// One-time enrollment tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// The node inventory.
    #[command(subcommand)]
    Nodes(NodesCmd),
    /// The hash-chained audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Load generator: simulated nodes (software TPM keys in TPM formats)
    /// enrolling against a real server on loopback over HTTPS.
    #[cfg(feature = "bench")]
    Bench(BenchArgs),
}

/// `allowlist ...`
#[derive(Debug, Subcommand)]
pub enum AllowlistCmd {
    /// Import a CSV of `ek_sha256,serial,store` (header optional).
    Import {
        /// The CSV file.
        csv: PathBuf,
    },
}

/// `token ...`
#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create a one-time token for a store; it is printed once and stored hashed.
    Create {
        /// Store id.
        #[arg(long)]
        store: String,
        /// Validity in hours.
        #[arg(long, default_value_t = 24)]
        ttl_hours: i64,
        /// Bind the token to one TPM: the SHA-256 (hex) of its EK public key
        /// (as on the allow-list). Any other TPM presenting it is refused.
        #[arg(long = "ek")]
        ek_sha256: Option<String>,
    },
}

/// `nodes ...`
#[derive(Debug, Subcommand)]
pub enum NodesCmd {
    /// List nodes.
    List {
        /// Only nodes with this status.
        #[arg(long)]
        status: Option<StatusArg>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List nodes waiting for approval, with their EK certificate's subject,
    /// issuer and serial.
    Pending {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Approve a pending node (admitted at its next attempt).
    Approve {
        /// Node: STORE/NODE, or NODE when the id is unique across stores.
        node: String,
    },
    /// Revoke a node and take its material back: node certificates revoked
    /// (CRL), Ceph key removed, EAB key retired (prints what to deactivate at
    /// the CA). Exits non-zero if an issuer could not withdraw; run it again.
    Revoke {
        /// Node: STORE/NODE, or NODE when the id is unique across stores.
        node: String,
    },
    /// Delete a pending or revoked node's row (frees its id in its store).
    Delete {
        /// Node: STORE/NODE, or NODE when the id is unique across stores.
        node: String,
    },
    /// Allow an enrolled node to enroll again (re-imaging: same EK; RMA: --ek);
    /// what it held before is taken back as on revoke.
    Reenroll {
        /// Node: STORE/NODE, or NODE when the id is unique across stores.
        node: String,
        /// SHA-256 of the replacement TPM's EK (after an RMA).
        #[arg(long)]
        ek: Option<String>,
    },
}

/// Node status filter.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StatusArg {
    /// Waiting for approval.
    Pending,
    /// Approved, not yet enrolled.
    Approved,
    /// Enrolled.
    Admitted,
    /// Revoked.
    Revoked,
}

/// `audit ...`
#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Recompute the hash chain and check every signed chain head; fails on
    /// any edited or deleted row, and on a chain rewritten with recomputed hashes.
    Verify {
        /// Public audit key (PEM) to check heads against (default: the
        /// public half of the configured audit-key).
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Sign the chain of a log written before signed heads existed (the
    /// service refuses to start signing a chain with rows but no signed head).
    Adopt,
    /// Check an export: its detached signature (FILE.sig), its rows' hashes
    /// and the signed chain head it carries.
    VerifyExport {
        /// The export (DIR/audit/edge/YYYYMMDD.json).
        file: PathBuf,
        /// Public audit key (PEM); default: the configured audit-key's public half.
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Write DIR/audit/edge/YYYYMMDD.json with the day's decisions, the
    /// inventory (every node's state), the configuration's hash and its trust
    /// inputs' hashes and the signed chain head, and its signature
    /// YYYYMMDD.json.sig (the nightly evidence; see keel-enroll-evidence.timer).
    Export {
        /// Day: YYYY-MM-DD, `today` or `yesterday` (UTC).
        #[arg(long, default_value = "yesterday")]
        day: String,
        /// Output directory.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
}

/// `bench` arguments.
#[derive(Debug, Clone, clap::Args)]
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
    /// The keel-enroll binary to run as the service (default: this one).
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

impl From<StatusArg> for crate::admission::NodeStatus {
    fn from(s: StatusArg) -> Self {
        use crate::admission::NodeStatus as N;
        match s {
            StatusArg::Pending => N::Pending,
            StatusArg::Approved => N::Approved,
            StatusArg::Admitted => N::Admitted,
            StatusArg::Revoked => N::Revoked,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_debug_assert() {
        super::Cli::command().debug_assert();
    }
}
