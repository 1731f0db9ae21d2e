//! keel-enroll: thin entry point; everything lives in the library.
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use keel_enroll::cli::{AllowlistCmd, AuditCmd, Cli, Command, NodesCmd, TokenCmd};
use keel_enroll::{admin::Admin, config::Config, server, store};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn admin(cli: &Cli) -> anyhow::Result<Admin> {
    let loaded = Config::load(&cli.config)?;
    let store = store::open(&loaded.config.database)
        .await
        .context("opening database")?;
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    Ok(Admin {
        store,
        config_sha256: loaded.sha256,
        actor: format!("admin:{user}"),
    })
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Serve => {
            let loaded = Config::load(&cli.config)?;
            let store = store::open(&loaded.config.database)
                .await
                .context("opening database")?;
            let app = Arc::new(server::App::new(&loaded, store)?);
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
        }
        Command::DevCerts { out, sans } => {
            keel_enroll::devcerts::write(out, sans)?;
            for f in keel_enroll::devcerts::FILES {
                println!("{}", out.join(f).display());
            }
        }
        Command::Allowlist(AllowlistCmd::Import { csv }) => {
            let n = admin(&cli).await?.import_allowlist(csv).await?;
            println!("imported {n} allow-list entries");
        }
        Command::Token(TokenCmd::Create { store, ttl_hours }) => {
            let t = admin(&cli)
                .await?
                .create_token(store, ttl_hours * 3600)
                .await?;
            println!("{t}");
            eprintln!(
                "one-time token for store {store}, valid {ttl_hours} h; it is not shown again"
            );
        }
        Command::Nodes(cmd) => {
            let a = admin(&cli).await?;
            match cmd {
                NodesCmd::List { status } => print_nodes(&a.nodes(status.map(Into::into)).await?),
                NodesCmd::Pending => print_nodes(
                    &a.nodes(Some(keel_enroll::admission::NodeStatus::Pending))
                        .await?,
                ),
                NodesCmd::Approve { node } => {
                    a.approve(node).await?;
                    println!("approved {node}");
                }
                NodesCmd::Revoke { node } => {
                    a.revoke(node).await?;
                    println!("revoked {node}");
                }
                NodesCmd::Reenroll { node, ek } => {
                    a.reenroll(node, ek.as_deref()).await?;
                    println!("{node} may enroll again");
                }
            }
        }
        Command::Audit(AuditCmd::Verify) => {
            let (n, head) = admin(&cli).await?.audit_verify().await?;
            println!("audit log OK: {n} rows, head {head}");
        }
        Command::Audit(AuditCmd::Export { day, out }) => {
            let p = admin(&cli).await?.audit_export(day, out).await?;
            println!("{}", p.display());
        }
        #[cfg(feature = "bench")]
        Command::Bench(args) => {
            let report = keel_enroll::bench::run(args.clone()).await?;
            if args.json {
                println!("{}", report.to_json());
            } else {
                println!("{report}");
            }
            anyhow::ensure!(
                report.failed == 0,
                "{} of {} enrollments failed",
                report.failed,
                args.nodes
            );
        }
    }
    Ok(())
}

fn print_nodes(nodes: &[keel_enroll::admission::NodeRow]) {
    println!(
        "{:<24} {:<12} {:<9} {:<16} {:<20} REVISION",
        "NODE", "STORE", "STATUS", "EK", "RELEASE"
    );
    for n in nodes {
        println!(
            "{:<24} {:<12} {:<9} {:<16} {:<20} {}",
            n.node_id,
            n.store_id,
            n.status.as_str(),
            &n.ek_sha256[..n.ek_sha256.len().min(16)],
            n.release,
            n.revision.as_deref().unwrap_or("-")
        );
    }
}
