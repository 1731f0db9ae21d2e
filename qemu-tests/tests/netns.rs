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
//! after drop. `test_tiny_reaches_the_bridge_over_a_tap_nic` boots test-tiny
//! with its NIC on the bridge and has the guest open a TCP connection to a
//! listener on the host address: real two-way IP between guest and host side.

use std::io::Read;
use std::net::{SocketAddr, SocketAddrV4, TcpListener};
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

/// How long test-tiny may take to reach multi-user (TCG on a busy machine).
fn boot_timeout() -> Duration {
    let secs = std::env::var("KEEL_TEST_BOOT_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1200);
    Duration::from_secs(secs)
}

#[test]
fn test_tiny_reaches_the_bridge_over_a_tap_nic() {
    let test = "test_tiny_reaches_the_bridge_over_a_tap_nic";
    if prereq::skip_vm_test(test) || keel_testbed::skip_unless(&["ip"]) {
        return;
    }
    let Some(net) = or_skip(TestNet::create()) else {
        return;
    };
    let image = images::build("test-tiny").expect("keel build images/test-tiny");
    let work = tempfile::tempdir().expect("tempdir");
    let log = work.path().join("console.log");
    let (host, guest) = (net.host_addr(), net.guest_addr(0));
    let mac = net.guest_mac(0);

    let inside = net.enter().expect("entering the namespace");
    let listener = TcpListener::bind((host, 0)).expect("listener on the bridge");
    let port = listener.local_addr().expect("addr").port();
    let mut opts = VmOptions::new(image.bootable(), &log);
    opts.memory_mib = 1024;
    opts.network = Network::Tap {
        ifname: "keel-tap0".into(),
        bridge: Some(net.bridge().into()),
    };
    opts.mac = Some(MacAddr::parse(&mac).expect("mac"));
    let mut vm = Vm::start(opts).expect("VM starts on the tap");
    let tap = net
        .ip(&["-br", "link", "show", "dev", "keel-tap0"])
        .expect("tap in the namespace");
    assert!(tap.contains("keel-tap0"), "{tap}");
    let master = net
        .ip(&["-o", "link", "show", "master", "br0"])
        .expect("bridge ports");
    assert!(master.contains("keel-tap0"), "{master}");
    drop(inside);

    vm.wait_for_console_unless(
        r"Reached target .*Multi-User System",
        BOOT_FAILURES,
        boot_timeout(),
    )
    .unwrap_or_else(|e| panic!("{test}: {e:#}"));
    // The check unit runs after multi-user; by then the serial console has
    // logged root in (test-tiny's serial autologin).
    vm.wait_for_console(check::LINE_REGEX, Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("{test}: no KEEL-CHECK line: {e:#}"));
    std::thread::sleep(Duration::from_secs(2));
    // Give the guest an address with systemd-networkd (in bookworm's
    // systemd package) and connect to the host side with bash's /dev/tcp.
    let script = format!(
        "mkdir -p /run/systemd/network && \
         printf '[Match]\\nMACAddress={mac}\\n[Network]\\nAddress={guest}/24\\n' \
           > /run/systemd/network/10-keel-test.network && \
         systemctl restart systemd-networkd && \
         for i in $(seq 30); do \
           (echo keel-guest-hello > /dev/tcp/{host}/{port}) 2>/dev/null && break; sleep 1; \
         done; echo KEEL-NET-DONE=$i\n"
    );
    vm.send_console(&script).expect("typing on the console");

    listener.set_nonblocking(true).expect("nonblocking");
    let started = Instant::now();
    let mut retyped = false;
    let (mut conn, peer) = loop {
        match listener.accept() {
            Ok(c) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Typed before the shell read the console? Once more.
                if !retyped && started.elapsed() > Duration::from_secs(90) {
                    vm.send_console(&script).expect("typing on the console");
                    retyped = true;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(240),
                    "{test}: the guest did not connect to {host}:{port}; console:\n{}",
                    vm.console_log()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("{test}: accept: {e}"),
        }
    };
    assert_eq!(peer, SocketAddr::from((guest, peer.port())), "{peer}");
    conn.set_nonblocking(false).expect("blocking");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut got = String::new();
    conn.read_to_string(&mut got).expect("read from guest");
    assert_eq!(got.trim(), "keel-guest-hello");
    eprintln!("{test}: guest {peer} reached {host}:{port} over the tap");

    vm.stop().expect("VM stops");
    // The VM deleted its tap; dropping the net deletes the namespace.
    let links = net.ip(&["-br", "link"]).expect("links");
    assert!(!links.contains("keel-tap0"), "{links}");
    let name = net.name().to_string();
    drop(net);
    assert!(!netns::exists(&name), "namespace {name} left behind");
}
