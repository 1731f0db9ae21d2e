//! The command line (clap derive; the doc comments are the help text).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// keel-bootstrap: brings a Keel store node from first power-on to an
/// enrolled, Ceph-joined, certified node running its signed GitOps bundle.
#[derive(Debug, Parser)]
#[command(name = "keel-bootstrap", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run (or resume) first boot until done.
    Run(RunArgs),
    /// Show where first boot stands.
    Status(StatusArgs),
    /// Renew the node certificate when two thirds of its lifetime have passed.
    Renew(TimerArgs),
    /// Pull, verify and apply the GitOps bundle.
    Sync(TimerArgs),
    /// Work with first-boot seeds (cloud-init NoCloud).
    Seed(SeedArgs),
}

/// `seed` subcommands.
#[derive(Debug, Args)]
pub struct SeedArgs {
    /// What to do with the seed.
    #[command(subcommand)]
    pub command: SeedCommand,
}

/// What `seed` does.
#[derive(Debug, Subcommand)]
pub enum SeedCommand {
    /// Parse and validate a seed completely without applying anything: print
    /// warnings and what `run` would do. Exit code 0 when valid, 4 when not.
    Check(CheckArgs),
}

/// `seed check` options.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The seed: a directory with meta-data/user-data (and network-config),
    /// or an ISO 9660 / FAT image or device as `cloud-localds` makes.
    pub path: PathBuf,
    /// Print the report as JSON (fields: valid, source, error, warnings, summary).
    #[arg(long)]
    pub json: bool,
}

/// Options shared by the subcommands that use the state directory.
#[derive(Debug, Args)]
pub struct Common {
    /// Where first-boot state, keys and join material are kept.
    #[arg(long, default_value = "/var/lib/keel", env = "KEEL_STATE_DIR")]
    pub state_dir: PathBuf,
}

/// `run` options.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Seed to use: a directory with meta-data/user-data, or an ISO 9660 /
    /// FAT image or device. Default: a volume labelled CIDATA, else
    /// <root>/var/lib/cloud/seed/nocloud.
    #[arg(long)]
    pub seed: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
    /// Root of the system to configure (hostname, users, files, Ceph conf).
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// TPM access (TCTI): `device:/dev/tpmrm0`, or `swtpm:host=127.0.0.1,port=2321`.
    /// Default: the seed's keel: tcti, else device:/dev/tpmrm0.
    #[arg(long, env = "KEEL_TCTI")]
    pub tcti: Option<String>,
    /// Where console lines for a technician go (the unit uses /dev/console).
    #[arg(long)]
    pub console: Option<PathBuf>,
    /// The firmware TPM event log sent with the quote.
    #[arg(
        long,
        default_value = "/sys/kernel/security/tpm0/binary_bios_measurements"
    )]
    pub event_log: PathBuf,
    /// First retry delay in milliseconds while a service is unreachable.
    #[arg(long, default_value_t = 2000)]
    pub backoff_initial_ms: u64,
    /// Largest retry delay in milliseconds.
    #[arg(long, default_value_t = 300_000)]
    pub backoff_max_ms: u64,
    /// Start Ceph OSDs as child processes instead of systemd units (host tests).
    #[arg(long)]
    pub spawn_osds: bool,
    /// Extra `[osd]` ceph.conf option, KEY=VALUE (repeatable; host tests).
    #[arg(long = "osd-option", value_name = "KEY=VALUE")]
    pub osd_options: Vec<String>,
    /// Where the ACME HTTP-01 responder listens (default 0.0.0.0:80).
    #[arg(long)]
    pub http01_listen: Option<std::net::SocketAddr>,
}

/// `status` options.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub common: Common,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `renew` and `sync` options.
#[derive(Debug, Args)]
pub struct TimerArgs {
    #[command(flatten)]
    pub common: Common,
    /// Config file written by first boot (default: in the state directory).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_parses() {
        let c = Cli::try_parse_from([
            "keel-bootstrap",
            "run",
            "--seed",
            "/s",
            "--tcti",
            "swtpm:port=1",
        ])
        .expect("parses");
        match c.command {
            Command::Run(r) => {
                assert_eq!(r.common.state_dir, PathBuf::from("/var/lib/keel"));
                assert_eq!(r.tcti.as_deref(), Some("swtpm:port=1"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn seed_check_parses() {
        let c = Cli::try_parse_from(["keel-bootstrap", "seed", "check", "seed.iso", "--json"])
            .expect("parses");
        match c.command {
            Command::Seed(SeedArgs {
                command: SeedCommand::Check(a),
            }) => {
                assert_eq!(a.path, PathBuf::from("seed.iso"));
                assert!(a.json);
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["keel-bootstrap", "seed", "check"]).is_err());
    }
}
