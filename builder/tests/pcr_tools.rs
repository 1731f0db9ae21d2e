//! PCR prediction cross-checked with the real tools: PCR 11 against
//! `systemd-measure calculate` on a UKI assembled with objcopy from the real
//! systemd-stub; Authenticode against osslsigncode's computed digest.

mod support;

use std::path::Path;
use std::process::Command;

use keel_builder::release::pcr::*;
use keel_cmd::CommandRunExt as _;
use support::skip_without;

const STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
const MEASURE: &str = "/usr/lib/systemd/systemd-measure";

/// Builds a UKI from the real stub plus the given sections; returns its path.
fn make_uki(dir: &Path, sections: &[(&str, &[u8])]) -> std::path::PathBuf {
    let mut cmd = Command::new("objcopy");
    for (i, (name, data)) in sections.iter().enumerate() {
        let f = dir.join(name.trim_start_matches('.'));
        std::fs::write(&f, data).expect("write section");
        cmd.arg("--add-section")
            .arg(format!("{name}={}", f.display()))
            .arg("--change-section-vma")
            .arg(format!(
                "{name}={:#x}",
                0x1_5000_0000u64 + (i as u64) * 0x100_0000
            ));
    }
    let out = dir.join("uki.efi");
    cmd.arg(STUB).arg(&out).run().expect("objcopy");
    out
}

#[test]
fn pcr11_matches_systemd_measure() {
    if skip_without("pcr11_matches_systemd_measure", MEASURE)
        || skip_without("pcr11_matches_systemd_measure", STUB)
        || skip_without("pcr11_matches_systemd_measure", "objcopy")
    {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let linux: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let uki = make_uki(
        dir.path(),
        &[
            (".osrel", b"ID=debian\nVERSION_ID=12\n"),
            (".cmdline", b"console=ttyS0 rw"),
            (".uname", b"6.1.0-28-amd64\n"),
            (".splash", b"BM arbitrary splash bytes"),
            (".initrd", b"070701 not really a cpio"),
            (".linux", &linux),
        ],
    );
    let sections = pe_sections(&std::fs::read(&uki).expect("read uki")).expect("sections");
    let names: Vec<_> = sections.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&".sbat"), "the stub brings .sbat: {names:?}");
    // Hand systemd-measure exactly the measured sections of the UKI.
    let mut cmd = Command::new(MEASURE);
    cmd.args(["calculate", "--bank=sha256", "--json=short"]);
    for (name, data) in &sections {
        if UKI_SECTIONS.contains(&name.as_str()) {
            let f = dir.path().join(format!("m{name}"));
            std::fs::write(&f, data).expect("write");
            cmd.arg(format!(
                "--{}={}",
                name.trim_start_matches('.'),
                f.display()
            ));
        }
    }
    let out: serde_json::Value = cmd.run_get_json().expect("systemd-measure");
    let ours = pcr11(&sections);
    let theirs = out["sha256"].as_array().expect("sha256 list");
    assert_eq!(theirs.len(), 4);
    for t in theirs {
        let phase = t["phase"].as_str().expect("phase");
        assert_eq!(
            ours.phases.get(phase).map(String::as_str),
            t["hash"].as_str(),
            "phase {phase}"
        );
    }
    // One changed byte of the kernel command line changes every value.
    let mut tampered = sections.clone();
    let i = tampered
        .iter()
        .position(|(n, _)| n == ".cmdline")
        .expect("cmdline");
    tampered[i].1[0] ^= 1;
    let other = pcr11(&tampered);
    assert_ne!(other.value, ours.value);
    assert_ne!(other.phases, ours.phases);
}

#[test]
fn authenticode_matches_osslsigncode() {
    if skip_without("authenticode_matches_osslsigncode", "osslsigncode")
        || skip_without("authenticode_matches_osslsigncode", STUB)
    {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = |n: &str| dir.path().join(n).display().to_string();
    Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=keel test",
            "-days",
            "1",
        ])
        .args(["-keyout", &d("k.pem"), "-out", &d("c.pem")])
        .run()
        .expect("openssl");
    for input in ["/usr/lib/systemd/boot/efi/systemd-bootx64.efi", STUB] {
        if !Path::new(input).exists() {
            continue;
        }
        let ours =
            hex::encode(authenticode_sha256(&std::fs::read(input).expect("read")).expect("hash"));
        Command::new("osslsigncode")
            .args([
                "sign",
                "-h",
                "sha256",
                "-certs",
                &d("c.pem"),
                "-key",
                &d("k.pem"),
                "-in",
                input,
                "-out",
                &d("s.efi"),
            ])
            .run()
            .expect("osslsigncode sign");
        // Signing adds a certificate table: the Authenticode hash must not change.
        let signed = hex::encode(
            authenticode_sha256(&std::fs::read(d("s.efi")).expect("read")).expect("hash"),
        );
        assert_eq!(ours, signed, "{input}");
        let text = Command::new("osslsigncode")
            .args(["verify", "-CAfile", &d("c.pem"), "-in", &d("s.efi")])
            .run_get_string()
            .unwrap_or_else(|e| e.to_string());
        let calc = text
            .lines()
            .find(|l| l.contains("Calculated message digest"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_ascii_lowercase())
            .expect("osslsigncode prints the calculated digest");
        assert_eq!(ours, calc, "{input}");
        std::fs::remove_file(d("s.efi")).expect("rm");
    }
}
