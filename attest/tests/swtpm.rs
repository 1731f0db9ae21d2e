//! Node -> verifier round trips against a real software TPM (swtpm): the
//! node side talks to swtpm through tss-esapi, the verifier checks
//! everything in software. Skips (with a message) when swtpm is missing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use keel_attest::node::{
    answer_challenge, start_request, AkAlg, EkAlg, NodeIdentityInput, NodeTpm,
};
use keel_attest::protocol::{
    self, NodeClaims, PcrBank, PcrSelection, RejectCode, ReleaseRef, StartRequest, B64,
};
use keel_attest::verify::ekcert::TrustStore;
use keel_attest::verify::eventlog::EventLogBuilder;
use keel_attest::verify::{credential, SessionSecrets, Verifier, VerifyError};
use time::OffsetDateTime;

const CSR: &[u8] = include_bytes!("fixtures/node-csr.der");
const PCRS: [u8; 4] = [0, 4, 7, 14];

/// Field order matters: the TPM context closes before swtpm stops.
struct Rig {
    node: NodeTpm,
    tpm: keel_testbed::Swtpm,
    trust: TrustStore,
    dir: tempfile::TempDir,
}

fn rig() -> Option<Rig> {
    if keel_testbed::skip_unless(&["swtpm", "swtpm_setup", "swtpm_localca"]) {
        return None;
    }
    let tpm = keel_testbed::or_skip(keel_testbed::Swtpm::start())?;
    let node = NodeTpm::open(&tpm.tcti()).expect("open swtpm");
    let mut trust = TrustStore::default();
    trust
        .add_roots_pem(&tpm.ca_root_pem().expect("root"))
        .expect("root pem");
    trust
        .add_intermediates_pem(&tpm.ca_issuer_pem().expect("issuer"))
        .expect("issuer pem");
    let dir = tempfile::tempdir().expect("tmp");
    Some(Rig {
        node,
        tpm,
        trust,
        dir,
    })
}

fn release() -> ReleaseRef {
    ReleaseRef {
        name: "store-node".into(),
        version: "2026.11.1".into(),
    }
}

fn input() -> NodeIdentityInput {
    NodeIdentityInput {
        csr_der: CSR.to_vec(),
        token: None,
        claims: NodeClaims {
            hostname: "store-042-a".into(),
            machine_id: "0123456789abcdef0123456789abcdef".into(),
            store_id: "store-042".into(),
            release: release(),
        },
    }
}

/// Measures a synthetic boot into the TPM and returns its event log.
fn measure_boot(node: &mut NodeTpm) -> Vec<u8> {
    let mut log = EventLogBuilder::new();
    for (pcr, what) in [
        (0u8, &b"firmware volume"[..]),
        (4, b"\\EFI\\BOOT\\BOOTX64.EFI"),
        (7, b"SecureBoot=1"),
        (4, b"store-node.efi"),
        (14, b"mok list"),
    ] {
        let d = log.measure(u32::from(pcr), 0x8000_0001, what);
        node.pcr_extend(pcr, &d).expect("pcr extend");
    }
    log.finish()
}

struct Run {
    verifier: Verifier,
    start: StartRequest,
    session: SessionSecrets,
    finish: protocol::FinishRequest,
}

fn run(r: &mut Rig, ek_alg: EkAlg, ak_alg: AkAlg) -> Run {
    let log = measure_boot(&mut r.node);
    let ek = r.node.ek(ek_alg).expect("EK");
    let t = Instant::now();
    let ak = r
        .node
        .load_or_create_ak(&ek, &r.dir.path().join("ak.json"), ak_alg)
        .expect("AK");
    eprintln!("{ek_alg:?}/{ak_alg:?}: AK created in {:?}", t.elapsed());
    let start = start_request(&ek, &ak, &input());

    let mut verifier = Verifier {
        trust: r.trust.clone(),
        require_event_log: true,
        ..Verifier::default()
    };
    let ev = verifier.verify_start(&start).expect("start verifies");
    assert_eq!(
        ev.ek_certified,
        ek_alg != EkAlg::EccP256,
        "swtpm certifies its RSA-2048 and P-384 EKs, not a P-256 one"
    );
    let sel = PcrSelection {
        bank: PcrBank::Sha256,
        pcrs: PCRS.to_vec(),
    };
    let (ch, session) = verifier
        .challenge(
            &ev,
            "session-1".into(),
            sel,
            release(),
            OffsetDateTime::now_utc() + Duration::from_secs(60),
            &mut rand::thread_rng(),
        )
        .expect("challenge");
    let t = Instant::now();
    let finish = answer_challenge(&mut r.node, &ek, &ak, &ch, CSR, Some(log)).expect("answer");
    eprintln!(
        "{ek_alg:?}/{ak_alg:?}: activate + quote + PCR read in {:?}",
        t.elapsed()
    );
    // swtpm has no resource manager and only 3 transient slots.
    r.node.flush(ak.handle).expect("flush AK");
    r.node.flush(ek.handle).expect("flush EK");
    // Reference values: the PCRs this boot produced.
    let pcrs = finish.pcr_values().expect("pcrs");
    for (i, v) in &pcrs {
        verifier.policy.allow(
            &release(),
            *i,
            vec![v.clone().try_into().expect("32 bytes")],
        );
    }
    let t = Instant::now();
    let evidence = verifier
        .verify_finish(&session, &finish, OffsetDateTime::now_utc())
        .expect("finish verifies");
    eprintln!("{ek_alg:?}/{ak_alg:?}: verify_finish in {:?}", t.elapsed());
    assert_eq!(evidence.event_count, Some(5));
    Run {
        verifier,
        start,
        session,
        finish,
    }
}

fn finish_err(run: &Run, f: &protocol::FinishRequest) -> VerifyError {
    run.verifier
        .verify_finish(&run.session, f, OffsetDateTime::now_utc())
        .expect_err("must be rejected")
}

#[test]
fn rsa_ek_round_trip_and_rejections() {
    let Some(mut r) = rig() else { return };
    let run = run(&mut r, EkAlg::Rsa2048, AkAlg::EccP256);

    // Tampered event log: one digest changed.
    let mut f = run.finish.clone();
    let mut log = f.event_log.clone().expect("log").into_inner();
    let n = log.len();
    log[n - 20] ^= 0x01; // inside the last event's data -> parse ok; digest is what we flip next
    let mut log2 = EventLogBuilder::new();
    log2.measure(0, 1, b"firmware volume");
    log2.measure(4, 1, b"something else");
    f.event_log = Some(B64(log2.finish()));
    let e = finish_err(&run, &f);
    assert_eq!(e.code(), RejectCode::EventLogReplay, "{e}");

    // Garbage event log.
    f.event_log = Some(B64(vec![1, 2, 3]));
    assert_eq!(finish_err(&run, &f).code(), RejectCode::EventLogMalformed);

    // PCR value not in policy.
    let mut v = run.verifier.clone();
    v.policy.allow(&release(), 7, vec![[0xaa; 32]]);
    let e = v
        .verify_finish(&run.session, &run.finish, OffsetDateTime::now_utc())
        .expect_err("policy");
    assert_eq!(e.code(), RejectCode::PcrPolicy, "{e}");

    // Unknown release.
    let mut s = run.session.clone();
    s.release.version = "0.0.0".into();
    let e = run
        .verifier
        .verify_finish(&s, &run.finish, OffsetDateTime::now_utc())
        .expect_err("release");
    assert_eq!(e.code(), RejectCode::UnknownRelease);

    // Wrong nonce: the session expected another nonce. The session keeps
    // only the hash of the proof fixed at challenge time, so the proof
    // passes and the quote, made over the real nonce, is refused.
    let mut s = run.session.clone();
    s.nonce.0[0] ^= 1;
    let e = run
        .verifier
        .verify_finish(&s, &run.finish, OffsetDateTime::now_utc())
        .expect_err("nonce");
    assert_eq!(e.code(), RejectCode::QuoteNonce, "{e}");

    // Expired session.
    let e = run
        .verifier
        .verify_finish(&run.session, &run.finish, run.session.expires_at)
        .expect_err("expired");
    assert_eq!(e.code(), RejectCode::SessionExpired);

    // Secret from another session: proof over the right data with a wrong secret.
    let mut f = run.finish.clone();
    f.proof.0 = protocol::activation_proof(&[7; 32], &run.session.session_id, &run.session.nonce);
    assert_eq!(finish_err(&run, &f).code(), RejectCode::ActivationFailed);

    // PCR values that do not match the quote.
    let mut f = run.finish.clone();
    f.pcrs.insert(7, "00".repeat(32));
    assert_eq!(finish_err(&run, &f).code(), RejectCode::PcrDigest);
    let mut f = run.finish.clone();
    f.pcrs.remove(&14);
    assert_eq!(finish_err(&run, &f).code(), RejectCode::PcrDigest);

    // Tampered quote and signature.
    let mut f = run.finish.clone();
    let mut a = f.quote.attest.clone().into_inner();
    a[10] ^= 1;
    f.quote.attest = B64(a);
    assert_eq!(finish_err(&run, &f).code(), RejectCode::QuoteInvalid);

    // Untrusted CA: a verifier with no roots.
    let v = Verifier::default();
    let e = v.verify_start(&run.start).expect_err("untrusted");
    assert_eq!(e.code(), RejectCode::EkCertUntrusted, "{e}");
    // Only the root, without the intermediate that issued the EK cert.
    let mut v = Verifier::default();
    v.trust
        .add_roots_pem(&r.tpm.ca_root_pem().expect("root"))
        .expect("pem");
    assert_eq!(
        v.verify_start(&run.start).expect_err("no path").code(),
        RejectCode::EkCertUntrusted
    );

    // AK name mismatch.
    let mut s = run.start.clone();
    let mut name = s.ak_name.clone().into_inner();
    name[5] ^= 1;
    s.ak_name = B64(name);
    assert_eq!(
        run.verifier.verify_start(&s).expect_err("name").code(),
        RejectCode::AkNameMismatch
    );

    // EK not matching its certificate: the ECC EK with the RSA EK's certificate.
    let ecc = r.node.ek(EkAlg::EccP256).expect("ecc ek");
    let mut s = run.start.clone();
    s.ek_public = B64(ecc.public.clone());
    assert_eq!(
        run.verifier.verify_start(&s).expect_err("mismatch").code(),
        RejectCode::EkCertMismatch
    );

    // Truncated or garbage structures never panic and always fail.
    for n in 0..s.ak_public.len() {
        let mut s = run.start.clone();
        s.ak_public = B64(run.start.ak_public[..n].to_vec());
        assert!(
            run.verifier.verify_start(&s).is_err(),
            "AK public truncated to {n}"
        );
    }
    for n in 0..run.finish.quote.attest.len() {
        let mut f = run.finish.clone();
        f.quote.attest = B64(run.finish.quote.attest[..n].to_vec());
        assert!(run
            .verifier
            .verify_finish(&run.session, &f, OffsetDateTime::now_utc())
            .is_err());
        assert!(
            keel_attest::tpm2::attest::QuoteAttest::parse(&run.finish.quote.attest[..n]).is_err()
        );
    }
    for n in 0..run.start.ek_public.len() {
        let mut s = run.start.clone();
        s.ek_public = B64(run.start.ek_public[..n].to_vec());
        assert_eq!(
            run.verifier.verify_start(&s).expect_err("ek").code(),
            RejectCode::TpmStructure
        );
    }
}

#[test]
fn ecc_ek_round_trip_wrong_name_and_ak_reuse() {
    let Some(mut r) = rig() else { return };
    let run = run(&mut r, EkAlg::EccP256, AkAlg::EccP256);
    let ek = r.node.ek(EkAlg::EccP256).expect("EK");
    let ak_path = r.dir.path().join("ak.json");
    let ak = r
        .node
        .load_or_create_ak(&ek, &ak_path, AkAlg::EccP256)
        .expect("AK");
    assert!(!ak.created, "second call loads the stored AK");

    // A credential made for another name does not activate.
    let ek_pub = keel_attest::tpm2::public::TpmPublic::from_tpm2b(&ek.public).expect("ek");
    let mut wrong = ak.name.clone();
    wrong[3] ^= 1;
    let c = credential::make_credential(&ek_pub, &wrong, &[5; 32], &mut rand::thread_rng())
        .expect("make");
    assert!(r
        .node
        .activate_credential(&ek, &ak, &c.id_object, &c.encrypted_secret)
        .is_err());
    let c = credential::make_credential(&ek_pub, &ak.name, &[5; 32], &mut rand::thread_rng())
        .expect("make");
    assert_eq!(
        r.node
            .activate_credential(&ek, &ak, &c.id_object, &c.encrypted_secret)
            .expect("activate"),
        vec![5; 32]
    );

    // A quote over another nonce is refused as such (proof is right).
    let mut f = run.finish.clone();
    let qd = protocol::qualifying_data_for_csr(&[9; 32], CSR, &run.session.session_id).expect("qd");
    let q = r.node.quote(&ak, &qd, &PCRS).expect("quote");
    f.quote.attest = B64(q.attest);
    f.quote.signature = B64(q.signature);
    f.pcrs = protocol::encode_pcrs(&q.pcrs);
    assert_eq!(finish_err(&run, &f).code(), RejectCode::QuoteNonce);
    // A quote over a different PCR set.
    let good_qd =
        protocol::qualifying_data_for_csr(&run.session.nonce, CSR, &run.session.session_id)
            .expect("qd");
    let q = r.node.quote(&ak, &good_qd, &[0, 4, 7]).expect("quote");
    f.quote.attest = B64(q.attest);
    f.quote.signature = B64(q.signature);
    f.pcrs = protocol::encode_pcrs(&q.pcrs);
    assert_eq!(finish_err(&run, &f).code(), RejectCode::PcrSelection);

    // Reboot: PCRs reset, the stored AK loads again with the same name.
    drop(r.node);
    r.tpm.restart().expect("restart swtpm");
    let mut node = NodeTpm::open(&r.tpm.tcti()).expect("reopen");
    let ek = node.ek(EkAlg::EccP256).expect("EK after reboot");
    let again = node
        .load_or_create_ak(&ek, &ak_path, AkAlg::EccP256)
        .expect("AK after reboot");
    assert!(!again.created);
    assert_eq!(again.name, ak.name);
    let pcrs: BTreeMap<u8, Vec<u8>> = node.read_pcrs(&[4]).expect("read");
    assert_eq!(pcrs[&4], vec![0; 32], "PCRs reset by the reboot");
}

#[test]
fn rsa_ak_and_non_restricted_ak() {
    let Some(mut r) = rig() else { return };
    run(&mut r, EkAlg::Rsa2048, AkAlg::Rsa2048);
    // A real TPM signing key that is not restricted: it could sign a forged
    // TPMS_ATTEST, so it must be refused as an AK.
    let ek = r.node.ek(EkAlg::Rsa2048).expect("EK");
    let ak = r
        .node
        .create_unrestricted_signing_key_for_tests(&ek)
        .expect("unrestricted key");
    let mut start = start_request(&ek, &ak, &input());
    start.ek_cert = ek.cert.clone().map(B64);
    let v = Verifier {
        trust: r.trust.clone(),
        ..Verifier::default()
    };
    let e = v.verify_start(&start).expect_err("non-restricted AK");
    assert_eq!(e.code(), RejectCode::AkAttributes, "{e}");
}

#[test]
fn ecc_p384_ek_with_certificate_round_trip() {
    let Some(mut r) = rig() else { return };
    let run = run(&mut r, EkAlg::EccP384, AkAlg::EccP256);
    assert!(run.start.ek_cert.is_some());
}
