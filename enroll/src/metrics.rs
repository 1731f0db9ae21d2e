//! Prometheus metrics of the enrollment service, served at `GET /metrics` in
//! the text exposition format (0.0.4): enrollment outcomes by endpoint and
//! reject code, request latency histograms, and the fleet as the inventory
//! sees it (nodes by store, status and release; bundle revisions per store,
//! so drift shows; pending approvals).
//!
//! Counters are plain atomics in fixed slots (no lock on the request path);
//! the inventory figures are computed from the store at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use keel_attest::protocol::RejectCode;

use crate::admission::{NodeRow, NodeStatus};

/// The endpoints measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/enroll/start`.
    Start,
    /// `POST /v1/enroll/finish`.
    Finish,
    /// `POST /v1/nodes/report`.
    Report,
}

impl Endpoint {
    const ALL: [Endpoint; 3] = [Endpoint::Start, Endpoint::Finish, Endpoint::Report];

    fn name(self) -> &'static str {
        match self {
            Endpoint::Start => "start",
            Endpoint::Finish => "finish",
            Endpoint::Report => "report",
        }
    }

    /// The endpoint serving `path`, if it is measured.
    pub fn for_path(path: &str) -> Option<Endpoint> {
        match path {
            keel_attest::protocol::paths::START => Some(Endpoint::Start),
            keel_attest::protocol::paths::FINISH => Some(Endpoint::Finish),
            keel_attest::protocol::REPORT_PATH => Some(Endpoint::Report),
            _ => None,
        }
    }
}

/// What a request ended in; handlers attach it to their response as an
/// extension and the metrics layer counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// A challenge was issued (start).
    Challenge,
    /// The node was admitted (finish).
    Admitted,
    /// The node was queued for approval (finish).
    Pending,
    /// A report was accepted.
    Accepted,
    /// Refused with a code.
    Rejected(RejectCode),
}

const OUTCOMES: [&str; 4] = ["challenge", "admitted", "pending", "accepted"];
const SLOTS: usize = OUTCOMES.len() + RejectCode::ALL.len();

fn slot(c: Counted) -> usize {
    match c {
        Counted::Challenge => 0,
        Counted::Admitted => 1,
        Counted::Pending => 2,
        Counted::Accepted => 3,
        Counted::Rejected(code) => OUTCOMES.len() + code.index(),
    }
}

/// Histogram bucket upper bounds, seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (b, le) in self.buckets.iter().zip(BUCKETS) {
            if secs <= le {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

/// The service's counters and histograms.
#[derive(Debug)]
pub struct Metrics {
    outcomes: Vec<[AtomicU64; SLOTS]>,
    latency: [Histogram; 3],
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            outcomes: Endpoint::ALL
                .iter()
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
            latency: Default::default(),
        }
    }
}

fn idx(e: Endpoint) -> usize {
    e as usize
}

/// A label value with `\`, `"` and newlines escaped.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Counts one finished request and its latency.
    pub fn record(&self, e: Endpoint, outcome: Option<Counted>, took: Duration) {
        if let Some(o) = outcome {
            self.outcomes[idx(e)][slot(o)].fetch_add(1, Ordering::Relaxed);
        }
        self.latency[idx(e)].observe(took);
    }

    /// The exposition text; `nodes` is the inventory at scrape time.
    pub fn render(&self, nodes: &[NodeRow]) -> String {
        let mut out = String::new();
        self.render_outcomes(&mut out);
        self.render_latency(&mut out);
        render_inventory(&mut out, nodes);
        out
    }

    fn render_outcomes(&self, out: &mut String) {
        out.push_str(
            "# HELP keel_enroll_requests_total Enrollment protocol requests by endpoint and outcome; refusals by reject code.\n\
             # TYPE keel_enroll_requests_total counter\n",
        );
        for e in Endpoint::ALL {
            let slots = &self.outcomes[idx(e)];
            for (i, name) in OUTCOMES.iter().enumerate() {
                let n = slots[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "keel_enroll_requests_total{{endpoint=\"{}\",outcome=\"{name}\",code=\"\"}} {n}",
                    e.name()
                );
            }
            for (i, code) in RejectCode::ALL.iter().enumerate() {
                let n = slots[OUTCOMES.len() + i].load(Ordering::Relaxed);
                if n > 0 || e != Endpoint::Report {
                    let _ = writeln!(
                        out,
                        "keel_enroll_requests_total{{endpoint=\"{}\",outcome=\"rejected\",code=\"{}\"}} {n}",
                        e.name(),
                        code.as_str()
                    );
                }
            }
        }
    }

    fn render_latency(&self, out: &mut String) {
        out.push_str(
            "# HELP keel_enroll_request_duration_seconds Time to answer an enrollment protocol request.\n\
             # TYPE keel_enroll_request_duration_seconds histogram\n",
        );
        for e in Endpoint::ALL {
            let h = &self.latency[idx(e)];
            for (b, le) in h.buckets.iter().zip(BUCKETS) {
                let _ = writeln!(
                    out,
                    "keel_enroll_request_duration_seconds_bucket{{endpoint=\"{}\",le=\"{le}\"}} {}",
                    e.name(),
                    b.load(Ordering::Relaxed)
                );
            }
            let count = h.count.load(Ordering::Relaxed);
            let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let name = e.name();
            let _ = writeln!(
                out,
                "keel_enroll_request_duration_seconds_bucket{{endpoint=\"{name}\",le=\"+Inf\"}} {count}\n\
                 keel_enroll_request_duration_seconds_sum{{endpoint=\"{name}\"}} {sum}\n\
                 keel_enroll_request_duration_seconds_count{{endpoint=\"{name}\"}} {count}"
            );
        }
    }
}

fn render_inventory(out: &mut String, nodes: &[NodeRow]) {
    let mut by_release: BTreeMap<(&str, &str, &str), u64> = BTreeMap::new();
    let mut by_revision: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let mut pending = 0u64;
    for n in nodes {
        *by_release
            .entry((&n.store_id, n.status.as_str(), &n.release))
            .or_default() += 1;
        if n.status == NodeStatus::Admitted {
            let rev = n.revision.as_deref().unwrap_or("none");
            *by_revision.entry((&n.store_id, rev)).or_default() += 1;
        }
        if n.status == NodeStatus::Pending {
            pending += 1;
        }
    }
    out.push_str(
        "# HELP keel_enroll_nodes Nodes in the inventory by store, status and claimed release.\n\
         # TYPE keel_enroll_nodes gauge\n",
    );
    for ((store, status, release), n) in &by_release {
        let _ = writeln!(
            out,
            "keel_enroll_nodes{{store=\"{}\",status=\"{status}\",release=\"{}\"}} {n}",
            esc(store),
            esc(release)
        );
    }
    out.push_str(
        "# HELP keel_enroll_nodes_by_revision Enrolled nodes by the GitOps bundle revision they last reported (none: no report yet).\n\
         # TYPE keel_enroll_nodes_by_revision gauge\n",
    );
    let mut revisions: BTreeMap<&str, u64> = BTreeMap::new();
    for ((store, rev), n) in &by_revision {
        let _ = writeln!(
            out,
            "keel_enroll_nodes_by_revision{{store=\"{}\",revision=\"{}\"}} {n}",
            esc(store),
            esc(rev)
        );
        *revisions.entry(store).or_default() += 1;
    }
    out.push_str(
        "# HELP keel_enroll_store_revisions Distinct bundle revisions among a store's enrolled nodes (above 1: drift).\n\
         # TYPE keel_enroll_store_revisions gauge\n",
    );
    for (store, n) in &revisions {
        let _ = writeln!(
            out,
            "keel_enroll_store_revisions{{store=\"{}\"}} {n}",
            esc(store)
        );
    }
    let _ = writeln!(
        out,
        "# HELP keel_enroll_pending_approvals Nodes waiting for an admin's approval.\n\
         # TYPE keel_enroll_pending_approvals gauge\n\
         keel_enroll_pending_approvals {pending}"
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn node(store: &str, status: NodeStatus, rev: Option<&str>) -> NodeRow {
        NodeRow {
            node_id: "n".into(),
            store_id: store.into(),
            ek_sha256: "e".into(),
            status,
            release: "store-node 1.0".into(),
            updated_at: 0,
            revision: rev.map(Into::into),
            report: None,
            ek_cert: None,
        }
    }

    #[test]
    fn renders_counts_histograms_and_drift() {
        let m = Metrics::default();
        m.record(
            Endpoint::Start,
            Some(Counted::Challenge),
            Duration::from_millis(3),
        );
        m.record(
            Endpoint::Finish,
            Some(Counted::Rejected(RejectCode::PcrPolicy)),
            Duration::from_millis(30),
        );
        m.record(
            Endpoint::Finish,
            Some(Counted::Admitted),
            Duration::from_secs(9),
        );
        let nodes = [
            node("s1", NodeStatus::Admitted, Some("r1")),
            node("s1", NodeStatus::Admitted, Some("r2")),
            node("s2", NodeStatus::Pending, None),
        ];
        let t = m.render(&nodes);
        for want in [
            "keel_enroll_requests_total{endpoint=\"start\",outcome=\"challenge\",code=\"\"} 1",
            "keel_enroll_requests_total{endpoint=\"finish\",outcome=\"rejected\",code=\"pcr-policy\"} 1",
            "keel_enroll_request_duration_seconds_bucket{endpoint=\"start\",le=\"0.005\"} 1",
            "keel_enroll_request_duration_seconds_bucket{endpoint=\"start\",le=\"0.001\"} 0",
            "keel_enroll_request_duration_seconds_bucket{endpoint=\"finish\",le=\"5\"} 1",
            "keel_enroll_request_duration_seconds_count{endpoint=\"finish\"} 2",
            "keel_enroll_store_revisions{store=\"s1\"} 2",
            "keel_enroll_pending_approvals 1",
        ] {
            assert!(t.contains(want), "missing {want}\n{t}");
        }
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        // Every reject code has its own slot.
        for (i, c) in RejectCode::ALL.iter().enumerate() {
            assert_eq!(slot(Counted::Rejected(*c)), OUTCOMES.len() + i, "{c}");
        }
    }
}
