//! What a benchmark run measured, as text for people and JSON for machines.

use std::fmt;
use std::time::Duration;

use crate::cli::BenchArgs;

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
    /// CPU seconds the service process used in the timed phase.
    pub server_cpu: f64,
    /// CPU seconds the load generator used in the timed phase.
    pub client_cpu: f64,
    /// Cores of this machine.
    pub cores: usize,
}

impl Report {
    /// The `p`-quantile latency (0..=1).
    pub fn pct(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i.min(self.latencies.len() - 1)]
    }

    /// Admitted enrollments per wall-clock second (client and server sharing the cores).
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Service CPU milliseconds per admitted enrollment.
    pub fn server_ms_per_enrollment(&self) -> f64 {
        self.server_cpu * 1000.0 / (self.ok.max(1) as f64)
    }

    /// Enrollments per second the service sustains with all of this machine's
    /// cores to itself: cores / service CPU per enrollment.
    pub fn server_capacity(&self) -> f64 {
        self.cores as f64 * 1000.0 / self.server_ms_per_enrollment().max(1e-9)
    }

    /// The figures as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        serde_json::json!({
            "backend": format!("{:?}", self.args.backend).to_lowercase(),
            "key": format!("{:?}", self.args.key).to_lowercase(),
            "nodes": self.args.nodes,
            "concurrency": self.args.concurrency,
            "rate": self.args.rate,
            "fresh_connections": !self.args.reuse_connections,
            "cores": self.cores,
            "admitted": self.ok,
            "failed": self.failed,
            "errors": self.errors,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "throughput_per_s": self.throughput(),
            "latency_ms": {
                "p50": ms(self.pct(0.50)),
                "p90": ms(self.pct(0.90)),
                "p99": ms(self.pct(0.99)),
                "max": ms(self.latencies.last().copied().unwrap_or_default()),
            },
            "server_cpu_ms_per_enrollment": self.server_ms_per_enrollment(),
            "client_cpu_ms_per_enrollment": self.client_cpu * 1000.0 / (self.ok.max(1) as f64),
            "server_capacity_per_s": self.server_capacity(),
        })
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let load = match self.args.rate {
            Some(r) => format!(
                "open loop at {r:.0} nodes/s, at most {} in flight",
                self.args.concurrency
            ),
            None => format!("closed loop, {} nodes in flight", self.args.concurrency),
        };
        writeln!(
            f,
            "backend={:?} key={:?} nodes={} {load}; {} connection per node; cores={}",
            self.args.backend,
            self.args.key,
            self.args.nodes,
            if self.args.reuse_connections {
                "pooled"
            } else {
                "fresh TLS"
            },
            self.cores
        )?;
        writeln!(
            f,
            "admitted={} failed={} elapsed={:.2}s throughput={:.0} enrollments/s (load generator on the same cores)",
            self.ok,
            self.failed,
            self.elapsed.as_secs_f64(),
            self.throughput()
        )?;
        writeln!(
            f,
            "latency ms: p50={:.1} p90={:.1} p99={:.1} max={:.1}",
            ms(self.pct(0.50)),
            ms(self.pct(0.90)),
            ms(self.pct(0.99)),
            ms(self.latencies.last().copied().unwrap_or_default())
        )?;
        write!(
            f,
            "service CPU {:.3} ms per enrollment -> {:.0} enrollments/s on {} dedicated cores; load generator CPU {:.3} ms per enrollment",
            self.server_ms_per_enrollment(),
            self.server_capacity(),
            self.cores,
            self.client_cpu * 1000.0 / (self.ok.max(1) as f64),
        )?;
        for e in &self.errors {
            write!(f, "\nerror: {e}")?;
        }
        Ok(())
    }
}
