//! The `keel-enroll-bench` program: arguments are checked before anything
//! starts, and a failure exits non-zero with the reason. Full runs against
//! the real service are in keel-enroll's tests/bench.rs (where cargo builds
//! the keel-enroll binary for the test).
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn refused(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_keel-enroll-bench"))
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?} was accepted");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_rate_is_refused() {
    let err = refused(&["--nodes", "2", "--rate", "0"]);
    assert!(err.contains("--rate must be a positive"), "{err}");
}

#[test]
fn zero_nodes_is_refused() {
    let err = refused(&["--nodes", "0"]);
    assert!(
        err.contains("--nodes and --concurrency must be at least 1"),
        "{err}"
    );
}

#[test]
fn a_missing_server_binary_is_named() {
    let err = refused(&["--nodes", "1", "--server-bin", "/nonexistent/keel-enroll"]);
    assert!(err.contains("/nonexistent/keel-enroll"), "{err}");
}
