//! `keel-enroll bench`: N simulated nodes enroll against a real `keel-enroll
//! serve` process on 127.0.0.1 over HTTPS. The nodes use keel-attest's
//! software TPM keys, which produce the exact TPM structures a real TPM does,
//! and send an EK certificate from a vendor CA the service trusts, so the
//! service runs the production path: all five checks, the admission
//! transaction, the audit row and the node certificate.
//!
//! The service runs in its own process so that its CPU time per enrollment is
//! measured apart from the load generator's; the capacity figure is the
//! machine's cores divided by that time. Wall-clock throughput is printed too
//! but it is a lower bound: the simulated nodes' TLS and TPM work runs on the
//! same cores.
//!
//! Two load shapes: closed loop (`--concurrency` nodes always in flight: the
//! most the service can do) and open loop (`--rate`: a node arrives every
//! 1/rate seconds, at most `--concurrency` in flight; latency counts from the
//! scheduled arrival, so a slow service cannot hide its queueing).

mod fleet;
mod report;
mod server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use keel_attest::client::EnrollClient;
use keel_attest::protocol::{Decision, NodeClaims, StartResponse, B64};

pub use fleet::{bench_policy, bench_release, ek_sha256, make_csr, EkCa, Fleet, SimNode};
pub use report::Report;
pub use server::cpu_seconds;

use crate::audit::Entry;
use crate::cli::{Backend, BenchArgs};
use crate::harness::{self, Options};

/// The simulated fleet comes from one address, where a real one comes from
/// as many as it has stores: the per-address limits are raised out of its
/// way. They are still checked on every request, so their cost is measured.
const FLEET_LIMITS: &str = "[limits]\nmax-connections-per-address = 1000000\n\
                            requests-per-second = 1000000.0\nburst = 1000000\n";

/// Runs the benchmark.
pub async fn run(args: BenchArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(
        args.nodes > 0 && args.concurrency > 0,
        "--nodes and --concurrency must be at least 1"
    );
    if let Some(r) = args.rate {
        anyhow::ensure!(
            r.is_finite() && r > 0.0,
            "--rate must be a positive number of nodes per second"
        );
    }
    let mut _pg = None;
    let database = match args.backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(match &args.database_url {
            Some(u) => u.clone(),
            None => {
                let pg = tokio::task::spawn_blocking(keel_testbed::Postgres::start)
                    .await?
                    .context("starting a throw-away PostgreSQL (or pass --database-url)")?;
                let url = pg.url();
                _pg = Some(pg);
                url
            }
        }),
    };

    eprintln!(
        "bench: generating {} simulated {:?} nodes",
        args.nodes, args.key
    );
    let (key, n) = (args.key, args.nodes);
    let fleet = tokio::task::spawn_blocking(move || Fleet::generate(key, n)).await??;

    let prepared = harness::prepare(&Options {
        database,
        policy: bench_policy(),
        ek_roots: vec![fleet.ek_root_pem.clone()],
        extra_config: FLEET_LIMITS.into(),
        ..Default::default()
    })?;
    {
        let store = crate::store::open(&prepared.loaded.config.database).await?;
        store
            .import_allow(
                fleet.allow.clone(),
                Entry {
                    actor: "admin:bench".into(),
                    action: "allowlist-import".into(),
                    decision: "ok".into(),
                    ..Default::default()
                },
            )
            .await?;
    }
    let program = match &args.server_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("locating the keel-enroll binary")?,
    };
    let listen = prepared.loaded.config.listen.clone();
    let log = prepared.dir.path().join("serve.log");
    let srv = {
        let (program, config, listen, log) = (
            program.clone(),
            prepared.config_path.clone(),
            listen.clone(),
            log.clone(),
        );
        tokio::task::spawn_blocking(move || {
            server::ServerProcess::start(&program, &config, &listen, &log)
        })
        .await??
    };
    let base_url = format!("https://{listen}");
    eprintln!(
        "bench: service {} at {base_url} ({:?})",
        program.display(),
        args.backend
    );

    let pooled = EnrollClient::new(&base_url, &prepared.ca_pem)?;
    let sem = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
    let (server_cpu0, client_cpu0) = (srv.cpu_seconds()?, cpu_seconds("self")?);
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, n) in fleet.nodes.into_iter().enumerate() {
        let scheduled = match args.rate {
            Some(r) => {
                let at = t0 + Duration::from_secs_f64(i as f64 / r);
                tokio::time::sleep_until(at.into()).await;
                at
            }
            None => Instant::now(),
        };
        let permit = sem.clone().acquire_owned().await?;
        let client = if args.reuse_connections {
            pooled.clone()
        } else {
            // A node of its own: a new connection and TLS handshake.
            EnrollClient::new(&base_url, &prepared.ca_pem)?
        };
        let started = if args.rate.is_some() {
            scheduled
        } else {
            Instant::now()
        };
        tasks.spawn(async move {
            let _permit = permit;
            let r = enroll_one(&client, &n).await;
            (r, started.elapsed())
        });
    }
    let mut report = Report {
        args: args.clone(),
        ok: 0,
        failed: 0,
        errors: Vec::new(),
        elapsed: Duration::ZERO,
        latencies: Vec::with_capacity(args.nodes),
        server_cpu: 0.0,
        client_cpu: 0.0,
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    };
    while let Some(res) = tasks.join_next().await {
        match res {
            Ok((Ok(()), lat)) => {
                report.ok += 1;
                report.latencies.push(lat);
            }
            Ok((Err(e), _)) => {
                report.failed += 1;
                if report.errors.len() < 5 {
                    report.errors.push(format!("{e:#}"));
                }
            }
            Err(e) => {
                report.failed += 1;
                report.errors.push(e.to_string());
            }
        }
    }
    report.elapsed = t0.elapsed();
    report.server_cpu = srv.cpu_seconds()? - server_cpu0;
    report.client_cpu = cpu_seconds("self")? - client_cpu0;
    report.latencies.sort();
    tokio::task::spawn_blocking(move || srv.stop()).await?;
    Ok(report)
}

async fn enroll_one(client: &EnrollClient, n: &SimNode) -> anyhow::Result<()> {
    let claims = NodeClaims {
        hostname: n.id.clone(),
        machine_id: "0".repeat(32),
        store_id: "bench".into(),
        release: bench_release(),
    };
    let mut start = n.tpm.start_request(&n.csr, None, claims);
    start.ek_cert = Some(B64(n.ek_cert.clone()));
    let ch = match client.start(&start).await? {
        StartResponse::Challenge(c) => c,
        StartResponse::Decision(d) => anyhow::bail!("start: {d:?}"),
    };
    let fin = n
        .tpm
        .answer(&ch, &n.csr, Some(n.tpm.event_log()), &mut rand::rngs::OsRng)?;
    match client.finish(&fin).await? {
        Decision::Admitted { .. } => Ok(()),
        d => anyhow::bail!("finish: {d:?}"),
    }
}
