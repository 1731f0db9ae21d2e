//! The real keel-bootstrap binary against a real keel-enroll (in-process
//! harness, HTTPS on loopback) and a real software TPM (swtpm):
//! enroll service down then up, a rejection shows its reason, and with the
//! `failpoints` feature a kill around the enrollment transition converges
//! with exactly one enrollment.

mod common;
use common::{policy, stage, text, STORE};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use keel_enroll_bench::harness::{Harness, Options};
use keel_testbed::swtpm::Swtpm;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_keel-bootstrap")
}

struct Env {
    rt: tokio::runtime::Runtime,
    h: Harness,
}

fn start_service(tpm: &Swtpm) -> Option<Env> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let roots = vec![
        tpm.ca_root_pem().expect("root"),
        tpm.ca_issuer_pem().expect("issuer"),
    ];
    let h = rt
        .block_on(Harness::start(Options {
            ek_roots: roots,
            policy: policy(),
            ..Options::default()
        }))
        .expect("keel-enroll harness");
    Some(Env { rt, h })
}

fn swtpm(test: &str) -> Option<Swtpm> {
    match Swtpm::start() {
        Ok(t) => Some(t),
        Err(e) => {
            keel_testbed::report_skip(format_args!("{test}: swtpm: {e:#}"));
            None
        }
    }
}

/// A node root + seed dir + state dir.
fn node(url: &str, ca: &str, token: &str) -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let d = tempfile::tempdir().expect("tempdir");
    let root = d.path().join("root");
    std::fs::create_dir_all(root.join("etc")).expect("etc");
    std::fs::write(
        root.join("etc/os-release"),
        "ID=debian\nIMAGE_ID=store-node\nIMAGE_VERSION=2026.11.1\n",
    )
    .expect("os-release");
    std::fs::write(root.join("etc/machine-id"), format!("{:032x}\n", rand_id()))
        .expect("machine-id");
    let seed = d.path().join("seed");
    std::fs::create_dir_all(&seed).expect("seed");
    std::fs::write(
        seed.join("meta-data"),
        "instance-id: iid-test\nlocal-hostname: node1\n",
    )
    .expect("md");
    let ca_indented: String = ca.lines().map(|l| format!("    {l}\n")).collect();
    std::fs::write(
        seed.join("user-data"),
        format!("#cloud-config\nkeel:\n  enroll-url: {url}\n  store-id: {STORE}\n  token: {token}\n  enroll-ca: |\n{ca_indented}"),
    )
    .expect("ud");
    let state = d.path().join("state");
    (d, root, seed, state)
}

fn rand_id() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(7)
}

fn run(
    root: &Path,
    seed: &Path,
    state: &Path,
    tcti: &str,
    failpoints: Option<&str>,
) -> std::process::Child {
    let mut c = Command::new(bin());
    c.args([
        "run",
        "--backoff-initial-ms",
        "200",
        "--backoff-max-ms",
        "1000",
    ])
    .arg("--root")
    .arg(root)
    .arg("--seed")
    .arg(seed)
    .arg("--state-dir")
    .arg(state)
    .args(["--tcti", tcti])
    .arg("--event-log")
    .arg(common::empty_event_log(root))
    .env_remove("NOTIFY_SOCKET")
    .env_remove("JOURNAL_STREAM")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    match failpoints {
        Some(f) => c.env("FAILPOINTS", f),
        None => c.env_remove("FAILPOINTS"),
    };
    c.spawn().expect("spawn keel-bootstrap")
}

fn enrolled_nodes(env: &Env) -> usize {
    env.rt
        .block_on(env.h.admin().nodes(None))
        .expect("nodes")
        .len()
}

#[test]
fn service_down_then_up_enrolls_once() {
    let Some(tpm) = swtpm("service_down_then_up_enrolls_once") else {
        return;
    };
    let Some(mut env) = start_service(&tpm) else {
        return;
    };
    let token = env
        .rt
        .block_on(env.h.admin().create_token(STORE, 3600))
        .expect("token");
    let port = env.h.running.as_ref().map(|r| r.addr.port()).expect("port");
    env.rt.block_on(env.h.stop());
    let (_d, root, seed, state) = node(&env.h.base_url, &env.h.ca_pem, &token);
    let child = run(&root, &seed, &state, &tpm.tcti(), None);
    // Let it fail a few times against the closed port.
    let t0 = std::time::Instant::now();
    while t0.elapsed() < std::time::Duration::from_secs(60) {
        if std::fs::read_to_string(state.join("state.json"))
            .map(|s| s.contains("\"attempts\": 2"))
            .unwrap_or(false)
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(stage(&state), "start");
    let h = &mut env.h;
    let tls = keel_enroll::server::tls_config(&h.loaded.config.tls_cert, &h.loaded.config.tls_key)
        .expect("tls");
    let app = h.app.clone();
    h.running = Some(
        env.rt
            .block_on(keel_enroll::server::spawn(
                app,
                &format!("127.0.0.1:{port}"),
                tls,
                1 << 20,
                &h.loaded.config.limits,
            ))
            .expect("restart listener"),
    );
    let out = child.wait_with_output().expect("wait");
    let all = text(&out);
    assert!(all.contains("waiting: enrolling with"), "{all}");
    assert!(all.contains("enrolled as node"), "{all}");
    // No Ceph issuer is configured in this service: the run stops, for good, at Ceph.
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert!(all.contains("no Ceph section"), "{all}");
    assert_eq!(stage(&state), "enrolled");
    for f in ["join.json", "node-key.pem"] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(state.join(f)).expect(f).permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    assert_eq!(enrolled_nodes(&env), 1);
}

#[test]
fn rejection_shows_reason_and_stops() {
    let Some(tpm) = swtpm("rejection_shows_reason_and_stops") else {
        return;
    };
    let Some(env) = start_service(&tpm) else {
        return;
    };
    let (_d, root, seed, state) = node(&env.h.base_url, &env.h.ca_pem, "not-a-real-token");
    let out = run(&root, &seed, &state, &tpm.tcti(), None)
        .wait_with_output()
        .expect("wait");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert!(all.contains("enrollment rejected (token-invalid)"), "{all}");
    assert!(all.contains("what to do:"), "{all}");
    assert_eq!(stage(&state), "start");
    assert!(!state.join("join.json").exists());
    assert_eq!(enrolled_nodes(&env), 0);
    let st = Command::new(bin())
        .args(["status", "--state-dir"])
        .arg(&state)
        .output()
        .expect("status");
    assert!(String::from_utf8_lossy(&st.stdout).contains("token-invalid"));
}

#[test]
fn kill_around_enrollment_converges() {
    if !cfg!(feature = "failpoints") {
        keel_testbed::report_skip(format_args!(
            "kill_around_enrollment_converges: build with --features failpoints"
        ));
        return;
    }
    for point in ["step-enrolled", "transition-enrolled"] {
        // A fresh node (TPM, with its own swtpm CA) and service per kill point.
        let Some(tpm) = swtpm("kill_around_enrollment_converges") else {
            return;
        };
        let Some(env) = start_service(&tpm) else {
            return;
        };
        let token = env
            .rt
            .block_on(env.h.admin().create_token(STORE, 3600))
            .expect("token");
        let (_d, root, seed, state) = node(&env.h.base_url, &env.h.ca_pem, &token);
        let out = run(
            &root,
            &seed,
            &state,
            &tpm.tcti(),
            Some(&format!("{point}=return")),
        )
        .wait_with_output()
        .expect("wait");
        assert!(
            !out.status.success(),
            "{point}: the failpoint must kill it: {}",
            text(&out)
        );
        assert!(
            text(&out).contains(&format!("failpoint {point}")),
            "{}",
            text(&out)
        );
        let want = if point == "step-enrolled" {
            "start"
        } else {
            "enrolled"
        };
        assert_eq!(stage(&state), want, "{point}");
        let out = run(&root, &seed, &state, &tpm.tcti(), None)
            .wait_with_output()
            .expect("wait");
        assert!(
            text(&out).contains("no Ceph section"),
            "{point}: {}",
            text(&out)
        );
        assert_eq!(stage(&state), "enrolled", "{point}");
        assert_eq!(enrolled_nodes(&env), 1, "{point}: exactly one enrollment");
    }
}

/// Not a pass/fail test: prints the agent's own CPU time and peak RSS for a
/// run from a fresh state to Enrolled (the TPM work happens in swtpm and the
/// server in this process, so neither is counted). Uses /usr/bin/time.
#[test]
fn measure_agent_cpu_and_rss() {
    if !Path::new("/usr/bin/time").exists() {
        keel_testbed::report_skip(format_args!(
            "measure_agent_cpu_and_rss: /usr/bin/time missing (package `time`)"
        ));
        return;
    }
    let Some(tpm) = swtpm("measure_agent_cpu_and_rss") else {
        return;
    };
    let Some(env) = start_service(&tpm) else {
        return;
    };
    let token = env
        .rt
        .block_on(env.h.admin().create_token(STORE, 3600))
        .expect("token");
    let (_d, root, seed, state) = node(&env.h.base_url, &env.h.ca_pem, &token);
    let out = Command::new("/usr/bin/time")
        .args(["-f", "KEEL-RUSAGE user=%U sys=%S maxrss_kb=%M wall=%e"])
        .arg(bin())
        .args(["run", "--backoff-initial-ms", "200"])
        .arg("--root")
        .arg(&root)
        .arg("--seed")
        .arg(&seed)
        .arg("--state-dir")
        .arg(&state)
        .args(["--tcti", &tpm.tcti()])
        .arg("--event-log")
        .arg(common::empty_event_log(&root))
        .env_remove("FAILPOINTS")
        .output()
        .expect("time");
    let all = text(&out);
    let line = all
        .lines()
        .find(|l| l.starts_with("KEEL-RUSAGE"))
        .unwrap_or_else(|| panic!("{all}"));
    assert_eq!(stage(&state), "enrolled", "{all}");
    eprintln!("keel-bootstrap run (seed -> enrolled, then stops at Ceph): {line}");
}
