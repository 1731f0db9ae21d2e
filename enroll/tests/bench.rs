//! The load generator itself: a small run against a real `keel-enroll serve`
//! process must admit every simulated node (all five checks, with EK
//! certificates) and report the service's CPU time. No timing is asserted.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn bench(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_keel-enroll"))
        .args(["bench", "--nodes", "24", "--concurrency", "6", "--json"])
        .args(args)
        .output()
        .expect("running keel-enroll bench");
    assert!(
        out.status.success(),
        "bench failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("bench --json prints JSON")
}

#[test]
fn closed_loop_ecc_admits_every_node_and_measures_the_service() {
    let r = bench(&["--key", "ecc"]);
    assert_eq!(r["admitted"], 24, "{r}");
    assert_eq!(r["failed"], 0, "{r}");
    assert_eq!(r["fresh_connections"], true);
    assert!(
        r["server_cpu_ms_per_enrollment"].as_f64().unwrap() > 0.0,
        "{r}"
    );
    assert!(r["latency_ms"]["p99"].as_f64().unwrap() > 0.0, "{r}");
}

#[test]
fn open_loop_rsa_with_pooled_connections() {
    let r = bench(&["--key", "rsa", "--rate", "200", "--reuse-connections"]);
    assert_eq!(r["admitted"], 24, "{r}");
    assert_eq!(r["rate"], 200.0);
    assert_eq!(r["fresh_connections"], false);
}

#[test]
fn bad_rate_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_keel-enroll"))
        .args(["bench", "--nodes", "2", "--rate", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--rate must be a positive"), "{err}");
}
