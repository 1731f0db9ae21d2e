//! keel-enroll: thin entry point; everything lives in the library.
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use keel_enroll::audit_sign::{AuditKey, AuditPub};
use keel_enroll::cli::{AllowlistCmd, AuditCmd, Cli, Command, NodesCmd, TokenCmd};
use keel_enroll::{admin::Admin, config::Config, server, store};

fn main() -> ExitCode {
    keel_cmd::logging::init(&keel_cmd::logging::Options {
        targets: true,
        ..Default::default()
    });
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
    keel_enroll::secfile::check_startup(&cli.config, &loaded)?;
    let store = store::open(&loaded.config.database)
        .await
        .context("opening database")?;
    let audit_key = Arc::new(AuditKey::load(&loaded.config.audit_key)?);
    // An empty chain gets its genesis head, so the first change can be signed.
    if let Err(e) = keel_enroll::audit_heads::sign_tip(&*store, &audit_key).await {
        tracing::warn!("audit chain head not signed: {e}");
    }
    Ok(Admin {
        store,
        config_sha256: loaded.sha256,
        actor: keel_enroll::admin::os_actor(),
        audit_key,
        issuers: Vec::new(),
    })
}

/// `--key PUB`, or the public half of the configured audit key.
fn audit_pub(cli: &Cli, key: Option<&std::path::Path>) -> anyhow::Result<AuditPub> {
    match key {
        Some(k) => Ok(AuditPub::load(k)?),
        None => {
            let loaded = Config::load(&cli.config)?;
            Ok(AuditKey::load(&loaded.config.audit_key)?.public().clone())
        }
    }
}

/// An admin context that can also take material back (revoke, reenroll): the
/// issuers of the configuration's `[stores.*]` tables.
fn with_issuers(cli: &Cli, mut a: Admin) -> anyhow::Result<Admin> {
    let loaded = Config::load(&cli.config)?;
    a.issuers = keel_enroll::issue::from_config(&loaded.config, a.store.clone())
        .context("loading join-material issuers (to take the node's material back)")?;
    Ok(a)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Serve => {
            let loaded = Config::load(&cli.config)?;
            keel_enroll::secfile::check_startup(&cli.config, &loaded)?;
            let audit_key = Arc::new(AuditKey::load(&loaded.config.audit_key)?);
            let store = store::open(&loaded.config.database)
                .await
                .context("opening database")?;
            if let Err(e) = keel_enroll::audit_heads::sign_tip(&*store, &audit_key).await {
                tracing::error!("audit chain head not signed: {e}");
            }
            let signer = keel_enroll::audit_heads::spawn_signer(
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
            if let Err(e) = keel_enroll::audit_heads::sign_tip(&*store, &audit_key).await {
                eprintln!("warning: audit chain head not signed at shutdown: {e}");
            }
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
        Command::Token(TokenCmd::Create {
            store,
            ttl_hours,
            ek_sha256,
        }) => {
            let t = admin(&cli)
                .await?
                .create_token_for(store, ttl_hours * 3600, ek_sha256.as_deref())
                .await?;
            println!("{t}");
            eprintln!(
                "one-time token for store {store}, valid {ttl_hours} h; it is not shown again"
            );
        }
        Command::Nodes(cmd) => {
            let a = admin(&cli).await?;
            match cmd {
                NodesCmd::List { status, json } => {
                    print_nodes(&a.nodes(status.map(Into::into)).await?, *json, false)
                }
                NodesCmd::Pending { json } => {
                    let pending = Some(keel_enroll::admission::NodeStatus::Pending);
                    print_nodes(&a.nodes(pending).await?, *json, true)
                }
                NodesCmd::Approve { node } => {
                    a.approve(node).await?;
                    println!("approved {node}");
                }
                NodesCmd::Revoke { node } => {
                    let w = with_issuers(&cli, a)?.revoke(node).await?;
                    println!("revoked {node}");
                    print_withdrawn(node, "revoke", &w)?;
                }
                NodesCmd::Delete { node } => {
                    a.delete(node).await?;
                    println!("deleted {node}");
                }
                NodesCmd::Reenroll { node, ek } => {
                    let w = with_issuers(&cli, a)?.reenroll(node, ek.as_deref()).await?;
                    println!("{node} may enroll again");
                    print_withdrawn(node, "reenroll", &w)?;
                }
            }
        }
        Command::Audit(AuditCmd::Verify { key }) => {
            let key = key.as_deref().map(AuditPub::load).transpose()?;
            let r = admin(&cli).await?.audit_verify_with(key.as_ref()).await?;
            println!(
                "audit log OK: {} rows, head {}; {} signed heads verified, last signed row {}",
                r.rows, r.head, r.heads.heads, r.heads.last_signed
            );
            if r.heads.unsigned_tail > 0 {
                println!(
                    "{} rows after row {} are not signed yet (the service signs every audit-sign-secs)",
                    r.heads.unsigned_tail, r.heads.last_signed
                );
            }
        }
        Command::Audit(AuditCmd::Adopt) => match admin(&cli).await?.audit_adopt().await? {
            Some(h) => println!("audit chain signed up to row {} ({})", h.seq, h.hash),
            None => println!("audit chain already signed; nothing to adopt"),
        },
        Command::Audit(AuditCmd::VerifyExport { file, key }) => {
            let key = audit_pub(&cli, key.as_deref())?;
            let r = keel_enroll::audit_heads::check_export(file, &key)?;
            println!(
                "export OK: {} ({} rows), signature by audit key {}, signed chain head row {}",
                r.day, r.rows, key.key_id, r.head.seq
            );
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

/// Prints what was taken back; fails (non-zero exit) when an issuer could
/// not withdraw its material, saying what to do.
fn print_withdrawn(node: &str, cmd: &str, w: &keel_enroll::admin::Withdrawn) -> anyhow::Result<()> {
    if !w.cert_serials.is_empty() {
        println!(
            "node certificates revoked (published in GET /v1/crl): {}",
            w.cert_serials.join(", ")
        );
    }
    for (kind, note) in &w.notes {
        println!("{kind}: {note}");
    }
    for (kind, err) in &w.failures {
        eprintln!("error: {kind}: could not take back {node}'s material: {err}");
    }
    anyhow::ensure!(
        w.failures.is_empty(),
        "{node}'s status changed, but {} issuer(s) failed to withdraw its material ({}), which may \
         still work: fix the cause shown above and run `keel-enroll nodes revoke {node}` again{}",
        w.failures.len(),
        w.failures
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        if cmd == "reenroll" {
            format!(", then `keel-enroll nodes reenroll {node}`")
        } else {
            String::new()
        }
    );
    Ok(())
}

fn print_nodes(nodes: &[keel_enroll::admission::NodeRow], json: bool, ek_cert: bool) {
    if json {
        println!("{}", keel_enroll::show::nodes_json(nodes));
    } else {
        print!("{}", keel_enroll::show::nodes_table(nodes, ek_cert));
    }
}
