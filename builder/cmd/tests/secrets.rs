//! Key passwords in the parent's environment never reach a child run through
//! keel-cmd, to completion or supervised (`env` prints what the child got); a
//! password set explicitly on one command reaches that one child only. Own
//! test binary: it sets the variables in its own process environment.

use std::process::Command;

use keel_cmd::child::{SpawnOptions, Supervised};
use keel_cmd::{CommandRunExt as _, Task, SECRET_ENV};

fn names(env_output: &str) -> Vec<&str> {
    env_output
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect()
}

#[test]
fn children_do_not_inherit_key_passwords() {
    std::env::set_var("KEEL_KEY_PASSWORD", "parent-secret-1");
    std::env::set_var("COSIGN_PASSWORD", "parent-secret-2");
    std::env::set_var("KEEL_NOT_A_SECRET", "visible");

    // The setup is real: a child spawned without keel-cmd inherits both.
    let plain = Command::new("env").output().expect("env");
    let plain = String::from_utf8(plain.stdout).expect("utf8");
    for name in SECRET_ENV {
        assert!(names(&plain).contains(name), "{name} set in the parent");
    }

    let outputs = [
        (
            "run_get_string",
            Command::new("env").run_get_string().expect("env"),
        ),
        (
            "task",
            Task::new("printing env", "env")
                .run_get_string()
                .expect("env"),
        ),
        ("run_streaming", {
            let mut lines = Vec::new();
            Command::new("env")
                .run_streaming(&mut |l| lines.push(l.to_string()))
                .expect("env");
            lines.join("\n")
        }),
        ("supervised", {
            let log = tempfile::NamedTempFile::new().expect("log");
            let opts = SpawnOptions::default().log_to(log.path());
            let mut child =
                Supervised::spawn_with("env", &mut Command::new("env"), &opts).expect("env");
            child
                .wait_timeout(std::time::Duration::from_secs(10))
                .expect("wait")
                .expect("env ends");
            std::fs::read_to_string(log.path()).expect("log")
        }),
    ];
    for (how, out) in &outputs {
        assert!(
            names(out).contains(&"KEEL_NOT_A_SECRET"),
            "{how}: other variables are inherited"
        );
        for name in SECRET_ENV {
            assert!(!names(out).contains(name), "{how}: {name} leaked");
        }
        assert!(!out.contains("parent-secret"), "{how}: {out}");
    }

    // Given explicitly to one child (cosign in a test), it is that child's.
    let out = Command::new("env")
        .env("COSIGN_PASSWORD", "for-this-child")
        .run_get_string()
        .expect("env");
    assert!(
        out.lines().any(|l| l == "COSIGN_PASSWORD=for-this-child"),
        "{out}"
    );
    assert!(!names(&out).contains(&"KEEL_KEY_PASSWORD"), "{out}");
    // ... and not to the next one.
    let out = Command::new("env").run_get_string().expect("env");
    assert!(!out.contains("COSIGN_PASSWORD"), "{out}");
}
