//! `keel seed` makes ISO and FAT seeds that the real `keel-bootstrap seed
//! check` (the binary built beside this test) reads back with every value:
//! host name, keys, time zone, network, the `keel:` section. The token never
//! shows on stdout, the seed is private (0600), bad input leaves no file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use keel_cmd::CommandRunExt as _;

/// keel-bootstrap from the same target directory, if built (a workspace
/// `cargo test` builds it; alone: `cargo build -p keel-bootstrap`).
fn bootstrap() -> Option<PathBuf> {
    let exe = std::env::current_exe().expect("test binary");
    let deps = exe.parent().expect("deps dir");
    let bin = deps.parent().unwrap_or(deps).join("keel-bootstrap");
    bin.is_file().then_some(bin)
}

fn have(tool: &str) -> bool {
    keel_cmd::which(tool).is_some()
}

/// Skips (with the reason) unless the tools and keel-bootstrap are there.
fn ready(test: &str) -> Option<PathBuf> {
    for tool in ["xorriso", "mkfs.vfat", "mcopy", "openssl", "ssh-keygen"] {
        if !have(tool) {
            keel_testbed::report_skip(format_args!(
                "{test}: {tool} is not installed (./setup.sh installs it)"
            ));
            return None;
        }
    }
    let b = bootstrap();
    if b.is_none() {
        keel_testbed::report_skip(format_args!(
            "{test}: keel-bootstrap is not built in this target directory (cargo build -p keel-bootstrap)"
        ));
    }
    b
}

/// A CA certificate (PEM), a token file and an SSH public key in `d`.
fn inputs(d: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca = d.join("ca.pem");
    Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-subj",
            "/CN=Keel test enrollment CA",
            "-days",
            "1",
        ])
        .arg("-keyout")
        .arg(d.join("ca.key"))
        .arg("-out")
        .arg(&ca)
        .run()
        .expect("openssl CA");
    let token = d.join("token");
    std::fs::write(&token, "tok-3f9a-secret\n").expect("token");
    Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "tech@example.com",
            "-f",
        ])
        .arg(d.join("id"))
        .run()
        .expect("ssh-keygen");
    (ca, token, d.join("id.pub"))
}

fn keel(args: &[&str], stdin: &str) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .env("CI", "true")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("keel seed");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("keel seed output")
}

fn check_json(bootstrap: &Path, seed: &Path) -> serde_json::Value {
    let o = Command::new(bootstrap)
        .args(["seed", "check", "--json"])
        .arg(seed)
        .output()
        .expect("keel-bootstrap seed check");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "seed check printed no JSON ({e}):\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    assert_eq!(o.status.code(), Some(0), "{v:#}");
    v
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn iso_seed_is_valid_for_keel_bootstrap() {
    let Some(bootstrap) = ready("iso_seed_is_valid_for_keel_bootstrap") else {
        return;
    };
    let d = tempfile::tempdir().expect("tempdir");
    let (ca, token, key) = inputs(d.path());
    let out = d.path().join("seed.iso");
    #[rustfmt::skip]
    let o = keel(&[
        "seed", "--out", s(&out), "--store-id", "store-7",
        "--enroll-url", "https://enroll.test:8443", "--enroll-ca", s(&ca),
        "--token-file", s(&token), "--hostname", "node7", "--fqdn", "node7.store-7.example",
        "--timezone", "Europe/Berlin", "--ssh-key", s(&key),
        "--disk", "/dev/disk/by-path/pci-0000:00:1f.2-ata-2", "--allow-wipe",
        "--instance-id", "iid-node7-1",
    ], "");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "wrote {} (ISO 9660, label cidata, mode 0600",
            out.display()
        )),
        "{stdout}"
    );
    assert!(
        !stdout.contains("tok-3f9a-secret"),
        "the token is never printed:\n{stdout}"
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&out).expect("seed").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let bytes = std::fs::read(&out).expect("seed");
    assert_eq!(&bytes[0x8001..0x8006], b"CD001");
    assert_eq!(
        String::from_utf8_lossy(&bytes[0x8028..0x8028 + 32]).trim_end(),
        "cidata"
    );

    let v = check_json(&bootstrap, &out);
    assert_eq!(v["valid"], true, "{v:#}");
    assert_eq!(v["warnings"], serde_json::json!([]), "{v:#}");
    let sm = &v["summary"];
    assert_eq!(sm["instance-id"], "iid-node7-1");
    assert_eq!(sm["hostname"], "node7");
    assert_eq!(sm["fqdn"], "node7.store-7.example");
    assert_eq!(sm["timezone"], "Europe/Berlin");
    assert_eq!(sm["root-ssh-keys"], 1);
    assert_eq!(sm["keel"]["enroll-url"], "https://enroll.test:8443");
    assert_eq!(sm["keel"]["store-id"], "store-7");
    assert_eq!(sm["keel"]["token"], true);
    assert_eq!(
        sm["keel"]["disks"],
        serde_json::json!(["/dev/disk/by-path/pci-0000:00:1f.2-ata-2"])
    );
    assert_eq!(sm["keel"]["allow-wipe"], true);
}

#[test]
fn vfat_seed_with_network_and_token_from_stdin() {
    let Some(bootstrap) = ready("vfat_seed_with_network_and_token_from_stdin") else {
        return;
    };
    let d = tempfile::tempdir().expect("tempdir");
    let (ca, _, _) = inputs(d.path());
    let net = d.path().join("network-config");
    std::fs::write(
        &net,
        "version: 2\nethernets:\n  lan:\n    match: {name: \"en*\"}\n    addresses: [192.0.2.10/24]\n    gateway4: 192.0.2.1\n",
    )
    .expect("network-config");
    let out = d.path().join("seed.img");
    #[rustfmt::skip]
    let o = keel(&[
        "seed", "--out", s(&out), "--store-id", "store: \"odd\" #name",
        "--enroll-url", "https://10.0.0.1:8443/", "--enroll-ca", s(&ca),
        "--token-file", "-", "--network-config", s(&net),
    ], "tok-from-stdin\n");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("(FAT, label cidata"), "{stdout}");
    let boot = std::fs::read(&out).expect("seed");
    assert_eq!(&boot[510..512], &[0x55, 0xAA]);
    assert!(String::from_utf8_lossy(&boot[43..54])
        .trim_end()
        .eq_ignore_ascii_case("cidata"));

    let v = check_json(&bootstrap, &out);
    assert_eq!(v["valid"], true, "{v:#}");
    let sm = &v["summary"];
    assert!(
        sm["instance-id"]
            .as_str()
            .is_some_and(|i| i.starts_with("iid-store: \"odd\" #name-node-")),
        "{v:#}"
    );
    assert_eq!(sm["keel"]["store-id"], "store: \"odd\" #name");
    assert_eq!(sm["keel"]["token"], true);
    assert_eq!(
        sm["network"],
        serde_json::json!(["10-keel-lan.network"]),
        "{v:#}"
    );
}

#[test]
fn bad_input_leaves_no_seed() {
    let d = tempfile::tempdir().expect("tempdir");
    let not_pem = d.path().join("ca.pem");
    std::fs::write(&not_pem, "hello\n").expect("ca");
    let out = d.path().join("seed.iso");
    for (args, want) in [
        (
            vec![
                "--enroll-url",
                "https://enroll.test",
                "--enroll-ca",
                s(&not_pem),
            ],
            "--enroll-ca holds \"hello\" outside a certificate",
        ),
        (
            vec![
                "--enroll-url",
                "http://enroll.test",
                "--enroll-ca",
                s(&not_pem),
            ],
            "--enroll-url \"http://enroll.test\" is not an https:// URL",
        ),
    ] {
        let mut all = vec!["seed", "--out", s(&out), "--store-id", "store-7"];
        all.extend(args);
        let o = keel(&all, "");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success());
        assert!(stderr.contains(want), "missing {want:?} in {stderr}");
        assert!(!out.exists());
    }
}
