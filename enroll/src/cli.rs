//! The command line: the service and the admin commands. The types are here
//! (clap derive; doc comments are the help); each command group runs in its
//! own module. The load generator is a program of its own, keel-enroll-bench.

mod allowlist;
mod audit;
mod context;
mod nodes;
mod serve;
mod token;

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
}

/// Runs the command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config.as_path();
    match &cli.command {
        Command::Serve => serve::serve(config).await,
        Command::DevCerts { out, sans } => serve::dev_certs(out, sans),
        Command::Allowlist(cmd) => allowlist::run(config, cmd).await,
        Command::Token(cmd) => token::run(config, cmd).await,
        Command::Nodes(cmd) => nodes::run(config, cmd).await,
        Command::Audit(cmd) => audit::run(config, cmd).await,
    }
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
