//! The agent renews its node identity certificate against a real keel-enroll
//! (HTTPS on loopback, SQLite store): not before two thirds of the lifetime,
//! then a new serial for the same key written in place of the old file; a
//! revoked node's renewal is refused with the service's reason and the old
//! certificate is kept.

use std::path::Path;

use keel_bootstrap::identity::{self, Renewal};
use keel_enroll::admission::{AllowEntry, Claim};
use keel_enroll::audit::Entry;
use keel_enroll::store::CertRow;
use keel_enroll_bench::harness::{Harness, Options};

fn entry(action: &str) -> Entry {
    Entry {
        actor: "admin:test".into(),
        action: action.into(),
        decision: "ok".into(),
        ..Default::default()
    }
}

/// Admits `node` in the service's store (allow-listed EK) without a TPM.
async fn admit(h: &Harness, node: &str) {
    let ek = format!("{:064x}", node.len());
    let store = h.store();
    store
        .import_allow(
            vec![AllowEntry {
                ek_sha256: ek.clone(),
                serial: "SN".into(),
                store_id: "store-1".into(),
            }],
            entry("allowlist-import"),
        )
        .await
        .expect("allow");
    let claim = Claim {
        node_id: node.into(),
        store_id: "store-1".into(),
        ek_sha256: ek,
        ek_certified: false,
        token_hash: None,
        ek_cert: None,
        require_approval: false,
    };
    let out = store
        .admit(&claim, "keel 1", 0, entry("enroll-finish"))
        .await
        .expect("admit");
    assert!(
        matches!(out.verdict, keel_enroll::admission::Verdict::Admit { .. }),
        "{out:?}"
    );
}

/// Writes the state a first boot leaves: key, a certificate issued (and
/// recorded) with `lifetime`, and report.json naming the service.
async fn first_boot_state(h: &Harness, dir: &Path, node: &str, lifetime: time::Duration) {
    let key = rcgen::KeyPair::generate().expect("key");
    std::fs::write(dir.join("node-key.pem"), key.serialize_pem()).expect("key file");
    let csr = rcgen::CertificateParams::new(vec![node.to_owned()])
        .expect("params")
        .serialize_request(&key)
        .expect("csr");
    let signed = h
        .app
        .node_cert
        .sign_valid_for(node, csr.der(), lifetime)
        .expect("sign");
    let recorded = h
        .store()
        .record_cert(&CertRow {
            serial: signed.serial.clone(),
            node_id: node.into(),
            store_id: "store-1".into(),
            not_after: signed.not_after,
            issued_at: signed.not_after - lifetime.whole_seconds(),
            revoked_at: None,
        })
        .await
        .expect("record");
    assert!(recorded);
    std::fs::write(dir.join("node-cert.pem"), &signed.pem).expect("cert file");
    let report = serde_json::json!({"enroll-url": h.base_url, "enroll-ca": h.ca_pem});
    std::fs::write(dir.join("report.json"), report.to_string()).expect("report.json");
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_renews_its_certificate_when_a_third_of_the_lifetime_remains() {
    let h = Harness::start(Options {
        policy: keel_enroll_bench::bench_policy(),
        ..Default::default()
    })
    .await
    .expect("service");
    admit(&h, "renew-n1").await;
    let dir = tempfile::tempdir().expect("tmp");
    // Valid from 5 minutes ago for 2 more hours: 2/3 of the lifetime remain.
    first_boot_state(&h, dir.path(), "renew-n1", time::Duration::hours(2)).await;
    let first = identity::Identity::load(dir.path()).expect("load");
    let key_before = std::fs::read(dir.path().join("node-key.pem")).expect("key");
    match identity::renew_if_due(dir.path(), now())
        .await
        .expect("check")
    {
        Renewal::NotDue { serial, due_at } => {
            assert_eq!(serial, first.serial);
            assert_eq!(due_at, identity::due_at(first.not_before, first.not_after));
            assert!(due_at > now());
        }
        other => panic!("renewed too early: {other:?}"),
    }
    // At the due time (a third of the lifetime left) the node renews.
    let due = identity::due_at(first.not_before, first.not_after);
    let r = identity::renew_if_due(dir.path(), due)
        .await
        .expect("renew");
    let Renewal::Renewed {
        old_serial,
        new_serial,
        not_after,
    } = r
    else {
        panic!("not renewed: {r:?}")
    };
    assert_eq!(old_serial, first.serial);
    assert_ne!(new_serial, first.serial);
    let second = identity::Identity::load(dir.path()).expect("reload");
    assert_eq!(second.serial, new_serial, "node-cert.pem replaced");
    assert_eq!(second.not_after, not_after);
    assert_eq!(second.node_id, "renew-n1");
    assert_eq!(
        std::fs::read(dir.path().join("node-key.pem")).expect("key"),
        key_before,
        "same key"
    );
    let rec = h
        .store()
        .cert(&new_serial)
        .await
        .expect("db")
        .expect("recorded");
    assert_eq!(rec.node_id, "renew-n1");
    // The renewed certificate (service default: 7 days) is not due now.
    assert!(matches!(
        identity::renew_if_due(dir.path(), now())
            .await
            .expect("check"),
        Renewal::NotDue { .. }
    ));

    // Revoked: the renewal is refused with the service's reason; the old
    // certificate stays in place.
    h.admin().revoke("renew-n1").await.expect("revoke");
    let e = identity::renew_if_due(dir.path(), not_after)
        .await
        .expect_err("revoked node cannot renew");
    let text = format!("{e:#}");
    eprintln!("refused renewal: {text}");
    assert!(text.contains("(revoked)"), "{text}");
    assert_eq!(
        identity::Identity::load(dir.path()).expect("load").serial,
        new_serial
    );
}
