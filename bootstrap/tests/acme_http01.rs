//! A real HTTP-01 validation: pebble's validator resolves the node's name
//! through pebble-challtestsrv's DNS (every name -> 127.0.0.1) and fetches the
//! key authorization from keel-bootstrap's own responder. keel-testbed's
//! Pebble uses PEBBLE_VA_ALWAYS_VALID, so this test starts its own pebble
//! with `httpPort` set to the responder's port.

use std::process::Command;
use std::time::Duration;

use keel_bootstrap::acme::{self, AcmeConfig, Eab, RenewOutcome, RetryPolicy};
use keel_testbed::{free_port, wait_for_tcp, Daemon, TestCa};

#[tokio::test]
async fn http01_challenge_is_answered_by_the_node() {
    if keel_testbed::skip_unless(&["pebble", "pebble-challtestsrv"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ca = TestCa::new("keel http01 test listener CA").expect("ca");
    let (cert, key) = ca
        .server_cert(&[])
        .expect("cert")
        .write(d, "listener")
        .expect("write");
    let ca_path = d.join("ca.pem");
    std::fs::write(&ca_path, ca.cert_pem()).expect("ca");
    let (acme_port, mgmt_port, http_port, dns_port, chall_mgmt) = (
        free_port().expect("port"),
        free_port().expect("port"),
        free_port().expect("port"),
        free_port().expect("port"),
        free_port().expect("port"),
    );
    let hmac = keel_testbed::pebble::random_b64url(32);
    let cfg = serde_json::json!({ "pebble": {
        "listenAddress": format!("127.0.0.1:{acme_port}"),
        "managementListenAddress": format!("127.0.0.1:{mgmt_port}"),
        "certificate": cert, "privateKey": key,
        "httpPort": http_port, "tlsPort": free_port().expect("port"),
        "ocspResponderURL": "", "certificateValidityPeriod": 3600,
        "externalAccountBindingRequired": true,
        "externalAccountMACKeys": { "node-kid": hmac },
    }});
    let cfg_path = d.join("pebble.json");
    std::fs::write(&cfg_path, cfg.to_string()).expect("config");

    let mut dns = Command::new("pebble-challtestsrv");
    dns.args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
        .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
        .args(["-management", &format!("127.0.0.1:{chall_mgmt}")])
        .args(["-http01", "", "-https01", "", "-tlsalpn01", ""]);
    let mut dns = Daemon::spawn("pebble-challtestsrv", dns, &d.join("dns.log")).expect("dns");
    let m = format!("127.0.0.1:{chall_mgmt}");
    dns.wait_ready(Duration::from_secs(10), || {
        wait_for_tcp(&m, Duration::from_millis(50))
    })
    .expect("dns ready");

    let mut pebble = Command::new("pebble");
    pebble
        .arg("-config")
        .arg(&cfg_path)
        .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0");
    let mut pebble = Daemon::spawn("pebble", pebble, &d.join("pebble.log")).expect("pebble");
    let a = format!("127.0.0.1:{acme_port}");
    pebble
        .wait_ready(Duration::from_secs(15), || {
            wait_for_tcp(&a, Duration::from_millis(50))
        })
        .expect("pebble ready");

    let cfg = AcmeConfig {
        directory_url: format!("https://127.0.0.1:{acme_port}/dir"),
        ca_bundle: ca_path,
        eab: Some(Eab {
            kid: "node-kid".into(),
            hmac_key: hmac,
        }),
        domains: vec!["node7.store.test".into()],
        state_dir: d.join("acme"),
        http01_listen: format!("127.0.0.1:{http_port}").parse().expect("addr"),
        renew_fraction: 2.0 / 3.0,
        retry: RetryPolicy {
            initial_ms: 200,
            max_ms: 1000,
            total_s: 5,
        },
    };
    let t = std::time::Instant::now();
    let out = acme::renew(&cfg).await;
    eprintln!(
        "certificate with real HTTP-01 validation: {:?}",
        t.elapsed()
    );
    let out = out.unwrap_or_else(|e| panic!("{e}\npebble log:\n{}", pebble.log_tail()));
    assert!(
        matches!(out, RenewOutcome::Issued { attempts: 1, .. }),
        "{out:?}"
    );
    let log = std::fs::read_to_string(d.join("pebble.log")).expect("log");
    let probe = format!(
        "validate w/ HTTP: http://node7.store.test:{http_port}/.well-known/acme-challenge/"
    );
    assert!(
        log.contains(&probe),
        "pebble validated over HTTP against the node's responder:\n{log}"
    );
    assert!(
        log.contains("There are now 1 accounts in memory"),
        "one account"
    );
}
