//! Node certificate revocation and renewal over real HTTPS, against both
//! storage backends (SQLite, and a real PostgreSQL from keel-testbed): the
//! report and renew endpoints refuse revoked, expired, unknown and forged
//! certificates (each with its reject code), renewal with a valid certificate
//! works, and the CRL lists exactly the revoked serials, signed by the node CA.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use keel_attest::client::{EnrollClient, NodeReport, RenewRequest};
use keel_attest::protocol::{RejectCode, B64};
use keel_enroll::issue::node_cert::NodeCertIssuer;
use keel_enroll::server::pem_first_der;
use keel_enroll::store::CertRow;
use keel_enroll_bench::harness::Harness;
use x509_parser::prelude::*;

/// A node identity key (P-256) kept by the test, as the agent keeps its own.
struct Ident {
    key: rcgen::KeyPair,
    signer: ring::signature::EcdsaKeyPair,
}

impl Ident {
    fn new() -> Ident {
        let key = rcgen::KeyPair::generate().unwrap();
        let signer = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &key.serialize_der(),
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        Ident { key, signer }
    }

    fn csr(&self, id: &str) -> Vec<u8> {
        let p = rcgen::CertificateParams::new(vec![id.to_owned()]).unwrap();
        p.serialize_request(&self.key).unwrap().der().to_vec()
    }

    fn sign(&self, b: &[u8]) -> Vec<u8> {
        self.signer
            .sign(&ring::rand::SystemRandom::new(), b)
            .unwrap()
            .as_ref()
            .to_vec()
    }
}

fn report(id: &str) -> NodeReport {
    NodeReport {
        node_id: id.into(),
        revision: "rev-1".into(),
        status: "applied".into(),
        at: ::time::OffsetDateTime::now_utc(),
    }
}

fn renewal(id: &str, ident: &Ident) -> RenewRequest {
    RenewRequest {
        node_id: id.into(),
        csr: B64(ident.csr(id)),
        at: ::time::OffsetDateTime::now_utc(),
    }
}

fn serial(der: &[u8]) -> String {
    hex::encode(X509Certificate::from_der(der).unwrap().1.raw_serial())
}

/// Enrolls `id` (allow-listed EK) with a key the test holds; its cert, DER.
async fn enroll(h: &Harness, c: &EnrollClient, id: &str) -> (Ident, Vec<u8>) {
    let ident = Ident::new();
    let mut n = Node::new(id);
    n.csr = ident.csr(id);
    allow(h, &n).await;
    let join = admitted(n.enroll(c).await.unwrap());
    (ident, pem_first_der(&join.identity.cert_chain_pem).unwrap())
}

/// The node CA of the harness, to sign certificates the service never issued.
fn node_ca(h: &Harness) -> NodeCertIssuer {
    let d = h.dir.path();
    NodeCertIssuer::load(
        &d.join("node-ca.pem"),
        &d.join("node-ca.key"),
        ::time::Duration::hours(1),
    )
    .unwrap()
}

/// Fetches and checks the CRL: parses, is signed by the node CA; its serials.
async fn crl_serials(h: &Harness, c: &EnrollClient) -> (Vec<String>, u64) {
    let der = c.crl().await.unwrap();
    let (rest, crl) = parse_x509_crl(&der).unwrap();
    assert!(rest.is_empty());
    let ca_der = pem_first_der(h.app.node_cert.ca_pem()).unwrap();
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    crl.verify_signature(ca.public_key())
        .expect("CRL signed by the node CA");
    assert_eq!(crl.issuer(), ca.subject());
    assert!(crl.next_update().unwrap() > crl.last_update());
    let number: u64 = crl.crl_number().unwrap().try_into().unwrap();
    let serials = crl
        .iter_revoked_certificates()
        .map(|r| hex::encode(r.raw_serial()))
        .collect();
    (serials, number)
}

async fn suite(h: &Harness) {
    let c = client(h);
    let admin = h.admin();
    let (ia, cert_a) = enroll(h, &c, "rv-a").await;
    let (ib, cert_b) = enroll(h, &c, "rv-b").await;
    let sign_a = |b: &[u8]| ia.sign(b);
    c.report(&report("rv-a"), &cert_a, sign_a).await.unwrap();
    let rec = h.store().cert(&serial(&cert_a)).await.unwrap().unwrap();
    assert_eq!(
        (rec.node_id.as_str(), rec.store_id.as_str()),
        ("rv-a", "store-1")
    );
    assert_eq!(rec.revoked_at, None);

    // Renewal with the valid certificate: a new certificate, new serial, recorded.
    let r = c
        .renew(&renewal("rv-a", &ia), &cert_a, sign_a)
        .await
        .unwrap();
    let cert_a2 = pem_first_der(&r.identity.cert_chain_pem).unwrap();
    assert_ne!(serial(&cert_a2), serial(&cert_a));
    let (_, parsed) = X509Certificate::from_der(&cert_a2).unwrap();
    let ca_der = pem_first_der(h.app.node_cert.ca_pem()).unwrap();
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    parsed.verify_signature(Some(ca.public_key())).unwrap();
    assert_eq!(
        parsed
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        "rv-a"
    );
    assert!(h.store().cert(&serial(&cert_a2)).await.unwrap().is_some());
    c.report(&report("rv-a"), &cert_a2, sign_a).await.unwrap();

    // Renewing for another node than the certificate names.
    let e = c.renew(&renewal("rv-b", &ia), &cert_a2, sign_a).await;
    assert_eq!(code(e), RejectCode::IdentityConflict);
    // Signed by another key than the certificate's.
    let e = c
        .renew(&renewal("rv-a", &ia), &cert_a2, |b| ib.sign(b))
        .await;
    assert_eq!(code(e), RejectCode::SignatureInvalid);
    let e = c.report(&report("rv-a"), &cert_a2, |b| ib.sign(b)).await;
    assert_eq!(code(e), RejectCode::SignatureInvalid);
    // Signed by the node CA, but never issued (no record): unknown.
    let forged = node_ca(h).sign("rv-a", &ia.csr("rv-a")).unwrap();
    let forged = pem_first_der(&forged.pem).unwrap();
    assert_eq!(
        code(c.report(&report("rv-a"), &forged, sign_a).await),
        RejectCode::CertUnknown
    );
    assert_eq!(
        code(c.renew(&renewal("rv-a", &ia), &forged, sign_a).await),
        RejectCode::CertUnknown
    );
    // Issued by another CA: unknown.
    let other_dir = tempfile::tempdir().unwrap();
    keel_enroll::devcerts::write(other_dir.path(), &[]).unwrap();
    let other = NodeCertIssuer::load(
        &other_dir.path().join("node-ca.pem"),
        &other_dir.path().join("node-ca.key"),
        ::time::Duration::hours(1),
    )
    .unwrap();
    let alien = pem_first_der(&other.sign("rv-a", &ia.csr("rv-a")).unwrap().pem).unwrap();
    assert_eq!(
        code(c.report(&report("rv-a"), &alien, sign_a).await),
        RejectCode::CertUnknown
    );

    // Expired (issued and recorded, lifetime over): refused by report and renew.
    let old = node_ca(h)
        .sign_valid_for("rv-a", &ia.csr("rv-a"), ::time::Duration::minutes(-1))
        .unwrap();
    let recorded = h
        .store()
        .record_cert(&CertRow {
            serial: old.serial.clone(),
            node_id: "rv-a".into(),
            store_id: "store-1".into(),
            not_after: old.not_after,
            issued_at: old.not_after - 360,
            revoked_at: None,
        })
        .await
        .unwrap();
    assert!(recorded);
    let old = pem_first_der(&old.pem).unwrap();
    assert_eq!(
        code(c.report(&report("rv-a"), &old, sign_a).await),
        RejectCode::CertExpired
    );
    assert_eq!(
        code(c.renew(&renewal("rv-a", &ia), &old, sign_a).await),
        RejectCode::CertExpired
    );

    // Nothing revoked yet.
    let (serials, n0) = crl_serials(h, &c).await;
    assert!(serials.is_empty(), "{serials:?}");

    // Revoke rv-a: every certificate it holds is revoked and in the CRL.
    let w = admin.revoke("rv-a").await.unwrap();
    for s in [serial(&cert_a), serial(&cert_a2)] {
        assert!(w.cert_serials.contains(&s), "{s} in {:?}", w.cert_serials);
    }
    assert!(w.failures.is_empty(), "{:?}", w.failures);
    assert_eq!(
        code(c.report(&report("rv-a"), &cert_a2, sign_a).await),
        RejectCode::Revoked
    );
    assert_eq!(
        code(c.report(&report("rv-a"), &cert_a, sign_a).await),
        RejectCode::Revoked
    );
    assert_eq!(
        code(c.renew(&renewal("rv-a", &ia), &cert_a2, sign_a).await),
        RejectCode::Revoked
    );
    let (serials, n1) = crl_serials(h, &c).await;
    let mut want = vec![serial(&cert_a), serial(&cert_a2)];
    want.sort();
    assert_eq!(serials, want, "the expired certificate is not listed");
    assert!(n1 > n0, "CRL number grows: {n0} -> {n1}");

    // rv-b is untouched until it is re-enrolled; then its old certificate is revoked.
    let sign_b = |b: &[u8]| ib.sign(b);
    c.report(&report("rv-b"), &cert_b, sign_b).await.unwrap();
    let w = admin.reenroll("rv-b", None).await.unwrap();
    assert_eq!(w.cert_serials, vec![serial(&cert_b)]);
    assert_eq!(
        code(c.report(&report("rv-b"), &cert_b, sign_b).await),
        RejectCode::Revoked
    );
    let (serials, n2) = crl_serials(h, &c).await;
    assert!(serials.contains(&serial(&cert_b)));
    assert!(n2 > n1);
    // Revoking again is allowed (retries the withdrawal) and revokes nothing new.
    let w = admin.revoke("rv-a").await.unwrap();
    assert!(w.cert_serials.is_empty());

    // The audit log has every step and still verifies.
    let rows = h.store().audit_rows().await.unwrap();
    let has = |action: &str, node: &str| {
        rows.iter()
            .any(|r| r.entry.action == action && r.entry.node_id == node)
    };
    assert!(has("renew", "rv-a"));
    assert!(has("cert-revoke", "rv-a"));
    assert!(has("cert-revoke", "rv-b"));
    admin.audit_verify().await.unwrap();
}

/// The EAB pool bookkeeping of the store (the issuer's SQL on this backend).
async fn eab_pool(h: &Harness) {
    let st = h.store();
    let pool: Vec<String> = ["k1", "k2", "k3"].map(String::from).to_vec();
    let got = |r: Result<Option<String>, _>| r.unwrap();
    assert_eq!(
        got(st.eab_assign("s9", "a", &pool, 1).await).as_deref(),
        Some("k1")
    );
    assert_eq!(
        got(st.eab_assign("s9", "a", &pool, 2).await).as_deref(),
        Some("k1"),
        "held"
    );
    assert_eq!(
        got(st.eab_assign("s9", "b", &pool, 3).await).as_deref(),
        Some("k2")
    );
    // Another store has its own pool.
    assert_eq!(
        got(st.eab_assign("s8", "a", &pool, 3).await).as_deref(),
        Some("k1")
    );
    assert_eq!(
        st.eab_revoke("s9", "a", 4).await.unwrap(),
        vec!["k1".to_string()]
    );
    assert!(
        st.eab_revoke("s9", "a", 5).await.unwrap().is_empty(),
        "twice is fine"
    );
    assert_eq!(
        got(st.eab_assign("s9", "a", &pool, 6).await).as_deref(),
        Some("k3")
    );
    assert_eq!(
        got(st.eab_assign("s9", "c", &pool, 7).await),
        None,
        "k1 never again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_and_renewal_sqlite() {
    let h = harness(None).await;
    suite(&h).await;
    eab_pool(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_and_renewal_postgres() {
    let pg = match tokio::task::spawn_blocking(keel_testbed::Postgres::start)
        .await
        .unwrap()
    {
        Ok(pg) => pg,
        Err(e) => {
            keel_testbed::report_skip(format_args!("revocation_and_renewal_postgres: {e}"));
            return;
        }
    };
    let h = harness(Some(pg.url())).await;
    suite(&h).await;
    eab_pool(&h).await;
}
