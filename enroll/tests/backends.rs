//! The same admission/audit suite against both storage backends over HTTPS:
//! embedded SQLite and a real PostgreSQL started by keel-testbed.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use keel_attest::protocol::{Decision, RejectCode};
use keel_enroll::admission::NodeStatus;
use keel_enroll_bench::harness::Harness;

async fn suite(h: &Harness) {
    let c = client(h);
    let admin = h.admin();

    // Same node enrolling twice concurrently: exactly one admitted.
    let mut n = Node::new("twin");
    allow(h, &n).await;
    let ch1 = n.start(&c).await.unwrap();
    let ch2 = n.start(&c).await.unwrap();
    let (f1, f2) = (n.answer(&ch1), n.answer(&ch2));
    let (r1, r2) = tokio::join!(c.finish(&f1), c.finish(&f2));
    let results = [r1, r2];
    let ok = results
        .iter()
        .filter(|r| matches!(r, Ok(Decision::Admitted { .. })))
        .count();
    assert_eq!(ok, 1, "{results:?}");
    let other = results.into_iter().find(|r| r.is_err()).unwrap();
    assert_eq!(code(other), RejectCode::IdentityConflict);

    // A different EK claiming the enrolled node's identity is rejected.
    let mut imp = Node::new("twin");
    imp.store = n.store.clone();
    allow(h, &imp).await;
    assert_eq!(code(imp.start(&c).await), RejectCode::IdentityConflict);

    // Re-imaged node (same EK): refused until an admin allows re-enrollment.
    assert_eq!(code(n.start(&c).await), RejectCode::IdentityConflict);
    admin.reenroll("twin", None).await.unwrap();
    admitted(n.enroll(&c).await.unwrap());
    // RMA: the replacement TPM is bound by the admin.
    admin.reenroll("twin", Some(&imp.ek_hash())).await.unwrap();
    assert_eq!(code(n.start(&c).await), RejectCode::IdentityConflict);
    admitted(imp.enroll(&c).await.unwrap());

    // Revoke.
    admin.revoke("twin").await.unwrap();
    assert_eq!(code(imp.start(&c).await), RejectCode::Revoked);

    // Token: admits a genuine (here allow-listed) TPM once.
    let t = admin.create_token("store-1", 600).await.unwrap();
    let mut a = Node::new("tok-a");
    a.token = Some(t.clone());
    allow(h, &a).await;
    admitted(a.enroll(&c).await.unwrap());
    let mut b = Node::new("tok-b");
    b.token = Some(t);
    assert_eq!(code(b.start(&c).await), RejectCode::TokenReused);
    // A token for another store is invalid.
    let t2 = admin.create_token("store-2", 600).await.unwrap();
    let mut d = Node::new("tok-d");
    d.token = Some(t2);
    assert_eq!(code(d.start(&c).await), RejectCode::TokenInvalid);

    let nodes = admin.nodes(None).await.unwrap();
    assert!(nodes
        .iter()
        .any(|n| n.node_id == "twin" && n.status == NodeStatus::Revoked));
    assert!(nodes
        .iter()
        .any(|n| n.node_id == "tok-a" && n.status == NodeStatus::Admitted));

    // Node ids are scoped by store: store-2's "twin" is another node.
    let mut there = Node::new("twin");
    there.store = "store-2".into();
    allow(h, &there).await;
    admitted(there.enroll(&c).await.unwrap());
    let err = admin.revoke("twin").await.unwrap_err();
    assert!(err.to_string().contains("STORE/twin"), "{err}");
    // Delete: refused for an enrolled node, frees a revoked node's id.
    let err = admin.delete("store-2/twin").await.unwrap_err();
    assert!(err.to_string().contains("revoke"), "{err}");
    admin.delete("store-1/twin").await.unwrap();
    // A token bound to one EK: refused to another TPM (and not used up),
    // admits its own TPM under the freed id.
    let bound = admin
        .create_token_for("store-1", 600, Some(&n.ek_hash()))
        .await
        .unwrap();
    let mut thief = Node::new("thief");
    allow(h, &thief).await;
    thief.token = Some(bound.clone());
    assert_eq!(code(thief.start(&c).await), RejectCode::TokenInvalid);
    n.token = Some(bound);
    admitted(n.enroll(&c).await.unwrap());

    // Audit: verifies, and exports today's decisions.
    let (rows, head) = admin.audit_verify().await.unwrap();
    eprintln!(
        "{}: audit OK, {rows} rows, head {head}",
        h.store().backend()
    );
    let day = &keel_enroll::audit::now_rfc3339()[..10];
    let out = tempfile::tempdir().unwrap();
    let p = admin
        .audit_export(day, out.path(), Some(&h.loaded))
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    assert_eq!(doc["rows"].as_array().unwrap().len(), rows);
    assert_eq!(doc["config-sha256"][0], h.loaded.sha256.as_str());
    // The evidence part: the inventory as it stands and the config in force.
    assert_eq!(doc["config"]["config-sha256"], h.loaded.sha256.as_str());
    let inventory = h.store().nodes(None).await.unwrap();
    assert_eq!(doc["nodes"].as_array().unwrap().len(), inventory.len());
    assert!(doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["node-id"] == "tok-a" && n["status"] == "admitted"));
    let inputs = doc["config"]["inputs"].as_object().unwrap();
    assert!(
        inputs.keys().any(|k| k.starts_with("node-ca-cert: ")),
        "{inputs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_backend() {
    let h = harness(None).await;
    suite(&h).await;
    // Tampering: the table refuses edits; with the guard dropped, verify catches them.
    let db = h.dir.path().join("enroll.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    assert!(conn
        .execute("UPDATE audit SET decision = 'admitted' WHERE seq = 2", [])
        .is_err());
    conn.execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
        .unwrap();
    conn.execute("UPDATE audit SET detail = 'edited' WHERE seq = 2", [])
        .unwrap();
    let err = h.admin().audit_verify().await.unwrap_err();
    eprintln!("tampered audit log detected: {err:#}");
    assert!(err.to_string().contains("row 2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backend() {
    let pg = match tokio::task::spawn_blocking(keel_testbed::Postgres::start)
        .await
        .unwrap()
    {
        Ok(pg) => pg,
        Err(e) => {
            keel_testbed::report_skip(format_args!("postgres_backend: {e}"));
            return;
        }
    };
    let h = harness(Some(pg.url())).await;
    suite(&h).await;
    // Deleting an audit row (guard removed first) is detected.
    pg.psql(
        keel_testbed::postgres::DATABASE,
        "DROP TRIGGER audit_append_only ON audit; DELETE FROM audit WHERE seq = 3;",
    )
    .unwrap();
    match h.admin().audit_verify().await {
        Err(e) => eprintln!("tampered audit log detected: {e:#}"),
        Ok(r) => panic!("deletion not detected: {r:?}"),
    }
}
