//! Adversarial enrollment over HTTPS: each case must be refused with its reason.
//! Simulated nodes use keel-attest's software TPM (the structures a real TPM
//! refuses to produce are crafted with it); the server path is the production one.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use keel_attest::protocol::{RejectCode, B64};
use keel_attest::tpm2::public::attr;
use keel_enroll_bench::EkCa;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_cases_are_rejected_with_their_reason() {
    let h = harness(None).await;
    let c = client(&h);

    // Baseline: an allow-listed node is admitted and gets a node certificate.
    let good = Node::new("good-1");
    allow(&h, &good).await;
    let ch = good.start(&c).await.unwrap();
    let fin = good.answer(&ch);
    let join = admitted(c.finish(&fin).await.unwrap());
    assert!(join.identity.cert_chain_pem.contains("BEGIN CERTIFICATE"));

    // Replayed finish.
    assert_eq!(code(c.finish(&fin).await), RejectCode::SessionReplayed);

    // Wrong nonce: the quote is made over another nonce.
    let n = Node::new("wrong-nonce");
    allow(&h, &n).await;
    let mut ch = n.start(&c).await.unwrap();
    let real_nonce = ch.nonce;
    ch.nonce = keel_attest::protocol::Bytes32([7; 32]);
    let mut fin = n.answer(&ch);
    // keep the proof valid for the real nonce so only the quote is wrong
    ch.nonce = real_nonce;
    fin.proof = n.answer(&ch).proof;
    assert_eq!(code(c.finish(&fin).await), RejectCode::QuoteNonce);

    // Unknown session id.
    let mut fin2 = n.answer(&n.start(&c).await.unwrap());
    fin2.session_id = "00".repeat(16);
    assert_eq!(code(c.finish(&fin2).await), RejectCode::SessionUnknown);

    // Secret from another session: answer session B with session A's proof.
    let n = Node::new("cross-session");
    allow(&h, &n).await;
    let ch_a = n.start(&c).await.unwrap();
    let ch_b = n.start(&c).await.unwrap();
    let fin_a = n.answer(&ch_a);
    let mut fin_b = n.answer(&ch_b);
    fin_b.proof = fin_a.proof;
    assert_eq!(code(c.finish(&fin_b).await), RejectCode::ActivationFailed);

    // Non-restricted AK.
    let mut n = Node::new("unrestricted-ak");
    n.tpm.ak.attributes &= !attr::RESTRICTED;
    allow(&h, &n).await;
    assert_eq!(code(n.start(&c).await), RejectCode::AkAttributes);

    // AK name mismatch.
    let n = Node::new("ak-name");
    allow(&h, &n).await;
    let mut req = n.start_request();
    req.ak_name = B64(vec![0, 0x0b, 1, 2, 3]);
    assert_eq!(code(c.start(&req).await), RejectCode::AkNameMismatch);

    // Unknown EK (no certificate), no token.
    let n = Node::new("unknown-ek");
    assert_eq!(code(n.start(&c).await), RejectCode::EkNotAllowed);

    // Reused token.
    let admin = h.admin();
    let token = admin.create_token("store-1", 3600).await.unwrap();
    let mut a = Node::new("token-a");
    a.token = Some(token.clone());
    allow(&h, &a).await; // a token admits only a genuine (listed or certified) TPM
    admitted(a.enroll(&c).await.unwrap());
    let mut b = Node::new("token-b");
    b.token = Some(token);
    assert_eq!(code(b.start(&c).await), RejectCode::TokenReused);
    let mut b2 = Node::new("token-c");
    b2.token = Some("keel-not-a-token".into());
    assert_eq!(code(b2.start(&c).await), RejectCode::TokenInvalid);

    // PCR values not in policy (PCR 0 measured by unexpected firmware, and
    // logged: the log replays, the value is still not allowed).
    let mut n = Node::new("bad-pcr");
    n.tpm.measure(0, 1, b"firmware nobody approved");
    allow(&h, &n).await;
    assert_eq!(code(n.enroll(&c).await), RejectCode::PcrPolicy);

    // Event log that does not replay to the quote.
    let n = Node::new("bad-log");
    allow(&h, &n).await;
    let ch = n.start(&c).await.unwrap();
    let mut log = keel_attest::verify::eventlog::EventLogBuilder::new();
    log.measure(0, 1, b"firmware that was never measured");
    let fin = n
        .tpm
        .answer(&ch, &n.csr, Some(log.finish()), &mut rand::rngs::OsRng)
        .unwrap();
    assert_eq!(code(c.finish(&fin).await), RejectCode::EventLogReplay);

    // Garbage event log.
    let n = Node::new("garbage-log");
    allow(&h, &n).await;
    let ch = n.start(&c).await.unwrap();
    let mut fin = n.answer(&ch);
    fin.event_log = Some(B64(vec![0xff; 40]));
    assert_eq!(code(c.finish(&fin).await), RejectCode::EventLogMalformed);

    // Truncated / garbage TPM structures.
    let n = Node::new("truncated");
    allow(&h, &n).await;
    let mut req = n.start_request();
    req.ek_public.0.truncate(20);
    assert_eq!(code(c.start(&req).await), RejectCode::TpmStructure);
    let mut req = n.start_request();
    req.ak_public = B64(vec![0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(code(c.start(&req).await), RejectCode::TpmStructure);
    let ch = n.start(&c).await.unwrap();
    let mut fin = n.answer(&ch);
    fin.quote.attest.0.truncate(10);
    assert_eq!(code(c.finish(&fin).await), RejectCode::QuoteInvalid);
    let ch = n.start(&c).await.unwrap();
    let mut fin = n.answer(&ch);
    fin.quote.signature = B64(vec![0; 3]);
    assert_eq!(code(c.finish(&fin).await), RejectCode::QuoteInvalid);
    let mut req = n.start_request();
    req.csr = B64(b"not a csr".to_vec());
    assert_eq!(code(c.start(&req).await), RejectCode::CsrInvalid);

    // Not JSON at all.
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(h.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = http
        .post(format!("{}/v1/enroll/start", h.base_url))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Oversized body -> 413.
    let r = http
        .post(format!("{}/v1/enroll/start", h.base_url))
        .header("content-type", "application/json")
        .body(vec![b' '; 300 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    eprintln!("oversized body refused with HTTP {}", r.status());

    // Audit log records every decision and verifies.
    let (rows, _) = h.admin().audit_verify().await.unwrap();
    assert!(rows >= 15, "{rows} audit rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_nonce_is_rejected() {
    let h = keel_enroll_bench::harness::Harness::start(keel_enroll_bench::harness::Options {
        policy: keel_enroll_bench::bench_policy(),
        session_ttl: Some(1),
        ..Default::default()
    })
    .await
    .unwrap();
    let c = client(&h);
    let n = Node::new("slow");
    allow(&h, &n).await;
    let ch = n.start(&c).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(
        code(c.finish(&n.answer(&ch)).await),
        RejectCode::SessionExpired
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ek_certificates_untrusted_and_mismatched() {
    // A vendor CA the service trusts, and one it does not.
    let trusted = EkCa::new("Trusted TPM Vendor CA").unwrap();
    let trusted_pem = trusted.pem.clone();
    let untrusted = EkCa::new("Rogue CA").unwrap();
    let h = keel_enroll_bench::harness::Harness::start(keel_enroll_bench::harness::Options {
        policy: keel_enroll_bench::bench_policy(),
        ek_roots: vec![trusted_pem],
        ..Default::default()
    })
    .await
    .unwrap();
    let c = client(&h);

    let mut n = Node::new("rogue-cert");
    n.ek_cert = Some(untrusted.certify(&n.tpm.ek.public_tpm2b()).unwrap());
    assert_eq!(code(n.start(&c).await), RejectCode::EkCertUntrusted);

    let mut n = Node::new("swapped-cert");
    let other = Node::new("other");
    n.ek_cert = Some(trusted.certify(&other.tpm.ek.public_tpm2b()).unwrap());
    assert_eq!(code(n.start(&c).await), RejectCode::EkCertMismatch);

    // A certified EK with a token for its store is admitted.
    let mut n = Node::new("certified");
    n.ek_cert = Some(trusted.certify(&n.tpm.ek.public_tpm2b()).unwrap());
    n.token = Some(h.admin().create_token("store-1", 3600).await.unwrap());
    admitted(n.enroll(&c).await.unwrap());
}
