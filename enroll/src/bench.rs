//! `keel-enroll bench`: N simulated nodes enroll against a real server on
//! 127.0.0.1 over HTTPS. The nodes use keel-attest's software TPM keys, which
//! produce the exact TPM structures a real TPM does, so the server runs the
//! production path (all five checks, admission transaction, audit row, node
//! certificate). Client and server share the machine's cores: the figures are
//! a lower bound for a dedicated server.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use keel_attest::client::EnrollClient;
use keel_attest::protocol::{Decision, NodeClaims, ReleaseRef, StartResponse};
use keel_attest::soft::SoftTpm;
use keel_attest::tpm2::public::TpmPublic;
use sha2::{Digest, Sha256};

use crate::admission::AllowEntry;
use crate::audit::Entry;
use crate::cli::{Backend, BenchArgs, KeyType};
use crate::harness::{Harness, Options};

/// The release the simulated nodes claim.
pub fn bench_release() -> ReleaseRef {
    ReleaseRef {
        name: "bench".into(),
        version: "1".into(),
    }
}

/// A policy accepting a fresh TPM's PCRs 0-7 for [`bench_release`].
pub fn bench_policy() -> String {
    let mut s = String::from("[[release]]\nname = \"bench\"\nversion = \"1\"\n[release.pcrs]\n");
    for i in 0u8..8 {
        let v = keel_attest::verify::eventlog::initial_value(i, 0);
        s.push_str(&format!("\"{i}\" = [\"{}\"]\n", hex::encode(v)));
    }
    s
}

/// Hex SHA-256 of an EK's SubjectPublicKeyInfo (the allow-list key).
pub fn ek_sha256(ek_tpm2b: &[u8]) -> anyhow::Result<String> {
    let ek = TpmPublic::from_tpm2b(ek_tpm2b).context("EK public")?;
    Ok(hex::encode(Sha256::digest(
        ek.spki_der().context("EK SPKI")?,
    )))
}

/// A DER CSR for a fresh P-256 node key.
pub fn make_csr(node_id: &str) -> anyhow::Result<Vec<u8>> {
    let key = rcgen::KeyPair::generate().context("node key")?;
    let params = rcgen::CertificateParams::new(vec![node_id.to_owned()]).context("CSR params")?;
    Ok(params
        .serialize_request(&key)
        .context("CSR")?
        .der()
        .to_vec())
}

/// Results.
#[derive(Debug, Clone)]
pub struct Report {
    /// Arguments.
    pub args: BenchArgs,
    /// Admitted enrollments.
    pub ok: usize,
    /// Failures (first few reasons in `errors`).
    pub failed: usize,
    /// Up to 5 error messages.
    pub errors: Vec<String>,
    /// Wall time of the timed phase.
    pub elapsed: Duration,
    /// Full-enrollment latencies, sorted.
    pub latencies: Vec<Duration>,
}

impl Report {
    fn pct(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i.min(self.latencies.len() - 1)]
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        writeln!(
            f,
            "backend={:?} key={:?} nodes={} concurrency={} cores={}",
            self.args.backend,
            self.args.key,
            self.args.nodes,
            self.args.concurrency,
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0)
        )?;
        writeln!(
            f,
            "admitted={} failed={} elapsed={:.2}s throughput={:.0} enrollments/s",
            self.ok,
            self.failed,
            self.elapsed.as_secs_f64(),
            self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
        )?;
        write!(
            f,
            "latency ms: p50={:.1} p90={:.1} p99={:.1} max={:.1}",
            ms(self.pct(0.50)),
            ms(self.pct(0.90)),
            ms(self.pct(0.99)),
            ms(self.latencies.last().copied().unwrap_or_default())
        )?;
        for e in &self.errors {
            write!(f, "\nerror: {e}")?;
        }
        Ok(())
    }
}

struct SimNode {
    tpm: Arc<SoftTpm>,
    csr: Vec<u8>,
    id: String,
}

/// Runs the benchmark.
pub async fn run(args: BenchArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(
        args.nodes > 0 && args.concurrency > 0,
        "nodes and concurrency must be > 0"
    );
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
    let mut h = Harness::start(Options {
        database,
        policy: bench_policy(),
        ..Default::default()
    })
    .await?;
    eprintln!("bench: service at {} ({:?})", h.base_url, args.backend);

    // Simulated TPMs: one per node for ECC; RSA key generation is slow, so RSA
    // nodes share a small pool of TPMs (each under its own node id).
    let pool: Vec<Arc<SoftTpm>> = match args.key {
        KeyType::Ecc => Vec::new(),
        KeyType::Rsa => {
            let n = args.nodes.min(8);
            tokio::task::spawn_blocking(move || {
                (0..n)
                    .map(|_| SoftTpm::new_rsa(&mut rand::rngs::OsRng).map(Arc::new))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await??
        }
    };
    let run_id = hex::encode(rand::random::<[u8; 3]>());
    let mut nodes = Vec::with_capacity(args.nodes);
    let mut allow = Vec::new();
    for i in 0..args.nodes {
        let tpm = match args.key {
            KeyType::Ecc => Arc::new(SoftTpm::new_ecc(&mut rand::rngs::OsRng)),
            KeyType::Rsa => pool[i % pool.len()].clone(),
        };
        let id = format!("bench-{run_id}-{i}");
        if args.key == KeyType::Ecc || i < pool.len() {
            allow.push(AllowEntry {
                ek_sha256: ek_sha256(&tpm.ek.public_tpm2b())?,
                serial: format!("SN-{i}"),
                store_id: "bench".into(),
            });
        }
        nodes.push(SimNode {
            csr: make_csr(&id)?,
            tpm,
            id,
        });
    }
    h.store()
        .import_allow(
            allow,
            Entry {
                actor: "admin:bench".into(),
                action: "allowlist-import".into(),
                decision: "ok".into(),
                ..Default::default()
            },
        )
        .await?;

    let client = EnrollClient::new(&h.base_url, &h.ca_pem)?;
    let sem = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in nodes {
        let permit = sem.clone().acquire_owned().await?;
        let client = client.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let t = Instant::now();
            let r = enroll_one(&client, &n).await;
            (r, t.elapsed())
        });
    }
    let mut report = Report {
        args: args.clone(),
        ok: 0,
        failed: 0,
        errors: Vec::new(),
        elapsed: Duration::ZERO,
        latencies: Vec::with_capacity(args.nodes),
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
    report.latencies.sort();
    h.stop().await;
    Ok(report)
}

async fn enroll_one(client: &EnrollClient, n: &SimNode) -> anyhow::Result<()> {
    let claims = NodeClaims {
        hostname: n.id.clone(),
        machine_id: "0".repeat(32),
        store_id: "bench".into(),
        release: bench_release(),
    };
    let ch = match client
        .start(&n.tpm.start_request(&n.csr, None, claims))
        .await?
    {
        StartResponse::Challenge(c) => c,
        StartResponse::Decision(d) => anyhow::bail!("start: {d:?}"),
    };
    let fin = n.tpm.answer(&ch, &n.csr, None, &mut rand::rngs::OsRng)?;
    match client.finish(&fin).await? {
        Decision::Admitted { .. } => Ok(()),
        d => anyhow::bail!("finish: {d:?}"),
    }
}
