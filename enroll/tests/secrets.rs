//! Secrets at rest and the admin actor, through the real `keel-enroll` binary:
//! keys, configuration and the SQLite database (with its -wal and -shm) are
//! created 0600 even under umask 000; the service refuses each of them when
//! group or others may read it, naming the file, its mode and `chmod 600`;
//! the audit actor is the OS user, whatever USER or SUDO_USER say.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use keel_enroll_bench::harness::{prepare, Options, Prepared};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn chmod(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

fn keel(p: &Prepared, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel-enroll"))
        .arg("--config")
        .arg(&p.config_path)
        .args(args)
        .env_remove("KEEL_ENROLL_CONFIG")
        .output()
        .unwrap()
}

fn prepared() -> Prepared {
    prepare(&Options {
        policy: keel_enroll_bench::bench_policy(),
        ..Default::default()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_created_0600_under_umask_000() {
    // The widest umask: whatever is private here was made so on purpose.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let p = prepared();
    let d = p.dir.path();
    for f in ["ca.key", "server.key", "node-ca.key", "audit.key"] {
        assert_eq!(mode(&d.join(f)), 0o600, "{f}");
    }
    assert_eq!(mode(&p.config_path), 0o600);
    let store = keel_enroll::store::open(&p.loaded.config.database)
        .await
        .unwrap();
    store
        .audit(keel_enroll::audit::Entry {
            actor: "service".into(),
            action: "mode-test".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    for f in ["enroll.db", "enroll.db-wal", "enroll.db-shm"] {
        assert_eq!(mode(&d.join(f)), 0o600, "{f}");
        keel_testbed::report!("{f}: mode {:04o}", mode(&d.join(f)));
    }
    nix::sys::stat::umask(old);
}

#[test]
fn service_refuses_group_or_world_readable_secrets() {
    let p = prepared();
    let d = p.dir.path().to_path_buf();
    // Good modes: an admin command runs (and creates the database 0600).
    let out = keel(&p, &["token", "create", "--store", "store-1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cases = [
        ("configuration", p.config_path.clone(), 0o644, "serve"),
        ("TLS key", d.join("server.key"), 0o640, "serve"),
        ("node CA key", d.join("node-ca.key"), 0o604, "serve"),
        ("audit key", d.join("audit.key"), 0o644, "serve"),
        ("SQLite database", d.join("enroll.db"), 0o644, "serve"),
        ("SQLite database", d.join("enroll.db"), 0o640, "nodes"),
    ];
    for (what, file, bad, cmd) in cases {
        chmod(&file, bad);
        let args: &[&str] = if cmd == "serve" {
            &["serve"]
        } else {
            &["nodes", "list"]
        };
        let out = keel(&p, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what} {bad:o}: not refused");
        let f = file.display().to_string();
        assert!(
            err.contains(&format!("{what} {f} has mode {bad:04o}")),
            "{err}"
        );
        assert!(err.contains(&format!("chmod 600 {f}")), "{err}");
        keel_testbed::report!("{cmd} refused: {}", err.trim());
        chmod(&file, 0o600);
    }
    let out = keel(&p, &["nodes", "list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_actor_is_the_os_user_not_the_environment() {
    let p = prepared();
    let out = Command::new(env!("CARGO_BIN_EXE_keel-enroll"))
        .arg("--config")
        .arg(&p.config_path)
        .args(["token", "create", "--store", "store-1"])
        .env("USER", "mallory")
        .env("SUDO_USER", "mallory")
        .env("LOGNAME", "mallory")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = keel_enroll::store::open(&p.loaded.config.database)
        .await
        .unwrap();
    let rows = store.audit_rows().await.unwrap();
    let row = rows
        .iter()
        .find(|r| r.entry.action == "token-create")
        .unwrap();
    let uid = nix::unistd::getuid();
    let name = nix::unistd::User::from_uid(uid).unwrap().unwrap().name;
    assert!(
        row.entry.actor.starts_with(&format!("admin:{name}")),
        "{}",
        row.entry.actor
    );
    assert!(!row.entry.actor.contains("mallory"), "{}", row.entry.actor);
    assert_eq!(row.entry.actor, keel_enroll::admin::os_actor());
    keel_testbed::report!(
        "USER=SUDO_USER=mallory, uid {uid}: recorded actor {:?}",
        row.entry.actor
    );
}
