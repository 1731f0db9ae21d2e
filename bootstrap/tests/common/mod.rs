//! What the agent's end-to-end tests (enroll.rs, full_run.rs) share: the
//! release and store the test node claims, the PCR policy a fresh swtpm
//! satisfies, and reading the agent's output and saved state.

use std::path::{Path, PathBuf};
use std::process::Output;

/// The store the test node belongs to.
pub const STORE: &str = "store-1";

/// PCR 0-7 of a fresh swtpm (startup-clear): all zero, for the release the
/// test node's os-release names (store-node 2026.11.1).
pub fn policy() -> String {
    let zero = "0".repeat(64);
    let mut s = String::from(
        "[[release]]\nname = \"store-node\"\nversion = \"2026.11.1\"\n[release.pcrs]\n",
    );
    for i in 0..8 {
        s += &format!("{i} = [\"{zero}\"]\n");
    }
    s
}

/// Writes the event log of a TPM that measured nothing (a fresh swtpm: no
/// firmware ran) beside `root` and returns its path: the service requires a
/// log, and this one replays to the swtpm's initial PCR values.
pub fn empty_event_log(root: &Path) -> PathBuf {
    let p = root.with_extension("event-log");
    std::fs::write(
        &p,
        keel_attest::verify::eventlog::EventLogBuilder::new().finish(),
    )
    .expect("writing the event log");
    p
}

/// The agent's stdout then stderr.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The stage saved in the agent's state file.
pub fn stage(state: &Path) -> String {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("state.json")).expect("state.json"))
            .expect("json");
    v["state"]["stage"].as_str().unwrap_or_default().to_string()
}
