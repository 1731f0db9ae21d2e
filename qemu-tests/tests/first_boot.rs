//! A store node's first boot, end to end, on real components only:
//!
//! 1. `keel build images/store-node --sign-key` (release A, signed), and a
//!    second build of the same release whose kernel command line differs
//!    (release B: same name and version, another UKI);
//! 2. a store LAN in a network namespace with DHCP, a Ceph cluster, pebble,
//!    a Git server with a bundle signed by `keel bundle sign`, and
//!    keel-enroll trusting only release A's cosign-signed manifest and
//!    requiring an event log;
//! 3. release A boots under QEMU (OVMF + swtpm, tap NIC on the LAN) with a
//!    seed made by `keel seed` (and checked by `keel-bootstrap seed check`); keel-bootstrap runs as its unit through
//!    enroll (TPM quote over PCR 4 and 11, real OVMF event log), Ceph (an
//!    OSD up and in), ACME, GitOps (bundle applied, revision reported), and
//!    the node is checked from inside over SSH (timers, /etc persistence,
//!    the agent's CPU and memory);
//! 4. release B boots against the same service and is refused with
//!    `pcr-policy`: its measured UKI is not the one the signed manifest names.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use keel_builder::vm::{MacAddr, Network, Vm, VmOptions, BOOT_FAILURES};
use keel_cmd::CommandRunExt as _;
use keel_qemu_tests::store::{self, Store};
use keel_qemu_tests::{images, prereq};
use keel_testbed::TestNet;

const TEST: &str = "store_node_first_boot_end_to_end";

const MEMORY_MIB: u32 = 3072;
const DONE: &str = r"keel-bootstrap: first boot complete";
const REJECTED: &str = r"keel-bootstrap: .*enrollment rejected \(([a-z-]+)\)";

/// The store-node definition with one more kernel argument: another UKI for
/// the same release name and version.
fn other_build_definition(dir: &Path) -> PathBuf {
    let src = images::workspace_root().join("images/store-node");
    let dst = dir.join("store-node-other");
    Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(&dst)
        .run()
        .expect("copy definition");
    let toml = dst.join("image.toml");
    let text = std::fs::read_to_string(&toml).expect("image.toml");
    let changed = text.replacen(
        "command-line = [",
        "command-line = [\"keel.e2e=other-build\", ",
        1,
    );
    assert_ne!(text, changed, "store-node has a kernel command-line key");
    std::fs::write(&toml, changed).expect("write image.toml");
    dst
}

/// The agent binary the images carry (built beside this test's binaries).
fn bootstrap_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let deps = exe.parent().expect("deps dir");
    deps.parent().unwrap_or(deps).join("keel-bootstrap")
}

fn ssh(key: &Path, host: &str, cmd: &str) -> String {
    Command::new("ssh")
        .arg("-i")
        .arg(key)
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=20",
            "-o",
            "LogLevel=ERROR",
        ])
        .arg(format!("root@{host}"))
        .arg(cmd)
        .run_get_string()
        .unwrap_or_else(|e| panic!("{TEST}: ssh {host} {cmd}: {e}"))
}

fn is_done_line(line: &str) -> bool {
    line.contains("keel-bootstrap: first boot complete")
}

fn agent_lines(console: &str) -> Vec<String> {
    console
        .lines()
        .filter_map(|l| {
            l.find("keel-bootstrap: ")
                .map(|i| l[i..].trim_end().to_string())
        })
        .collect()
}

fn vm_options(
    image: &images::BuiltImage,
    dir: &Path,
    n: u8,
    net: &TestNet,
    seed: PathBuf,
) -> VmOptions {
    let mut o = VmOptions::new(image.bootable(), dir.join(format!("console-{n}.log")));
    o.memory_mib = MEMORY_MIB;
    o.network = Network::Tap {
        ifname: format!("keel-e2e{n}"),
        bridge: Some(net.bridge().to_string()),
    };
    o.mac = Some(MacAddr::parse(&net.guest_mac(n)).expect("mac"));
    o.seed = Some(seed);
    o
}

#[test]
fn store_node_first_boot_end_to_end() {
    if prereq::skip_vm_test(TEST)
        || keel_testbed::skip_unless_root_and(&[
            "xorriso",
            "dnsmasq",
            "ceph",
            "ceph-mon",
            "pebble",
            "git",
            "ssh",
            "ssh-keygen",
            "openssl",
            "ip",
        ])
    {
        return;
    }
    let keel_bin = Path::new(env!("CARGO_BIN_EXE_keel-test-cli"));
    let dir = store::keys(keel_bin).expect("release and bundle keys");
    let work = dir.path().to_path_buf();

    // Release A (signed) and release B (same release, another UKI), built
    // before entering the store network (the builds need the archive).
    let a = images::build_from(
        &images::workspace_root().join("images/store-node"),
        "store-node-e2e",
        &[
            "--sign-key",
            work.join("release.key").to_str().expect("utf8"),
            "--sign-key-password-file",
            work.join("password").to_str().expect("utf8"),
        ],
    )
    .expect("keel build images/store-node --sign-key");
    store::keel(keel_bin)
        .args(["verify", "--key"])
        .arg(work.join("release.pub"))
        .arg(&a.dir)
        .run()
        .expect("keel verify of release A");
    let b = images::build_from(&other_build_definition(&work), "store-node-e2e-other", &[])
        .expect("keel build of the other store-node");

    let Some(net) = keel_testbed::or_skip(TestNet::create()) else {
        return;
    };
    let _inside = net.enter().expect("entering the store network");
    let mut store = Store::start(&net, &[0, 1], keel_bin, dir).expect("store services");
    store
        .trust_release(&a.dir, "store-node-0.1.0")
        .expect("manifest A into keel-enroll");

    // The software TPMs' EK CA exists once swtpm_setup has run on this machine.
    drop(keel_builder::vm::swtpm::Swtpm::start(&work.join("tpm-ca-probe")).expect("swtpm"));
    store
        .start_enroll(store::swtpm_localca_pems().expect("swtpm local CA"))
        .expect("keel-enroll");
    let enroll_url = store.enroll().base_url.clone();
    let enroll_ca = store.enroll().ca_pem.clone();

    let ssh_key = work.join("id_ed25519");
    Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&ssh_key)
        .run()
        .expect("ssh-keygen");
    let ssh_pub = std::fs::read_to_string(work.join("id_ed25519.pub")).expect("pub key");

    // ---- Node A: release A, first boot to done.
    let token = store.token().expect("token");
    let seed = store::seed_iso(
        keel_bin,
        &work,
        "node-a",
        &enroll_url,
        &enroll_ca,
        &token,
        &ssh_pub,
    )
    .expect("seed A");
    let check = Command::new(bootstrap_bin())
        .args(["seed", "check"])
        .arg(&seed)
        .run_get_string()
        .expect("keel-bootstrap seed check");
    keel_testbed::report!("{TEST}: {}", check.lines().next().unwrap_or_default());
    let before_osds = osd_ids(&store);
    let started = Instant::now();
    let mut vm = Vm::start(vm_options(&a, &work, 0, &net, seed)).expect("VM A starts");
    let mut fails: Vec<&str> = BOOT_FAILURES.to_vec();
    fails.push(REJECTED);
    // The login prompt (what a plain boot ends with) and the agent's last
    // line, in whichever order they come: one boot, both times.
    let wait = |vm: &mut Vm, pattern: &str| {
        vm.wait_for_console_unless(pattern, &fails, prereq::boot_timeout(1800))
            .unwrap_or_else(|e| {
                panic!(
                    "{TEST}: node A never finished first boot: {e:#}\nagent lines:\n{}\ndnsmasq: {}",
                    agent_lines(&vm.console_log()).join("\n"),
                    store.dhcp.log_tail()
                )
            })
    };
    let first = wait(&mut vm, &format!("login:|{DONE}"));
    let t_first = started.elapsed();
    let (to_login, to_done, done_line) = if is_done_line(&first.line) {
        let login = first
            .line
            .contains("login:")
            .then_some(t_first)
            .or_else(|| {
                vm.wait_for_console(r"login:", Duration::from_secs(300))
                    .ok()
                    .map(|_| started.elapsed())
            });
        (login, t_first, first.line)
    } else {
        let done = wait(&mut vm, DONE);
        (Some(t_first), started.elapsed(), done.line)
    };
    let console = vm.console_log();
    keel_testbed::report!(
        "{TEST}: node A, one boot: login prompt {} after QEMU started, first boot complete {:.1} s",
        to_login.map_or("never seen".into(), |t| format!("{:.1} s", t.as_secs_f64())),
        to_done.as_secs_f64(),
    );
    if let Some(l) = to_login {
        keel_testbed::report!(
            "{TEST}: the agent finished {:+.1} s after the login prompt",
            to_done.as_secs_f64() - l.as_secs_f64()
        );
    }
    keel_testbed::report!("{TEST}: what the technician saw on the serial console:");
    for l in agent_lines(&console) {
        keel_testbed::report!("    {l}");
    }
    keel_testbed::report!("{TEST}: {done_line}");

    // The service's view: one node, admitted, bundle revision reported.
    let nodes = store.nodes().expect("nodes");
    assert_eq!(nodes.len(), 1, "one node enrolled: {nodes:?}");
    keel_testbed::report!("{TEST}: node row: {:?}", nodes[0]);
    wait_revision(&store);
    // Ceph's view: the node's OSD is up and in.
    let added: Vec<u64> = osd_ids(&store)
        .into_iter()
        .filter(|i| !before_osds.contains(i))
        .collect();
    assert_eq!(added.len(), 1, "one OSD from the node: {added:?}");
    wait_up_in(&store, added[0]);

    // The node's view, over SSH on the store LAN.
    let host = net.guest_addr(0).to_string();
    let timers = ssh(
        &ssh_key,
        &host,
        "systemctl is-active keel-renew.timer keel-sync.timer",
    );
    assert_eq!(
        timers.split_whitespace().collect::<Vec<_>>(),
        ["active", "active"],
        "{timers}"
    );
    let unit = ssh(
        &ssh_key,
        &host,
        "systemctl show keel-bootstrap.service -p Type -p Result -p ExecMainStatus -p CPUUsageNSec -p MemoryPeak",
    );
    keel_testbed::report!(
        "{TEST}: keel-bootstrap.service in the guest: {}",
        unit.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    assert!(unit.contains("Type=notify"), "{unit}");
    assert!(unit.contains("Result=success"), "{unit}");
    let usage = ssh(
        &ssh_key,
        &host,
        "journalctl -b -u keel-bootstrap.service -o cat | grep 'resource use' | tail -n 1",
    );
    keel_testbed::report!("{TEST}: agent inside the guest: {}", usage.trim());
    let facts = ssh(
        &ssh_key,
        &host,
        "hostname; cat /etc/hostname; findmnt -no FSTYPE /etc; test -f /var/lib/keel/done && echo done-marker; \
         openssl x509 -noout -subject -enddate -in /var/lib/keel/acme/live/cert.pem; \
         cat /var/lib/keel/bundle/current/app/config.yaml",
    );
    keel_testbed::report!("{TEST}: node facts:\n{facts}");
    let lines: Vec<&str> = facts.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&"node-a"),
        "running host name from the seed: {facts}"
    );
    assert_eq!(
        lines.get(1),
        Some(&"node-a"),
        "/etc/hostname from the seed: {facts}"
    );
    assert_eq!(
        lines.get(2),
        Some(&"overlay"),
        "/etc is the persistent overlay: {facts}"
    );
    assert!(facts.contains("done-marker"), "{facts}");
    assert!(facts.contains("replicas: 1"), "bundle applied: {facts}");
    vm.stop().expect("VM A stops");

    // ---- Node B: the other build of the same release is refused.
    let token = store.token().expect("token");
    let seed = store::seed_iso(
        keel_bin,
        &work,
        "node-b",
        &enroll_url,
        &enroll_ca,
        &token,
        &ssh_pub,
    )
    .expect("seed B");
    let started = Instant::now();
    let mut vm = Vm::start(vm_options(&b, &work, 1, &net, seed)).expect("VM B starts");
    let refused = vm
        .wait_for_console_unless(REJECTED, &[DONE], prereq::boot_timeout(1800))
        .unwrap_or_else(|e| {
            panic!(
                "{TEST}: node B was not refused: {e:#}\nagent lines:\n{}",
                agent_lines(&vm.console_log()).join("\n")
            )
        });
    keel_testbed::report!(
        "{TEST}: node B refused {:.1} s after QEMU started: {}",
        started.elapsed().as_secs_f64(),
        refused.line
    );
    for l in agent_lines(&vm.console_log()) {
        keel_testbed::report!("    {l}");
    }
    assert!(
        refused.line.contains("(pcr-policy)"),
        "refused for its PCRs: {}",
        refused.line
    );
    vm.stop().expect("VM B stops");
    assert_eq!(
        store.nodes().expect("nodes").len(),
        1,
        "node B not admitted"
    );
}

fn osd_ids(store: &Store) -> Vec<u64> {
    store
        .ceph
        .ceph_json(&["osd", "ls"])
        .expect("osd ls")
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_u64()).collect())
        .unwrap_or_default()
}

fn wait_up_in(store: &Store, id: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let dump = store
            .ceph
            .ceph_json(&["osd", "dump", "--format", "json"])
            .expect("osd dump");
        let osd = dump["osds"]
            .as_array()
            .and_then(|a| a.iter().find(|o| o["osd"].as_u64() == Some(id)).cloned());
        if let Some(o) = &osd {
            if o["up"].as_u64() == Some(1) && o["in"].as_u64() == Some(1) {
                keel_testbed::report!(
                    "{TEST}: osd.{id} up and in at {}",
                    o["public_addr"].as_str().unwrap_or("?")
                );
                return;
            }
        }
        assert!(Instant::now() < deadline, "osd.{id} not up and in: {osd:?}");
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn wait_revision(store: &Store) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let nodes = store.nodes().expect("nodes");
        if nodes[0].revision.as_deref() == Some(store.rev.as_str()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "revision {} not reported: {nodes:?}",
            store.rev
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}
