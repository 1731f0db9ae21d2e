//! The VM parts that run real programs, each skipped when its program is
//! missing: a fresh swtpm, the disk qemu-img prepares, the cidata seed ISO
//! cloud-localds writes, and the KVM probe's firmware under QEMU (TCG).

use std::path::Path;
use std::process::Command;

use keel_builder::vm::options::{ImageFormat, VmOptions};
use keel_builder::vm::qemu::QEMU;
use keel_builder::vm::swtpm::Swtpm;
use keel_builder::vm::{accel, disk, seed};
use keel_cmd::CommandRunExt as _;

const GIB: u64 = 1 << 30;

/// Prints a skip line for `test` and returns true when `program` is missing.
fn skip_without(test: &str, program: &str) -> bool {
    if keel_cmd::which(program).is_some() {
        return false;
    }
    keel_testbed::report_skip(format_args!("{test}: {program} not installed"));
    true
}

fn have_qemu_img() -> bool {
    Command::new("qemu-img").arg("--version").run().is_ok()
}

#[test]
fn fresh_tpm_has_an_ek_certificate_and_a_socket() {
    let test = "fresh_tpm_has_an_ek_certificate_and_a_socket";
    if skip_without(test, "swtpm") || skip_without(test, "swtpm_setup") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tpm = Swtpm::start(dir.path()).expect("swtpm starts");
    assert!(tpm.socket.exists());
    // swtpm_setup stores the EK certificate in NV; its state file holds it.
    let state = std::fs::read_dir(&tpm.state_dir)
        .expect("state dir")
        .count();
    assert!(state > 0, "TPM state directory is empty");
    let pid = tpm.pid();
    tpm.stop().expect("stop");
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn snapshot_gets_a_bigger_overlay_and_leaves_the_image_alone() {
    if !have_qemu_img() {
        keel_testbed::report_skip(format_args!(
            "snapshot_gets_a_bigger_overlay_and_leaves_the_image_alone: no qemu-img"
        ));
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let image = dir.path().join("img.raw");
    std::fs::write(&image, vec![7u8; 1 << 20]).expect("write");
    let mut opts = VmOptions::new(&image, dir.path().join("c.log"));
    opts.disk_gib = 2;
    let (disk, fmt, snap) =
        disk::prepare(&image, ImageFormat::Raw, &opts, dir.path()).expect("prepare");
    assert_eq!(fmt, ImageFormat::Qcow2);
    assert!(!snap);
    assert_eq!(
        disk::virtual_size(&disk, ImageFormat::Qcow2).expect("size"),
        2 * GIB
    );
    assert_eq!(std::fs::metadata(&image).expect("stat").len(), 1 << 20);
}

#[test]
fn no_snapshot_grows_the_image_itself() {
    if !have_qemu_img() {
        keel_testbed::report_skip(format_args!(
            "no_snapshot_grows_the_image_itself: no qemu-img"
        ));
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let image = dir.path().join("img.raw");
    std::fs::write(&image, vec![7u8; 1 << 20]).expect("write");
    let mut opts = VmOptions::new(&image, dir.path().join("c.log"));
    opts.snapshot = false;
    opts.disk_gib = 1;
    let (disk, fmt, snap) =
        disk::prepare(&image, ImageFormat::Raw, &opts, dir.path()).expect("prepare");
    assert_eq!(
        (disk.as_path(), fmt, snap),
        (image.as_path(), ImageFormat::Raw, false)
    );
    assert_eq!(std::fs::metadata(&image).expect("stat").len(), GIB);
}

#[test]
fn seed_dir_becomes_a_cidata_iso() {
    if skip_without("seed_dir_becomes_a_cidata_iso", "cloud-localds") {
        return;
    }
    let seed_dir = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    std::fs::write(seed_dir.path().join("user-data"), "#cloud-config\n{}\n").expect("write");
    std::fs::write(
        seed_dir.path().join("meta-data"),
        "instance-id: keel-test\n",
    )
    .expect("write");
    let iso = seed::prepare(seed_dir.path(), work.path()).expect("iso");
    let bytes = std::fs::read(&iso).expect("read iso");
    // ISO 9660 primary volume descriptor at 32 KiB: "CD001", volume id at +40.
    assert_eq!(&bytes[0x8001..0x8006], b"CD001");
    let label = String::from_utf8_lossy(&bytes[0x8028..0x8028 + 32]);
    assert_eq!(label.trim_end(), "cidata");
}

#[test]
fn probe_firmware_reaches_long_mode_under_tcg() {
    if skip_without("probe_firmware_reaches_long_mode_under_tcg", QEMU) {
        return;
    }
    assert!(
        accel::probe_tcg_selfcheck().expect("runs"),
        "the probe firmware must exit QEMU with status 99"
    );
}

#[test]
fn vm_run_stops_at_its_timeout_with_exit_code_124() {
    let missing = keel_builder::vm::missing_host_tools();
    if !missing.is_empty() {
        keel_testbed::report_skip(format_args!(
            "vm_run_stops_at_its_timeout_with_exit_code_124: missing {}",
            missing.join(", ")
        ));
        return;
    }
    // A disk nothing boots from: the firmware waits, the timeout ends it.
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("blank.raw");
    std::fs::write(&image, vec![0u8; 1 << 20]).expect("write");
    let o = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["vm", "run", "--json", "--accel", "tcg", "--timeout", "2"])
        .arg("--console-log")
        .arg(dir.path().join("console.log"))
        .arg(&image)
        .output()
        .expect("run keel vm run");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(i32::from(keel_builder::exit::Code::Timeout.value())),
        "{stdout}{stderr}"
    );
    assert!(stdout.contains(r#""reason":"timeout""#), "{stdout}{stderr}");
    assert!(
        stderr.contains("error: stopped the VM after the 2 s --timeout"),
        "{stderr}"
    );
}
