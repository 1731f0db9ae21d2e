//! Boot tests: build images/test-tiny with the real `keel build`, boot it
//! under QEMU (OVMF + swtpm, KVM if the probe allows, else TCG) with the
//! `keel vm` library, and judge the running system only from its serial
//! console: systemd reached multi-user.target, /usr is read-only and
//! dm-verity protected, and the TPM is there as /dev/tpmrm0.
//!
//! The image's `keel-check` unit prints one `KEEL-CHECK key=value ... end=1`
//! line at multi-user (see images/test-tiny). store-node is slower to build
//! and boot: it runs only with KEEL_TEST_STORE_NODE=1, and is checked for
//! multi-user and a serial login prompt (it has no test unit).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use keel_builder::vm::{Vm, VmOptions, BOOT_FAILURES};
use keel_cmd::CommandRunExt;
use keel_qemu_tests::{check, images, prereq};

const MULTI_USER: &str = r"Reached target .*Multi-User System";

/// Boots `image`, waits for multi-user and then for the check line (images
/// with the keel-check unit) or the serial login prompt, and asserts on it.
fn boot_and_check(test: &str, image: &images::BuiltImage, memory_mib: u32, has_check_unit: bool) {
    let work = tempfile::tempdir().expect("tempdir");
    let log = work.path().join("console.log");
    let before = std::fs::metadata(image.bootable())
        .expect("image")
        .modified()
        .expect("mtime");

    let mut opts = VmOptions::new(image.bootable(), &log);
    opts.memory_mib = memory_mib;
    let started = Instant::now();
    let mut vm = Vm::start(opts).expect("VM starts");
    let accel = vm.accel().name();
    let (qemu_pid, swtpm_pid) = (vm.qemu_pid(), vm.swtpm_pid());

    let reached = vm.wait_for_console_unless(MULTI_USER, BOOT_FAILURES, prereq::boot_timeout(1200));
    let to_multi_user = started.elapsed();
    let line = reached.unwrap_or_else(|e| panic!("{test}: {e:#}"));
    keel_testbed::report!(
        "{test}: {} reached multi-user in {:.1} s ({accel}, {memory_mib} MiB): {}",
        image.name,
        to_multi_user.as_secs_f64(),
        line.line
    );
    if !has_check_unit {
        let prompt = vm
            .wait_for_console(r"login: ?$", Duration::from_secs(300))
            .unwrap_or_else(|e| panic!("{test}: no login prompt on the serial console: {e:#}"));
        keel_testbed::report!("{test}: {}", prompt.line);
        vm.stop().expect("VM stops");
        return;
    }
    let found = vm
        .wait_for_console(check::LINE_REGEX, Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("{test}: no KEEL-CHECK line: {e:#}"));
    keel_testbed::report!("{test}: {}", found.line);
    let kv = check::parse(&found.line).expect("check line parses");
    let get = |k: &str| kv.get(k).map(String::as_str).unwrap_or("(missing)");

    assert_eq!(
        get("multi-user"),
        "active",
        "multi-user.target not active: {}",
        found.line
    );
    assert_eq!(
        get("usr-writable"),
        "no",
        "writing below /usr succeeded: {}",
        found.line
    );
    assert_eq!(
        get("usr-ro-mount"),
        "yes",
        "/usr is not mounted read-only: {}",
        found.line
    );
    assert_eq!(
        get("verity"),
        "yes",
        "no dm-verity device backs the OS: {}",
        found.line
    );
    assert_eq!(
        get("var-writable"),
        "yes",
        "/var is not writable: {}",
        found.line
    );
    assert_eq!(get("tpmrm0"), "yes", "/dev/tpmrm0 missing: {}", found.line);
    check_measured_boot(&image.dir, get("pcr4"), get("pcr11"));

    let status = vm.stop().expect("VM stops");
    keel_testbed::report!(
        "{test}: QEMU stopped ({status}) after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for (name, pid) in [("qemu", qemu_pid), ("swtpm", swtpm_pid)] {
        assert!(!alive(pid), "{name} (pid {pid}) still running");
    }
    let after = std::fs::metadata(image.bootable())
        .expect("image")
        .modified()
        .expect("mtime");
    assert_eq!(
        before, after,
        "snapshot mode must leave the image file untouched"
    );
}

/// The PCRs the booted node measured (OVMF + systemd-boot + systemd-stub +
/// systemd-pcrphase, quoted by `tpm2_pcrread` in the guest) are the ones the
/// release manifest predicted at build time: PCR 4 exactly, PCR 11 at one of
/// its boot phases.
fn check_measured_boot(release: &std::path::Path, pcr4: &str, pcr11: &str) {
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(release.join("manifest.json")).expect("release manifest"),
    )
    .expect("manifest json");
    assert_eq!(
        m["pcrs"]["4"]["value"].as_str(),
        Some(pcr4),
        "measured PCR 4 differs from the manifest's prediction"
    );
    let p11 = &m["pcrs"]["11"];
    let mut allowed: Vec<&str> = p11["value"].as_str().into_iter().collect();
    if let Some(ph) = p11["phases"].as_object() {
        allowed.extend(ph.values().filter_map(|v| v.as_str()));
    }
    assert!(
        allowed.contains(&pcr11),
        "measured PCR 11 {pcr11} is none of the manifest's {allowed:?}"
    );
}

#[test]
fn test_tiny_boots_to_multi_user_read_only_with_tpm() {
    let test = "test_tiny_boots_to_multi_user_read_only_with_tpm";
    if prereq::skip_vm_test(test) {
        return;
    }
    let image = images::build("test-tiny").expect("keel build images/test-tiny");
    boot_and_check(test, &image, 1024, true);
}

/// The node's own state survives a reboot on the immutable OS: the first
/// boot creates /var, /etc is an overlay kept there and writable, /root is
/// writable; the second boot sees what the first wrote in /etc and the same
/// machine-id. Both boots use one qcow2 overlay on the built image (kept
/// between them, so the image file stays untouched).
#[test]
fn test_tiny_keeps_etc_and_root_across_a_reboot() {
    let test = "test_tiny_keeps_etc_and_root_across_a_reboot";
    if prereq::skip_vm_test(test) {
        return;
    }
    let image = images::build("test-tiny").expect("keel build images/test-tiny");
    let work = tempfile::tempdir().expect("tempdir");
    let disk = work.path().join("node.qcow2");
    Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(image.bootable())
        .arg(&disk)
        .run()
        .expect("qemu-img create");
    let mut seen = Vec::new();
    for boot in 1..=2 {
        let log = work.path().join(format!("console-{boot}.log"));
        let mut opts = VmOptions::new(&disk, &log);
        opts.memory_mib = 1024;
        opts.snapshot = false;
        let started = Instant::now();
        let mut vm = Vm::start(opts).expect("VM starts");
        let found = vm
            .wait_for_console_unless(check::LINE_REGEX, BOOT_FAILURES, prereq::boot_timeout(1200))
            .unwrap_or_else(|e| panic!("{test}: boot {boot}: no KEEL-CHECK line: {e:#}"));
        keel_testbed::report!(
            "{test}: boot {boot} after {:.1} s: {}",
            started.elapsed().as_secs_f64(),
            found.line
        );
        vm.stop().expect("VM stops");
        let kv = check::parse(&found.line).expect("check line parses");
        let get = |k: &str| kv.get(k).cloned().unwrap_or_else(|| "(missing)".into());
        assert_eq!(get("etc-overlay"), "yes", "boot {boot}: {}", found.line);
        assert_eq!(get("etc-writable"), "yes", "boot {boot}: {}", found.line);
        assert_eq!(get("root-writable"), "yes", "boot {boot}: {}", found.line);
        assert_eq!(get("tmp-writable"), "yes", "boot {boot}: {}", found.line);
        assert_eq!(get("usr-writable"), "no", "boot {boot}: {}", found.line);
        assert_eq!(
            get("etc-boots"),
            boot.to_string(),
            "boot {boot}: /etc must keep what the earlier boot wrote: {}",
            found.line
        );
        seen.push(get("machine-id"));
    }
    assert!(seen[0].len() == 32, "a machine-id: {seen:?}");
    assert_eq!(seen[0], seen[1], "the machine-id survives the reboot");
}

#[test]
fn store_node_boots_to_multi_user_read_only_with_tpm() {
    let test = "store_node_boots_to_multi_user_read_only_with_tpm";
    if prereq::skip_unless_env(test, "KEEL_TEST_STORE_NODE") || prereq::skip_vm_test(test) {
        return;
    }
    let image = images::build("store-node").expect("keel build images/store-node");
    boot_and_check(test, &image, 2048, false);
}

/// `keel vm run` as a program: Ctrl-C (SIGINT) mid-boot stops QEMU and
/// swtpm, and `--json` reports both events.
#[test]
fn keel_vm_run_stops_qemu_and_swtpm_on_ctrl_c() {
    let test = "keel_vm_run_stops_qemu_and_swtpm_on_ctrl_c";
    if prereq::skip_vm_test(test) {
        return;
    }
    let image = images::build("test-tiny").expect("keel build images/test-tiny");
    let work = tempfile::tempdir().expect("tempdir");
    let log = work.path().join("console.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_keel-test-cli"))
        .args(["vm", "run", "--json", "--memory", "1024", "--console-log"])
        .arg(&log)
        .arg(image.bootable())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("keel runs");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    out.read_line(&mut first).expect("started event");
    let started: serde_json::Value = serde_json::from_str(&first).expect("JSON event");
    assert_eq!(started["event"], "started", "{first}");
    let pid = |k: &str| {
        started[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {first}")) as u32
    };
    let (qemu, swtpm) = (pid("qemu-pid"), pid("swtpm-pid"));
    assert!(alive(qemu) && alive(swtpm));

    // Wait until the guest's kernel runs (firmware + EFI stub printed), then Ctrl-C.
    let end = Instant::now() + prereq::boot_timeout(1200);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("EFI stub")
    {
        assert!(
            Instant::now() < end,
            "no EFI stub line on the console:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(
            child.try_wait().expect("wait").is_none(),
            "keel exited early"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).expect("SIGINT");
    let mut second = String::new();
    out.read_line(&mut second).expect("stopped event");
    let status = child.wait().expect("keel exits");
    let stopped: serde_json::Value = serde_json::from_str(&second).expect("JSON event");
    assert_eq!(stopped["event"], "stopped", "{second}");
    assert_eq!(stopped["reason"], "signal", "{second}");
    assert!(status.success(), "keel vm run after Ctrl-C: {status}");
    assert!(!alive(qemu), "QEMU (pid {qemu}) survived Ctrl-C");
    assert!(!alive(swtpm), "swtpm (pid {swtpm}) survived Ctrl-C");
}

/// True while `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Field 3, after the parenthesised command name, is the state.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}
