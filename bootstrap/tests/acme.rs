//! ACME against a real pebble started by keel-testbed: certificate with an
//! EAB-bound account, the same account on rerun, EAB refusal, renewal at two
//! thirds of a short lifetime, and the CA going down and coming back.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keel_bootstrap::acme::{self, AcmeConfig, CertStore, Eab, RenewOutcome, RetryPolicy};
use keel_testbed::{or_skip, Pebble, PebbleOptions};

fn pebble(validity_secs: u64) -> Option<Pebble> {
    or_skip(Pebble::start_with(PebbleOptions {
        validity_secs,
        ..PebbleOptions::default()
    }))
}

fn eab(p: &Pebble) -> Option<Eab> {
    p.eab().map(|(kid, key)| Eab {
        kid: kid.into(),
        hmac_key: key.into(),
    })
}

fn config(p: &Pebble, dir: &Path, eab: Option<Eab>) -> AcmeConfig {
    let ca = dir.join("acme-ca.pem");
    fs::write(&ca, p.listener_ca_pem()).expect("write CA");
    AcmeConfig {
        directory_url: p.directory_url(),
        ca_bundle: ca,
        eab,
        domains: vec!["node1.store.test".into()],
        state_dir: dir.join("acme"),
        http01_listen: "127.0.0.1:0".parse().expect("addr"),
        renew_fraction: 2.0 / 3.0,
        retry: RetryPolicy {
            initial_ms: 200,
            max_ms: 2_000,
            total_s: 60,
        },
    }
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

fn issued(o: RenewOutcome) -> (acme::CertInfo, Option<String>, u32) {
    match o {
        RenewOutcome::Issued {
            info,
            previous,
            attempts,
        } => (info, previous, attempts),
        other => panic!("expected a new certificate, got {other:?}"),
    }
}

#[tokio::test]
async fn certificate_with_eab_and_same_account_on_rerun() {
    let Some(p) = pebble(24 * 3600) else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&p, dir.path(), eab(&p));

    let t = Instant::now();
    let (info, previous, attempts) = issued(acme::renew(&cfg).await.expect("first certificate"));
    eprintln!(
        "certificate issuance (account + order + finalize): {:?}",
        t.elapsed()
    );
    assert_eq!((previous, attempts), (None, 1));
    assert!(
        (info.lifetime_s() - 24 * 3600).abs() <= 1,
        "lifetime {}",
        info.lifetime_s()
    );

    let store = CertStore::open(&cfg.state_dir).expect("store");
    let live = store.live();
    assert_eq!(mode(&live.join("key.pem")), 0o600);
    assert_eq!(mode(&store.account_path()), 0o600);
    let account = fs::read(store.account_path()).expect("account");

    // The chain really comes from pebble's issuing root.
    if keel_testbed::which("openssl").is_some() && keel_testbed::which("curl").is_some() {
        let root = dir.path().join("root.pem");
        fs::write(&root, p.issuing_root_pem().expect("root")).expect("write root");
        let out = std::process::Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(&root)
            .arg("-untrusted")
            .arg(live.join("chain.pem"))
            .arg(live.join("cert.pem"))
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    // Rerun: nothing due.
    assert!(matches!(
        acme::renew(&cfg).await.expect("rerun"),
        RenewOutcome::NotDue { .. }
    ));

    // Rerun after losing the certificate (as after a power cut before it was
    // installed): a new certificate, but the SAME account, no second one.
    let key1 = fs::read(live.join("key.pem")).expect("key");
    fs::remove_file(&live).expect("remove live");
    let (info2, _, _) = issued(acme::renew(&cfg).await.expect("reissue"));
    assert_ne!(info2.serial, info.serial);
    assert_eq!(
        fs::read(store.account_path()).expect("account"),
        account,
        "same account"
    );
    assert_ne!(
        fs::read(live.join("key.pem")).expect("key"),
        key1,
        "fresh key per certificate"
    );
}

#[tokio::test]
async fn account_without_valid_eab_is_refused() {
    let Some(p) = pebble(3600) else { return };
    for (name, eab) in [
        ("missing EAB", None),
        (
            "wrong HMAC key",
            p.eab().map(|(kid, _)| Eab {
                kid: kid.into(),
                hmac_key: keel_testbed::pebble::random_b64url(32),
            }),
        ),
        (
            "unknown key id",
            Some(Eab {
                kid: "not-a-kid".into(),
                hmac_key: keel_testbed::pebble::random_b64url(32),
            }),
        ),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = config(&p, dir.path(), eab);
        cfg.retry.total_s = 1;
        let err = acme::renew(&cfg).await.expect_err(name);
        eprintln!("{name}: {err}");
        let text = err.to_string();
        assert!(
            text.contains("externalAccountRequired") || text.contains(":unauthorized"),
            "{name}: the CA's refusal is shown: {text}"
        );
        assert!(
            !text.contains("unreachable"),
            "{name}: refused, not retried: {text}"
        );
        let store = CertStore::open(&cfg.state_dir).expect("store");
        assert!(!store.account_path().exists(), "{name}: no account stored");
        assert!(
            store.live_info().expect("live").is_none(),
            "{name}: no certificate"
        );
    }
}

#[tokio::test]
async fn renews_at_two_thirds_of_a_short_lifetime() {
    let Some(p) = pebble(9) else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&p, dir.path(), eab(&p));
    let (first, _, _) = issued(acme::renew(&cfg).await.expect("first"));
    assert!(
        first.lifetime_s() <= 10,
        "short-lived: {}",
        first.lifetime_s()
    );
    let due = acme::renew::due_at(&first, cfg.renew_fraction);
    if now_s() < due {
        match acme::renew(&cfg).await.expect("early run") {
            RenewOutcome::NotDue { serial, due_at } => {
                assert_eq!((serial, due_at), (first.serial.clone(), due));
            }
            other => panic!("renewed too early: {other:?}"),
        }
    }
    let wait = (due - now_s()).max(0) as u64;
    tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(300)).await;
    assert!(now_s() < first.not_after, "still before expiry");
    let (second, previous, _) = issued(acme::renew(&cfg).await.expect("renewal"));
    assert_eq!(previous.as_deref(), Some(first.serial.as_str()));
    assert_ne!(second.serial, first.serial);
    let gens = fs::read_dir(cfg.state_dir.join("generations"))
        .expect("ls")
        .count();
    assert_eq!(
        gens, 2,
        "the previous certificate is kept beside the new one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_down_then_up_retries_until_renewed() {
    let Some(mut p) = pebble(60) else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&p, dir.path(), eab(&p));
    cfg.renew_fraction = 0.02; // due after ~1 s of a 60 s lifetime
    let (first, _, _) = issued(acme::renew(&cfg).await.expect("first"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    p.stop();

    // While the CA is down a bounded run gives up cleanly; the old
    // certificate stays live.
    let mut short = cfg.clone();
    short.retry.total_s = 1;
    let err = acme::renew(&short).await.expect_err("CA is down");
    assert!(err.to_string().contains("unreachable"), "{err}");
    let store = CertStore::open(&cfg.state_dir).expect("store");
    assert_eq!(
        store.live_info().expect("live").expect("cert").serial,
        first.serial
    );

    // A longer run keeps retrying and succeeds once the CA is back.
    let c = cfg.clone();
    let task = tokio::spawn(async move { acme::renew(&c).await });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        store.live_info().expect("live").expect("cert").serial,
        first.serial
    );
    p.start_again().expect("pebble back");
    let (second, previous, attempts) = issued(task.await.expect("join").expect("renewed"));
    eprintln!("renewed after {attempts} attempts");
    assert!(attempts >= 2, "retried: {attempts}");
    assert_eq!(previous.as_deref(), Some(first.serial.as_str()));
    assert!(
        now_s() < first.not_after,
        "renewed before the old certificate expired"
    );
    assert_ne!(second.serial, first.serial);
}
