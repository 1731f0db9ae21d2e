//! The nightly evidence export as the shipped systemd units run it
//! (enroll/systemd/keel-enroll-evidence.{service,timer}): the units pass
//! `systemd-analyze verify` without a warning, the timer's calendar is one
//! systemd accepts, and the service's own command line, run against a real
//! service's database with enrolled and revoked nodes, writes a signed export
//! that carries the inventory and the configuration's hashes. A changed node
//! state in the export breaks its signature; a trust input that cannot be
//! read stops the export before anything is written.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_keel-enroll");
const OUT_IN_UNIT: &str = "/var/lib/keel-enroll/evidence";

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd")
}

/// `KEY=value` of a unit file's `[section]`.
fn unit_value(unit: &Path, section: &str, key: &str) -> String {
    let text = std::fs::read_to_string(unit).unwrap();
    let mut current = "";
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            current = line;
        } else if current == section {
            if let Some(v) = line.strip_prefix(&format!("{key}=")) {
                return v.to_owned();
            }
        }
    }
    panic!("{}: no {key}= in {section}", unit.display());
}

fn show(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The units as shipped, with the binary path pointed at this build, pass
/// `systemd-analyze verify` with nothing to say (it exits 0 on directives it
/// ignores, so its output must be empty too).
fn verify_units(work: &Path) -> bool {
    if keel_testbed::which("systemd-analyze").is_none() {
        keel_testbed::report_skip(format_args!(
            "evidence units: systemd-analyze not installed (apt install systemd)"
        ));
        return false;
    }
    for name in ["keel-enroll-evidence.service", "keel-enroll-evidence.timer"] {
        let text = std::fs::read_to_string(units_dir().join(name)).unwrap();
        std::fs::write(work.join(name), text.replace("/usr/bin/keel-enroll", BIN)).unwrap();
    }
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(work.join("keel-enroll-evidence.service"))
        .arg(work.join("keel-enroll-evidence.timer"))
        .output()
        .unwrap();
    assert!(
        o.status.success() && show(&o).trim().is_empty(),
        "systemd-analyze verify: {}",
        show(&o)
    );
    let cal = unit_value(
        &units_dir().join("keel-enroll-evidence.timer"),
        "[Timer]",
        "OnCalendar",
    );
    let o = Command::new("systemd-analyze")
        .args(["calendar", &cal])
        .output()
        .unwrap();
    assert!(o.status.success(), "calendar {cal}: {}", show(&o));
    keel_testbed::report!(
        "timer: {}",
        show(&o).lines().take(2).collect::<Vec<_>>().join("; ")
    );
    true
}

/// The service's ExecStart, run as systemd would (config from
/// KEEL_ENROLL_CONFIG), with the binary of this build and `--out` in `out`.
fn run_exec_start(config: &Path, out: &Path) -> Output {
    let exec = unit_value(
        &units_dir().join("keel-enroll-evidence.service"),
        "[Service]",
        "ExecStart",
    );
    let mut words: Vec<String> = exec.split_whitespace().map(str::to_owned).collect();
    assert_eq!(words[0], "/usr/bin/keel-enroll", "{exec}");
    assert!(words.iter().any(|w| w == OUT_IN_UNIT), "{exec}");
    for w in &mut words {
        if w == OUT_IN_UNIT {
            *w = out.display().to_string();
        }
    }
    Command::new(BIN)
        .args(&words[1..])
        .env("KEEL_ENROLL_CONFIG", config)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nightly_timer_writes_signed_evidence_with_inventory_and_config() {
    let work = tempfile::tempdir().unwrap();
    if !verify_units(work.path()) {
        return;
    }
    let h = harness(None).await;
    let c = client(&h);
    for id in ["ev-a", "ev-b"] {
        let n = Node::new(id);
        allow(&h, &n).await;
        admitted(n.enroll(&c).await.unwrap());
    }
    h.admin().revoke("ev-b").await.unwrap();

    let out = work.path().join("evidence");
    let o = run_exec_start(&h.config_path, &out);
    assert!(o.status.success(), "export: {}", show(&o));
    let file = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
    assert!(file.starts_with(&out), "{}", file.display());
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let yesterday =
        keel_enroll::evidence::resolve_day("yesterday", time::OffsetDateTime::now_utc()).unwrap();
    assert_eq!(doc["day"], yesterday.as_str());
    let state = |id: &str| {
        doc["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node-id"] == id)
            .map(|n| n["status"].as_str().unwrap().to_owned())
    };
    assert_eq!(state("ev-a").as_deref(), Some("admitted"));
    assert_eq!(state("ev-b").as_deref(), Some("revoked"));
    assert_eq!(doc["config"]["config-sha256"], h.loaded.sha256.as_str());
    let inputs = doc["config"]["inputs"].as_object().unwrap();
    let ca = format!("node-ca-cert: {}", h.loaded.config.node_ca_cert.display());
    let want = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        std::fs::read(&h.loaded.config.node_ca_cert).unwrap(),
    ));
    assert_eq!(inputs[&ca], want.as_str(), "{inputs:?}");
    assert!(
        !inputs.keys().any(|k| k.contains(".key")),
        "a private key was hashed into evidence: {inputs:?}"
    );

    // Checked from the public audit key alone.
    let pubkey = h.dir.path().join("audit.pub");
    let check = |f: &Path| {
        Command::new(BIN)
            .args(["--config"])
            .arg(&h.config_path)
            .args(["audit", "verify-export"])
            .arg(f)
            .arg("--key")
            .arg(&pubkey)
            .output()
            .unwrap()
    };
    let o = check(&file);
    assert!(o.status.success(), "{}", show(&o));
    assert!(show(&o).contains("2 nodes"), "{}", show(&o));
    keel_testbed::report!("{}", show(&o).trim());

    // A revoked node shown as admitted: the signature no longer verifies.
    let text = std::fs::read_to_string(&file).unwrap();
    let forged = text.replacen("\"revoked\"", "\"admitted\"", 1);
    assert_ne!(forged, text);
    std::fs::write(&file, forged).unwrap();
    let o = check(&file);
    assert!(
        !o.status.success(),
        "forged inventory accepted: {}",
        show(&o)
    );

    // A trust input that cannot be read: the export stops, says which, and
    // writes nothing.
    let roots = &h.loaded.config.ek_roots;
    let moved = roots.with_extension("moved");
    std::fs::rename(roots, &moved).unwrap();
    let out2 = work.path().join("evidence2");
    let o = run_exec_start(&h.config_path, &out2);
    std::fs::rename(&moved, roots).unwrap();
    assert!(
        !o.status.success(),
        "export without its trust input: {}",
        show(&o)
    );
    assert!(show(&o).contains("ek-roots"), "{}", show(&o));
    assert!(!out2.exists(), "a failed export left files behind");
}
