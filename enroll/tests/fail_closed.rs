//! Enrollment fails closed: each attack on what surrounds the TPM checks is
//! refused with its code, against the real HTTPS service and its database.
//! Simulated nodes use keel-attest's software TPM (exact TPM formats).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use keel_attest::protocol::{Decision, RejectCode, ReleaseRef, StartResponse};
use keel_enroll::admission::NodeStatus;
use keel_enroll_bench::harness::{Harness, Options};
use keel_enroll_bench::EkCa;

/// Releases `bench 1..=3`, each constraining PCR 4 to a fresh TPM's value.
fn policy() -> String {
    let zero = hex::encode(keel_attest::verify::eventlog::initial_value(4, 0));
    (1..=3)
        .map(|v| {
            format!("[[release]]\nname = \"bench\"\nversion = \"{v}\"\n[release.pcrs]\n4 = [\"{zero}\"]\n")
        })
        .collect()
}

fn release(v: &str) -> ReleaseRef {
    ReleaseRef {
        name: "bench".into(),
        version: v.into(),
    }
}

async fn start(extra: &str, roots: Vec<String>) -> Harness {
    Harness::start(Options {
        policy: policy(),
        ek_roots: roots,
        extra_config: extra.into(),
        ..Default::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_need_a_genuine_tpm() {
    let vendor = EkCa::new("Trusted TPM Vendor CA").unwrap();
    let h = start("", vec![vendor.pem.clone()]).await;
    let c = client(&h);
    let admin = h.admin();

    // A leaked token in a software "TPM" (no vendor certificate, not listed).
    let token = admin.create_token("store-1", 3600).await.unwrap();
    let mut fake = Node::new("fake");
    fake.token = Some(token.clone());
    assert_eq!(code(fake.start(&c).await), RejectCode::EkNotAllowed);
    // ... and the token was not used up by the refusal: a real TPM still gets in.
    let mut real = Node::new("real");
    real.ek_cert = Some(vendor.certify(&real.tpm.ek.public_tpm2b()).unwrap());
    real.token = Some(token);
    admitted(real.enroll(&c).await.unwrap());

    // A certified TPM holding nothing cannot queue itself for approval (no
    // squatting of node ids by anyone who owns a TPM).
    let mut squatter = Node::new("store-node-7");
    squatter.ek_cert = Some(vendor.certify(&squatter.tpm.ek.public_tpm2b()).unwrap());
    assert_eq!(code(squatter.start(&c).await), RejectCode::EkNotAllowed);
    assert!(admin
        .nodes(None)
        .await
        .unwrap()
        .iter()
        .all(|n| n.node_id != "store-node-7"));

    // A token bound to one EK refuses another certified TPM.
    let mut owner = Node::new("owner");
    owner.ek_cert = Some(vendor.certify(&owner.tpm.ek.public_tpm2b()).unwrap());
    let bound = admin
        .create_token_for("store-1", 3600, Some(&owner.ek_hash()))
        .await
        .unwrap();
    let mut other = Node::new("owner");
    other.ek_cert = Some(vendor.certify(&other.tpm.ek.public_tpm2b()).unwrap());
    other.token = Some(bound.clone());
    assert_eq!(code(other.start(&c).await), RejectCode::TokenInvalid);
    owner.token = Some(bound);
    admitted(owner.enroll(&c).await.unwrap());
    assert!(admin
        .create_token_for("store-1", 60, Some("not-hex"))
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_stores_queue_and_show_the_ek_certificate() {
    let vendor = EkCa::new("Approved Vendor EK CA").unwrap();
    let h = start(
        "[stores.store-1]\nrequire-approval = true\n",
        vec![vendor.pem.clone()],
    )
    .await;
    let c = client(&h);
    let admin = h.admin();
    let mut n = Node::new("till-1");
    n.ek_cert = Some(vendor.certify(&n.tpm.ek.public_tpm2b()).unwrap());
    n.token = Some(admin.create_token("store-1", 3600).await.unwrap());
    match n.enroll(&c).await.unwrap() {
        Decision::Pending { reason, .. } => eprintln!("pending as expected: {reason}"),
        d => panic!("expected pending, got {d:?}"),
    }
    let pending = admin.nodes(Some(NodeStatus::Pending)).await.unwrap();
    let row = pending.iter().find(|r| r.node_id == "till-1").unwrap();
    let ek = row.ek_cert.as_ref().expect("EK certificate names recorded");
    assert!(ek.issuer.contains("Approved Vendor EK CA"), "{ek:?}");
    assert!(!ek.serial.is_empty());
    let table = keel_enroll::show::nodes_table(&pending, true);
    eprintln!("{table}");
    assert!(table.contains("Approved Vendor EK CA"));
    // Still pending on retry (the used token does not matter), then approved.
    assert!(matches!(
        n.enroll(&c).await.unwrap(),
        Decision::Pending { .. }
    ));
    admin.approve("store-1/till-1").await.unwrap();
    admitted(n.enroll(&c).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_and_withdrawn_releases_are_refused() {
    let h = start(
        "deny-releases = [\"bench 3\"]\n[min-release]\nbench = \"2\"\n",
        vec![],
    )
    .await;
    let c = client(&h);
    for (v, want) in [
        ("1", Some(RejectCode::ReleaseDenied)),
        ("3", Some(RejectCode::ReleaseDenied)),
        ("2", None),
    ] {
        let mut n = Node::new(&format!("rel-{v}"));
        n.release = release(v);
        allow(&h, &n).await;
        match want {
            Some(code_want) => assert_eq!(code(n.start(&c).await), code_want, "bench {v}"),
            None => {
                // The challenge asks for every constrained PCR plus 0 and 7.
                let ch = n.start(&c).await.unwrap();
                assert_eq!(ch.pcr_selection.pcrs, vec![0, 4, 7]);
                admitted(c.finish(&n.answer(&ch)).await.unwrap());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measurements_must_be_explained() {
    let h = start("", vec![]).await;
    let c = client(&h);
    let mut n = Node::new("release-2");
    n.release = release("2");
    allow(&h, &n).await;

    // No event log: refused by default (require-event-log defaults to true).
    let ch = n.start(&c).await.unwrap();
    let fin = n
        .tpm
        .answer(&ch, &n.csr, None, &mut rand::rngs::OsRng)
        .unwrap();
    assert_eq!(code(c.finish(&fin).await), RejectCode::EventLogMalformed);

    // An extend the log does not show (code run outside the measured path).
    let mut t = Node::new("hidden-extend");
    t.release = release("2");
    t.tpm.extend(7, &[0x5a; 32]);
    allow(&h, &t).await;
    assert_eq!(code(t.enroll(&c).await), RejectCode::EventLogReplay);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_holds_no_proof() {
    let h = start("", vec![]).await;
    let c = client(&h);
    let mut n = Node::new("db-reader");
    n.release = release("1");
    allow(&h, &n).await;
    let ch = n.start(&c).await.unwrap();
    let honest = n.answer(&ch);
    // Whoever reads the session table sees only a hash of the proof.
    let db = rusqlite::Connection::open(h.dir.path().join("enroll.db")).unwrap();
    let stored: String = db
        .query_row(
            "SELECT secrets_json FROM sessions WHERE id = ?1",
            [&ch.session_id],
            |r| r.get(0),
        )
        .unwrap();
    let proof_hex = hex::encode(honest.proof.0);
    let proof_b64 =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, honest.proof.0);
    assert!(
        !stored.contains(&proof_hex) && !stored.contains(&proof_b64),
        "{stored}"
    );
    assert!(!stored.contains("\"secret\""), "{stored}");
    // Presenting what the database holds does not pass for the proof.
    let v: serde_json::Value = serde_json::from_str(&stored).unwrap();
    let held: keel_attest::protocol::Bytes32 =
        serde_json::from_value(v["proof-sha256"].clone()).unwrap();
    let mut forged = honest.clone();
    forged.proof = held;
    assert_eq!(code(c.finish(&forged).await), RejectCode::ActivationFailed);
    // (the forged finish consumed the session; the honest one is now a replay)
    assert_eq!(code(c.finish(&honest).await), RejectCode::SessionReplayed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconstrained_releases_do_not_load() {
    let err = Harness::start(Options {
        policy: "[[release]]\nname = \"bench\"\nversion = \"9\"\n[release.pcrs]\n".into(),
        ..Default::default()
    })
    .await
    .unwrap_err();
    eprintln!("refused at load: {err:#}");
    assert!(format!("{err:#}").contains("constrains no PCR"), "{err:#}");
    // A start for a release the service knows nothing of is refused too.
    let h = start("", vec![]).await;
    let mut n = Node::new("unknown-release");
    n.release = release("9");
    allow(&h, &n).await;
    match client(&h).start(&n.start_request()).await {
        Ok(StartResponse::Decision(Decision::Rejected { reason })) => {
            assert_eq!(reason.code, RejectCode::UnknownRelease)
        }
        other => assert_eq!(code(other), RejectCode::UnknownRelease),
    }
}
