//! `keel-bootstrap seed check` on seeds made by the real `cloud-localds`:
//! a valid seed exits 0 with a summary, broken seeds exit 4 with one line
//! that says what is wrong; `run` refuses a seed without `keel:` (exit 4)
//! before changing anything.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use keel_cmd::CommandRunExt;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_keel-bootstrap")
}

fn have(tool: &str) -> bool {
    keel_cmd::which(tool).is_some()
}

fn ca_pem() -> String {
    rcgen::generate_simple_self_signed(vec!["enroll.test".to_string()])
        .expect("test CA")
        .cert
        .pem()
}

/// A user-data exercising the cloud-init forms Keel accepts.
fn user_data(ca: &str) -> String {
    let ca = ca.trim_end().replace('\n', "\n    ");
    format!(
        "#cloud-config\n\
         hostname: node7\n\
         users: \"default, alice\"\n\
         packages: [vim]\n\
         write_files:\n\
         \x20 - path: /etc/keel/note\n\
         \x20   content: hello\n\
         \x20   permissions: 0640\n\
         \x20 - path: /etc/keel/blob\n\
         \x20   encoding: gzip\n\
         \x20   content: !!binary H4sIAAAAAAACA6vKLChITQEAV2jC4gYAAAA=\n\
         \x20   permissions: '0o600'\n\
         keel:\n\
         \x20 enroll-url: https://enroll.test:8443\n\
         \x20 store-id: store-7\n\
         \x20 token: tok-secret\n\
         \x20 enroll-ca: |\n    {ca}\n"
    )
}

/// Writes user-data and meta-data and packs them with cloud-localds.
fn image(dir: &Path, name: &str, user: &str) -> PathBuf {
    let ud = dir.join(format!("{name}.ud"));
    let md = dir.join(format!("{name}.md"));
    std::fs::write(&ud, user).expect("user-data");
    std::fs::write(&md, "instance-id: iid-7\n").expect("meta-data");
    let out = dir.join(format!("{name}.iso"));
    Command::new("cloud-localds")
        .arg(&out)
        .arg(&ud)
        .arg(&md)
        .run()
        .expect("cloud-localds");
    out
}

fn check(args: &[&str], seed: &Path) -> Output {
    Command::new(bin())
        .args(["seed", "check"])
        .args(args)
        .arg(seed)
        .output()
        .expect("keel-bootstrap seed check")
}

fn out(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn seed_check_on_cloud_localds_images() {
    for tool in ["cloud-localds", "xorriso", "genisoimage"] {
        if !have(tool) {
            keel_testbed::report_skip(format_args!(
                "seed_check_on_cloud_localds_images: {tool} not installed (setup.sh installs it)"
            ));
            return;
        }
    }
    let d = tempfile::tempdir().expect("tempdir");
    let good = image(d.path(), "good", &user_data(&ca_pem()));

    let o = check(&[], &good);
    let (stdout, stderr) = out(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}{stderr}");
    for want in [
        &format!("seed {}: valid\n", good.display()),
        "warning: user-data: unknown key `packages` ignored",
        "  hostname   node7\n",
        "  users      alice\n",
        "  files      /etc/keel/note 0640 root:root 5 bytes\n",
        "/etc/keel/blob 0600 root:root 6 bytes\n",
        "  enroll     https://enroll.test:8443 store store-7 token given\n",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in\n{stdout}");
    }
    assert!(!stdout.contains("tok-secret"), "{stdout}");

    let o = check(&["--json"], &good);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["valid"], true);
    assert_eq!(v["error"], serde_json::Value::Null);
    assert_eq!(v["summary"]["files"][1]["mode"], "0600");
    assert_eq!(v["summary"]["users"][0]["name"], "alice");

    // Broken seeds: exit 4 and the line that says why.
    let broken: &[(&str, String, &str)] = &[
        (
            "perm",
            user_data(&ca_pem()).replace("permissions: 0640", "permissions: '0999'"),
            "user-data:8:18: write_files[0].permissions: permissions \"0999\" is not an octal mode like '0644' (at most '7777')",
        ),
        (
            "enc",
            user_data(&ca_pem()).replace("encoding: gzip", "encoding: rot13"),
            "user-data: write_files[1]: encoding \"rot13\" is not one cloud-init knows",
        ),
        (
            "user",
            user_data(&ca_pem()).replace("default, alice", "default, -alice"),
            "user-data: users: \"-alice\" is not a valid user name",
        ),
        (
            "nokeel",
            "#cloud-config\nhostname: node7\n".to_string(),
            "user-data has no `keel:` section, so the node cannot enroll; add at least: keel: {enroll-url: https://enroll.example.com:8443, enroll-ca: <PEM CA certificate>, store-id: <store>, token: <one-time token>}",
        ),
    ];
    for (name, ud, want) in broken {
        let img = image(d.path(), name, ud);
        let o = check(&[], &img);
        let (stdout, stderr) = out(&o);
        assert_eq!(o.status.code(), Some(4), "{name}: {stdout}{stderr}");
        assert!(
            stderr.starts_with(&format!("keel-bootstrap: error: {want}")),
            "{name}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{name}: one line: {stderr}");
        assert!(stdout.contains(": INVALID\n"), "{name}: {stdout}");
        let o = check(&["--json"], &img);
        assert_eq!(o.status.code(), Some(4), "{name}");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        assert_eq!(v["valid"], false, "{name}");
        let e = v["error"].as_str().unwrap_or_default();
        assert!(e.starts_with(want), "{name}: {e}");
    }

    // A directory works too; a missing user-data is a seed error.
    let dir = d.path().join("dir");
    std::fs::create_dir(&dir).expect("dir");
    std::fs::write(dir.join("meta-data"), "instance-id: d\n").expect("md");
    let o = check(&[], &dir);
    assert_eq!(o.status.code(), Some(4));
    assert!(out(&o).1.contains("user-data: missing"), "{:?}", out(&o));
}

#[test]
fn run_refuses_a_seed_without_keel_before_applying() {
    let d = tempfile::tempdir().expect("tempdir");
    let seed = d.path().join("seed");
    let root = d.path().join("root");
    let state = d.path().join("state");
    for p in [&seed, &root, &state] {
        std::fs::create_dir(p).expect("dir");
    }
    std::fs::write(seed.join("meta-data"), "instance-id: i1\n").expect("md");
    std::fs::write(
        seed.join("user-data"),
        "#cloud-config\nhostname: node7\nwrite_files:\n  - {path: /etc/x, content: x}\n",
    )
    .expect("ud");
    let o = Command::new(bin())
        .arg("run")
        .arg("--seed")
        .arg(&seed)
        .arg("--root")
        .arg(&root)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .expect("keel-bootstrap run");
    let (stdout, stderr) = out(&o);
    assert_eq!(o.status.code(), Some(4), "{stdout}{stderr}");
    assert!(
        stderr.contains("keel-bootstrap: error: user-data has no `keel:` section"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(&root).expect("root").count(),
        0,
        "nothing applied"
    );
}
