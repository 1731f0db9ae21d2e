//! One benchmark run: the fleet, the store and the service process set up
//! first (not timed), then the timed phase, closed or open loop.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use keel_attest::client::EnrollClient;
use keel_attest::protocol::{Decision, NodeClaims, StartResponse, B64};
use keel_enroll::audit::Entry;
use tokio::task::JoinSet;

use crate::cli::{Backend, BenchArgs};
use crate::fleet::{bench_policy, bench_release, Fleet, SimNode};
use crate::harness::{self, Options, Prepared};
use crate::report::Report;
use crate::server::{cpu_seconds, ServerProcess};

/// The simulated fleet comes from one address, where a real one comes from
/// as many as it has stores: the per-address limits are raised out of its
/// way. They are still checked on every request, so their cost is measured.
const FLEET_LIMITS: &str = "[limits]\nmax-connections-per-address = 1000000\n\
                            requests-per-second = 1000000.0\nburst = 1000000\n";

/// One node's outcome and its full-enrollment latency.
type Outcome = (anyhow::Result<()>, Duration);

/// Runs the benchmark.
pub async fn run(args: BenchArgs) -> anyhow::Result<Report> {
    check_args(&args)?;
    // Dropped last: the service's database outlives the service.
    let (database, _pg) = database(&args).await?;

    eprintln!(
        "bench: generating {} simulated {:?} nodes",
        args.nodes, args.key
    );
    let (key, n) = (args.key, args.nodes);
    let fleet = tokio::task::spawn_blocking(move || Fleet::generate(key, n)).await??;
    let prepared = prepare(&fleet, database).await?;
    let program = match &args.server_bin {
        Some(p) => p.clone(),
        None => default_server_bin()?,
    };
    let listen = prepared.loaded.config.listen.clone();
    let srv = {
        let log = prepared.dir.path().join("serve.log");
        let (program, config, listen) = (
            program.clone(),
            prepared.config_path.clone(),
            listen.clone(),
        );
        tokio::task::spawn_blocking(move || ServerProcess::start(&program, &config, &listen, &log))
            .await??
    };
    let base_url = format!("https://{listen}");
    eprintln!(
        "bench: service {} at {base_url} ({:?})",
        program.display(),
        args.backend
    );

    let (server_cpu0, client_cpu0) = (srv.cpu_seconds()?, cpu_seconds("self")?);
    let t0 = Instant::now();
    let tasks = spawn_nodes(&args, fleet.nodes, &base_url, &prepared.ca_pem, t0).await?;
    let mut report = collect(&args, tasks).await;
    report.elapsed = t0.elapsed();
    report.server_cpu = srv.cpu_seconds()? - server_cpu0;
    report.client_cpu = cpu_seconds("self")? - client_cpu0;
    report.latencies.sort();
    tokio::task::spawn_blocking(move || srv.stop()).await?;
    Ok(report)
}

fn check_args(args: &BenchArgs) -> anyhow::Result<()> {
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
    Ok(())
}

/// The service's database URL (`None`: SQLite in its temp dir), and the
/// throw-away PostgreSQL started for it, if any.
async fn database(
    args: &BenchArgs,
) -> anyhow::Result<(Option<String>, Option<keel_testbed::Postgres>)> {
    match (args.backend, &args.database_url) {
        (Backend::Sqlite, _) => Ok((None, None)),
        (Backend::Postgres, Some(u)) => Ok((Some(u.clone()), None)),
        (Backend::Postgres, None) => {
            let pg = tokio::task::spawn_blocking(keel_testbed::Postgres::start)
                .await?
                .context("starting a throw-away PostgreSQL (or pass --database-url)")?;
            Ok((Some(pg.url()), Some(pg)))
        }
    }
}

/// The service's files, with the fleet's EK CA trusted and its allow-list
/// imported.
async fn prepare(fleet: &Fleet, database: Option<String>) -> anyhow::Result<Prepared> {
    let prepared = harness::prepare(&Options {
        database,
        policy: bench_policy(),
        ek_roots: vec![fleet.ek_root_pem.clone()],
        extra_config: FLEET_LIMITS.into(),
        ..Default::default()
    })?;
    let store = keel_enroll::store::open(&prepared.loaded.config.database).await?;
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
    Ok(prepared)
}

/// `keel-enroll` beside this program (a cargo target directory, an install
/// prefix), else the one on PATH.
fn default_server_bin() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("locating this program")?;
    let beside = me.with_file_name("keel-enroll");
    if beside.is_file() {
        return Ok(beside);
    }
    keel_testbed::which("keel-enroll").with_context(|| {
        format!(
            "no keel-enroll beside {} or on PATH: build it (cargo build -p keel-enroll) or pass --server-bin",
            me.display()
        )
    })
}

/// Starts every node's enrollment as its turn comes (closed loop: a free
/// slot; open loop: its scheduled arrival and a free slot).
async fn spawn_nodes(
    args: &BenchArgs,
    nodes: Vec<SimNode>,
    base_url: &str,
    ca_pem: &str,
    t0: Instant,
) -> anyhow::Result<JoinSet<Outcome>> {
    let pooled = EnrollClient::new(base_url, ca_pem)?;
    let sem = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
    let mut tasks = JoinSet::new();
    for (i, n) in nodes.into_iter().enumerate() {
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
            EnrollClient::new(base_url, ca_pem)?
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
    Ok(tasks)
}

/// Waits for every node; counts, latencies and the first few errors.
async fn collect(args: &BenchArgs, mut tasks: JoinSet<Outcome>) -> Report {
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
    report
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
