//! The pebble starter: the ACME directory answers over HTTPS with the exposed CA,
//! requires EAB, and comes back on the same port after a stop.

use keel_cmd::CommandRunExt;
use std::process::Command;
use std::time::Instant;

fn get_dir(p: &keel_testbed::Pebble) -> Result<serde_json::Value, keel_cmd::CmdError> {
    Command::new("curl")
        .args(["-sSf", "--max-time", "5", "--cacert"])
        .arg(p.listener_ca_path())
        .arg(p.directory_url())
        .run_get_json()
}

#[test]
fn pebble_directory_answers_over_https_and_restarts() {
    if keel_testbed::skip_unless(&["pebble", "curl"]) {
        return;
    }
    let t = Instant::now();
    let Some(mut p) = keel_testbed::or_skip(keel_testbed::Pebble::start()) else {
        return;
    };
    eprintln!("pebble ready in {:?} at {}", t.elapsed(), p.directory_url());
    let dir = get_dir(&p).expect("directory over https with the listener CA");
    assert!(dir["newAccount"]
        .as_str()
        .is_some_and(|u| u.starts_with("https://127.0.0.1")));
    assert_eq!(dir["meta"]["externalAccountRequired"], true, "{dir}");
    assert!(p.eab().is_some());
    let root = p.issuing_root_pem().expect("issuing root");
    assert!(root.contains("BEGIN CERTIFICATE"));

    // Without the CA the listener certificate is not trusted.
    let untrusted = Command::new("curl")
        .args(["-sSf", "--max-time", "5"])
        .arg(p.directory_url())
        .run();
    assert!(
        untrusted.is_err(),
        "listener cert must not be publicly trusted"
    );

    p.stop();
    assert!(get_dir(&p).is_err(), "ACME down after stop");
    p.start_again().expect("restart on the same ports");
    get_dir(&p).expect("directory back after restart");
}
