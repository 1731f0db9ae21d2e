//! The load generator (keel-enroll-bench) against this crate's own binary:
//! a small run against a real `keel-enroll serve` process must admit every
//! simulated node (all five checks, with EK certificates) and report the
//! service's CPU time. No timing is asserted. The flags are parsed as the
//! `keel-enroll-bench` program parses them; its own tests check the program.
#![allow(clippy::unwrap_used)]

use clap::Parser;
use keel_enroll_bench::BenchArgs;

async fn bench(args: &[&str]) -> serde_json::Value {
    let mut args = BenchArgs::try_parse_from(
        [
            "keel-enroll-bench",
            "--nodes",
            "24",
            "--concurrency",
            "6",
            "--json",
        ]
        .iter()
        .chain(args),
    )
    .unwrap();
    args.server_bin = Some(env!("CARGO_BIN_EXE_keel-enroll").into());
    let report = keel_enroll_bench::run(args).await.expect("bench run");
    let r = report.to_json();
    assert_eq!(report.failed, 0, "{report}");
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn closed_loop_ecc_admits_every_node_and_measures_the_service() {
    let r = bench(&["--key", "ecc"]).await;
    assert_eq!(r["admitted"], 24, "{r}");
    assert_eq!(r["failed"], 0, "{r}");
    assert_eq!(r["fresh_connections"], true);
    assert!(
        r["server_cpu_ms_per_enrollment"].as_f64().unwrap() > 0.0,
        "{r}"
    );
    assert!(r["latency_ms"]["p99"].as_f64().unwrap() > 0.0, "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn open_loop_rsa_with_pooled_connections() {
    let r = bench(&["--key", "rsa", "--rate", "200", "--reuse-connections"]).await;
    assert_eq!(r["admitted"], 24, "{r}");
    assert_eq!(r["rate"], 200.0);
    assert_eq!(r["fresh_connections"], false);
}
