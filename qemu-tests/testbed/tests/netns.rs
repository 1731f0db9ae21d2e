//! The test network namespace: made with a bridge address, entered and left
//! by one thread, and gone after drop, also when a test panics.

use keel_cmd::CommandRunExt;
use keel_testbed::netns;
use keel_testbed::{or_skip, TestNet};
use std::net::{TcpListener, TcpStream};
use std::process::Command;

fn net() -> Option<TestNet> {
    or_skip(TestNet::create())
}

#[test]
fn namespace_has_bridge_address_and_is_deleted_on_drop() {
    let Some(n) = net() else { return };
    let name = n.name().to_string();
    assert!(name.starts_with(&format!("keel-{}-", std::process::id())));
    assert!(netns::exists(&name));
    let host = n.host_addr();
    assert_eq!(host.octets()[..2], [10, 231]);
    assert_eq!(host.octets()[3], 1);
    assert_eq!(n.guest_addr(0).octets()[..3], host.octets()[..3]);
    assert_eq!(n.guest_addr(2).octets()[3], 12);
    assert_eq!(n.guest_mac(1).len(), 17);

    let addrs = n
        .ip(&["-br", "addr", "show", "dev", n.bridge()])
        .expect("ip addr");
    assert!(addrs.contains(&format!("{host}/24")), "{addrs}");
    let lo = n
        .ip(&["-br", "link", "show", "dev", "lo"])
        .expect("ip link");
    assert!(lo.contains("UNKNOWN") || lo.contains("UP"), "{lo}");

    // The root namespace does not have the address: binding it fails
    // locally (no packet leaves), so nothing can listen on it there.
    assert!(TcpListener::bind((host, 0)).is_err());

    drop(n);
    assert!(!netns::exists(&name), "{name} left behind");
    let list = Command::new("ip")
        .args(["netns", "list"])
        .run_get_string()
        .expect("ip netns list");
    assert!(!list.contains(&name), "{list}");
}

#[test]
fn entering_moves_only_this_thread_and_its_children() {
    let Some(n) = net() else { return };
    let host = n.host_addr();
    let port;
    {
        let _in = n.enter().expect("enter");
        let l = TcpListener::bind((host, 0)).expect("bind inside");
        port = l.local_addr().expect("addr").port();
        // A thread spawned inside is inside too.
        let seen = std::thread::spawn(move || TcpStream::connect((host, port)).is_ok())
            .join()
            .expect("thread");
        assert!(seen, "a thread started inside the namespace cannot connect");
        // A child process started inside is inside too.
        let out = Command::new("ip")
            .args(["-br", "addr", "show", "dev", "br0"])
            .run_get_string()
            .expect("ip in the namespace");
        assert!(out.contains(&host.to_string()), "{out}");
        assert!(netns::tcp_listeners()
            .expect("listeners")
            .iter()
            .any(|a| *a.ip() == host && a.port() == port));
        drop(l);
    }
    // Back in the root namespace: the address is not ours here.
    assert!(TcpListener::bind((host, 0)).is_err());
    assert!(!netns::tcp_listeners()
        .expect("listeners")
        .iter()
        .any(|a| *a.ip() == host));
    // ip netns exec runs a program inside.
    let out = n
        .exec({
            let mut c = Command::new("ip");
            c.args(["-br", "addr", "show", "dev", "br0"]);
            c
        })
        .run_get_string()
        .expect("ip netns exec");
    assert!(out.contains(&host.to_string()), "{out}");
    assert!(n
        .run(|| TcpListener::bind((host, 0)).is_ok())
        .expect("run inside"));
}

#[test]
fn namespace_is_deleted_when_a_test_panics() {
    let before = std::fs::read_link("/proc/thread-self/ns/net").expect("ns link");
    let Some(n) = net() else { return };
    let name = n.name().to_string();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _n = n;
        let _in = _n.enter().expect("enter");
        panic!("test failure inside the namespace");
    }));
    assert!(r.is_err());
    assert!(!netns::exists(&name), "{name} left behind after a panic");
    // This thread left the namespace when the guard unwound.
    let after = std::fs::read_link("/proc/thread-self/ns/net").expect("ns link");
    assert_eq!(after, before);
}
