//! End to end over HTTPS with a real (software) TPM: swtpm manufactured with
//! EK certificates by its local CA (the service trusts that CA), the node side
//! of keel-attest (tss-esapi) and the node client, against keel-enroll on
//! 127.0.0.1. RSA-2048 and ECC (P-384, the ECC EK swtpm certifies) EKs.
#![allow(clippy::unwrap_used)]

mod common;

use keel_attest::client::{EnrollClient, NodeReport};
use keel_attest::node::{
    answer_challenge, start_request, AkAlg, EkAlg, NodeIdentityInput, NodeTpm,
};
use keel_attest::protocol::{Decision, NodeClaims, StartResponse};
use keel_enroll_bench::harness::{Harness, Options};
use keel_enroll_bench::{bench_policy, bench_release};

async fn enroll_with(ek_alg: EkAlg, node_id: &str) {
    let Some(tpm_srv) = keel_testbed::or_skip(keel_testbed::swtpm::Swtpm::start()) else {
        return;
    };
    let h = Harness::start(Options {
        policy: bench_policy(),
        ek_roots: vec![
            tpm_srv.ca_root_pem().unwrap(),
            tpm_srv.ca_issuer_pem().unwrap(),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let c = EnrollClient::new(&h.base_url, &h.ca_pem).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::new(vec![node_id.to_owned()])
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .der()
        .to_vec();
    let tcti = tpm_srv.tcti();
    let ak_path = h.dir.path().join("ak.blob");
    let input = NodeIdentityInput {
        csr_der: csr.clone(),
        token: Some(h.admin().create_token("store-1", 600).await.unwrap()),
        claims: NodeClaims {
            hostname: node_id.into(),
            machine_id: "1".repeat(32),
            store_id: "store-1".into(),
            release: bench_release(),
        },
    };
    // TPM commands block: keep them off the async workers.
    let (mut tpm, ek, ak, req) = tokio::task::block_in_place(|| {
        let mut tpm = NodeTpm::open(&tcti).unwrap();
        let ek = tpm.ek(ek_alg).unwrap();
        assert!(ek.cert.is_some(), "swtpm EK has a certificate");
        let ak = tpm
            .load_or_create_ak(&ek, &ak_path, AkAlg::EccP256)
            .unwrap();
        let req = start_request(&ek, &ak, &input);
        (tpm, ek, ak, req)
    });
    let ch = match c.start(&req).await.unwrap() {
        StartResponse::Challenge(ch) => ch,
        d => panic!("{d:?}"),
    };
    let fin = tokio::task::block_in_place(|| {
        // A fresh swtpm has measured nothing: its log is the header alone.
        let log = keel_attest::verify::eventlog::EventLogBuilder::new().finish();
        answer_challenge(&mut tpm, &ek, &ak, &ch, &csr, Some(log)).unwrap()
    });
    let join = match c.finish(&fin).await.unwrap() {
        Decision::Admitted { node_id: id, join } => {
            assert_eq!(id, node_id);
            join
        }
        d => panic!("{d:?}"),
    };
    eprintln!("{ek_alg:?}: admitted {node_id} with {join:?}");
    // The node certificate names the node, chains to the node CA and lets the
    // node report over the signed report endpoint.
    let pem = join.identity.cert_chain_pem.clone();
    let der = keel_enroll::server::pem_first_der(&pem).unwrap();
    let report = NodeReport {
        node_id: node_id.into(),
        revision: "abc123".into(),
        status: "applied".into(),
        at: time::OffsetDateTime::now_utc(),
    };
    let signer = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &key.serialize_der(),
        &ring::rand::SystemRandom::new(),
    )
    .unwrap();
    let sign = |b: &[u8]| {
        signer
            .sign(&ring::rand::SystemRandom::new(), b)
            .unwrap()
            .as_ref()
            .to_vec()
    };
    c.report(&report, &der, sign).await.unwrap();
    let nodes = h.admin().nodes(None).await.unwrap();
    assert_eq!(nodes[0].revision.as_deref(), Some("abc123"));
    // A report signed by another key is refused.
    let other = rcgen::KeyPair::generate().unwrap();
    let other = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &other.serialize_der(),
        &ring::rand::SystemRandom::new(),
    )
    .unwrap();
    let bad = c
        .report(&report, &der, |b| {
            other
                .sign(&ring::rand::SystemRandom::new(), b)
                .unwrap()
                .as_ref()
                .to_vec()
        })
        .await
        .unwrap_err();
    eprintln!("forged report refused: {bad}");
    assert!(!bad.is_retryable());
    // Enrolling the same TPM again without re-enroll approval is refused.
    let again = c.start(&req).await.unwrap_err();
    assert_eq!(
        again.rejection().unwrap().code,
        keel_attest::protocol::RejectCode::IdentityConflict
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swtpm_rsa_ek_enrolls_over_https() {
    enroll_with(EkAlg::Rsa2048, "swtpm-rsa").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swtpm_ecc_ek_enrolls_over_https() {
    enroll_with(EkAlg::EccP384, "swtpm-ecc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_down_is_retryable() {
    // Nothing listens on this port: the client must say "retry", not "rejected".
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let dir = tempfile::tempdir().unwrap();
    keel_enroll::devcerts::write(dir.path(), &[]).unwrap();
    let ca = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
    let c = EnrollClient::new(&format!("https://127.0.0.1:{port}"), &ca).unwrap();
    let n = common::Node::new("offline");
    let e = c.start(&n.start_request()).await.unwrap_err();
    eprintln!("network down: {e}");
    assert!(e.is_retryable());
    assert!(e.rejection().is_none());
    assert!(EnrollClient::new("http://127.0.0.1:1", &ca).is_err());
}
