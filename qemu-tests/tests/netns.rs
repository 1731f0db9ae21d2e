//! The network the end-to-end first-boot test runs on: a private network
//! namespace with a bridge ([`keel_testbed::TestNet`]), the real services
//! bound to the bridge's host address inside it, and a QEMU guest on a tap
//! device on that bridge.
//!
//! `services_answer_on_the_bridge_address_only_inside_the_namespace` starts
//! Ceph, pebble and the Git server on the host address and checks each from
//! inside (the cluster's own `ceph`, pebble's directory over HTTPS trusting
//! its listener CA, `git ls-remote`), then checks from the root namespace
//! that the address is not there at all, and that the namespace is gone
//! after drop. `test_tiny_boots_with_its_nic_on_a_tap_on_the_bridge` boots
//! test-tiny with its NIC on a tap device that `keel vm` made on the bridge
//! and checks the tap (in the namespace, a port of br0, carrier from QEMU)
//! and the boot. It cannot check IP from the guest: test-tiny configures no
//! network, and its serial console asks for a password despite its
//! `serial-autologin`, so a test cannot type a network setup either. The
//! first-boot test gives the guest its address through the seed's
//! network-config ([`TestNet::guest_addr`], [`TestNet::guest_mac`]).

use std::net::{SocketAddrV4, TcpListener};
use std::process::Command;
use std::time::{Duration, Instant};

use keel_builder::vm::{MacAddr, Network, Vm, VmOptions, BOOT_FAILURES};
use keel_cmd::CommandRunExt;
use keel_qemu_tests::{check, images, prereq};
use keel_testbed::netns::{self, TestNet};
use keel_testbed::{
    or_skip, CephCluster, CephOptions, GitServer, GitServerOptions, Pebble, PebbleOptions,
};

#[test]
fn services_answer_on_the_bridge_address_only_inside_the_namespace() {
    if keel_testbed::skip_unless_root_and(&["ip", "curl", "git"]) {
        return;
    }
    let Some(net) = or_skip(TestNet::create()) else {
        return;
    };
    let name = net.name().to_string();
    let host = net.host_addr();
    let inside = net.enter().expect("entering the namespace");

    let Some(ceph) = or_skip(CephCluster::start_with(CephOptions { public_addr: host })) else {
        return;
    };
    let Some(pebble) = or_skip(Pebble::start_with(PebbleOptions {
        listen_addr: host.into(),
        ..PebbleOptions::default()
    })) else {
        return;
    };
    let Some(git) = or_skip(GitServer::start(GitServerOptions {
        bind_addr: host.into(),
        ..GitServerOptions::default()
    })) else {
        return;
    };

    // Ceph: healthy, and the mon and the OSD advertise the bridge address
    // (what a guest's OSD and the cluster use to reach each other).
    assert!(
        ceph.mon_host().contains(&format!("v2:{host}:")),
        "{}",
        ceph.mon_host()
    );
    assert!(ceph.health_ok(), "ceph health on {host} is not HEALTH_OK");
    let mons = ceph.ceph_json(&["mon", "dump"]).expect("ceph mon dump");
    let osds = ceph.ceph_json(&["osd", "dump"]).expect("ceph osd dump");
    let mon_addrs = addrs(&mons["mons"][0]["public_addrs"]);
    let osd_addrs = addrs(&osds["osds"][0]["public_addrs"]);
    for a in mon_addrs.iter().chain(&osd_addrs) {
        assert_eq!(*a.ip(), host, "mon {mon_addrs:?}, osd {osd_addrs:?}");
    }
    assert!(!mon_addrs.is_empty() && !osd_addrs.is_empty());

    // pebble: the directory over HTTPS, certificate checked for the IP.
    assert!(pebble
        .directory_url()
        .starts_with(&format!("https://{host}:")));
    let dir = Command::new("curl")
        .args(["-sSf", "--max-time", "10", "--cacert"])
        .arg(pebble.listener_ca_path())
        .arg(pebble.directory_url())
        .run_get_json::<serde_json::Value>()
        .expect("pebble directory over HTTPS");
    assert!(dir["newAccount"].is_string(), "{dir}");

    // Git: push and ls-remote a repository on the bridge address.
    git.create_repo("bundle").expect("create repo");
    let rev = git
        .commit_and_push("bundle", "main", &[("a.txt", b"a\n")], "first")
        .expect("push over HTTPS");
    let url = git.repo_url("bundle");
    assert!(url.starts_with(&format!("https://{host}:")), "{url}");
    let refs = git
        .git()
        .args(["ls-remote", &url])
        .run_get_string()
        .expect("git ls-remote");
    assert!(refs.contains(&format!("{rev}\trefs/heads/main")), "{refs}");

    // Every service listens on the host address inside the namespace.
    let ports = [
        pebble.acme_port(),
        pebble.mgmt_port(),
        git.port(),
        mon_addrs[0].port(),
    ];
    let listening = netns::tcp_listeners().expect("listeners inside");
    for p in ports {
        let want = SocketAddrV4::new(host, p);
        assert!(listening.contains(&want), "{want} not in {listening:?}");
    }
    drop(inside);

    // The root namespace has no such address (binding it fails locally, no
    // packet is sent) and nothing listening on it.
    assert!(TcpListener::bind((host, 0)).is_err());
    let root = netns::tcp_listeners().expect("listeners in the root namespace");
    assert!(
        !root.iter().any(|a| *a.ip() == host),
        "listening on {host} in the root namespace: {root:?}"
    );

    drop(git);
    drop(pebble);
    drop(ceph);
    drop(net);
    assert!(!netns::exists(&name), "namespace {name} left behind");
}

/// The `addr` fields of a Ceph `addrvec` as socket addresses.
fn addrs(v: &serde_json::Value) -> Vec<SocketAddrV4> {
    v["addrvec"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["addr"].as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `ip -o link show dev NAME` in the namespace.
fn link(net: &TestNet, name: &str) -> String {
    net.ip(&["-o", "link", "show", "dev", name])
        .unwrap_or_else(|e| e.to_string())
}

#[test]
fn test_tiny_boots_with_its_nic_on_a_tap_on_the_bridge() {
    let test = "test_tiny_boots_with_its_nic_on_a_tap_on_the_bridge";
    if prereq::skip_vm_test(test) || keel_testbed::skip_unless(&["ip"]) {
        return;
    }
    let Some(net) = or_skip(TestNet::create()) else {
        return;
    };
    let image = images::build("test-tiny").expect("keel build images/test-tiny");
    let work = tempfile::tempdir().expect("tempdir");
    let log = work.path().join("console.log");
    let mac = net.guest_mac(0);

    let mut opts = VmOptions::new(image.bootable(), &log);
    opts.memory_mib = 1024;
    opts.network = Network::Tap {
        ifname: "keel-tap0".into(),
        bridge: Some(net.bridge().into()),
    };
    opts.mac = Some(MacAddr::parse(&mac).expect("mac"));
    let mut vm = net
        .run(|| Vm::start(opts))
        .expect("entering the namespace")
        .expect("VM starts on the tap");
    assert_eq!(vm.tap_name(), Some("keel-tap0"));

    // The tap is in the namespace (not the root one), a port of br0, and
    // has carrier: QEMU holds it open.
    let end = Instant::now() + Duration::from_secs(10);
    while !link(&net, "keel-tap0").contains("LOWER_UP") {
        assert!(Instant::now() < end, "{}", link(&net, "keel-tap0"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let tap = link(&net, "keel-tap0");
    assert!(tap.contains("master br0"), "{tap}");
    assert!(!std::path::Path::new("/sys/class/net/keel-tap0").exists());

    vm.wait_for_console_unless(
        r"Reached target .*Multi-User System",
        BOOT_FAILURES,
        prereq::boot_timeout(1200),
    )
    .unwrap_or_else(|e| panic!("{test}: {e:#}"));
    let found = vm
        .wait_for_console(check::LINE_REGEX, Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("{test}: no KEEL-CHECK line: {e:#}"));
    eprintln!("{test}: booted on keel-tap0 ({mac}): {}", found.line);

    vm.stop().expect("VM stops");
    // The VM deleted its tap; dropping the net deletes the namespace.
    let links = net.ip(&["-br", "link"]).expect("links");
    assert!(!links.contains("keel-tap0"), "{links}");
    let name = net.name().to_string();
    drop(net);
    assert!(!netns::exists(&name), "namespace {name} left behind");
}
