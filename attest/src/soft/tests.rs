//! The production verifier against the software TPM: full round trips and
//! adversarial structures, no swtpm needed.

use std::collections::BTreeMap;
use std::time::Duration;

use time::OffsetDateTime;

use super::*;
use crate::protocol::{PcrBank, PcrSelection, RejectCode, ReleaseRef};
use crate::tpm2::attest::QuoteAttest;
use crate::tpm2::public::TpmPublic;
use crate::verify::eventlog::EventLogBuilder;
use crate::verify::Verifier;

const CSR: &[u8] = include_bytes!("../../tests/fixtures/node-csr.der");

fn release() -> ReleaseRef {
    ReleaseRef {
        name: "store-node".into(),
        version: "1".into(),
    }
}

fn claims() -> NodeClaims {
    NodeClaims {
        hostname: "h".into(),
        machine_id: "m".into(),
        store_id: "s".into(),
        release: release(),
    }
}

struct Case {
    v: Verifier,
    tpm: SoftTpm,
    session: crate::verify::SessionSecrets,
    ch: Challenge,
    log: Vec<u8>,
}

fn setup(tpm: SoftTpm) -> Case {
    let mut tpm = tpm;
    let mut log = EventLogBuilder::new();
    for (pcr, data) in [(0u8, &b"fw"[..]), (7, b"sb"), (4, b"uki")] {
        let d = log.measure(u32::from(pcr), 1, data);
        tpm.extend(pcr, &d);
    }
    let mut v = Verifier {
        require_event_log: true,
        ..Verifier::default()
    };
    for p in [0u8, 4, 7] {
        v.policy.allow(&release(), p, vec![tpm.pcrs[&p]]);
    }
    let start = tpm.start_request(CSR, None, claims());
    let ev = v.verify_start(&start).unwrap();
    assert!(!ev.ek_certified);
    let sel = PcrSelection {
        bank: PcrBank::Sha256,
        pcrs: vec![0, 4, 7],
    };
    let (ch, session) = v
        .challenge(
            &ev,
            "sid".into(),
            sel,
            release(),
            OffsetDateTime::now_utc() + Duration::from_secs(30),
            &mut rand::thread_rng(),
        )
        .unwrap();
    Case {
        v,
        tpm,
        session,
        ch,
        log: log.finish(),
    }
}

fn finish(
    c: &Case,
    f: &FinishRequest,
) -> Result<crate::verify::FinishEvidence, crate::verify::VerifyError> {
    c.v.verify_finish(&c.session, f, OffsetDateTime::now_utc())
}

#[test]
fn ecc_and_rsa_round_trips() {
    let mut rng = rand::thread_rng();
    for tpm in [
        SoftTpm::new_ecc(&mut rng),
        SoftTpm::new_rsa(&mut rng).unwrap(),
    ] {
        let c = setup(tpm);
        let f = c
            .tpm
            .answer(&c.ch, CSR, Some(c.log.clone()), &mut rng)
            .unwrap();
        let ev = finish(&c, &f).unwrap();
        assert_eq!(ev.event_count, Some(3));
        // The soft structures parse like a TPM's.
        let ak = TpmPublic::from_tpm2b(&c.tpm.ak.public_tpm2b()).unwrap();
        assert_eq!(ak.name(), c.tpm.ak.name());
    }
}

#[test]
fn adversarial_quotes_are_rejected() {
    let mut rng = rand::thread_rng();
    let c = setup(SoftTpm::new_ecc(&mut rng));
    let good = c
        .tpm
        .answer(&c.ch, CSR, Some(c.log.clone()), &mut rng)
        .unwrap();
    let pcrs = good.pcr_values().unwrap();
    let qd = protocol::qualifying_data_for_csr(&c.ch.nonce, CSR, "sid").unwrap();
    let resign = |a: QuoteAttest| {
        let mut f = good.clone();
        let bytes = a.marshal();
        f.quote.signature = B64(c.tpm.ak.sign(&bytes, &mut rand::thread_rng()).unwrap());
        f.quote.attest = B64(bytes);
        f
    };
    let cases: Vec<(&str, FinishRequest, RejectCode)> = vec![
        (
            "wrong magic",
            resign(QuoteAttest {
                magic: 0xdead_beef,
                ..c.tpm.ak.quote_attest(&qd, &pcrs)
            }),
            RejectCode::QuoteInvalid,
        ),
        (
            "wrong type",
            resign(QuoteAttest {
                attest_type: 0x8014,
                ..c.tpm.ak.quote_attest(&qd, &pcrs)
            }),
            RejectCode::QuoteInvalid,
        ),
        (
            "other nonce",
            resign(c.tpm.ak.quote_attest(&[0; 32], &pcrs)),
            RejectCode::QuoteNonce,
        ),
        (
            "quote without CSR binding",
            resign(c.tpm.ak.quote_attest(&c.ch.nonce.0, &pcrs)),
            RejectCode::QuoteNonce,
        ),
        (
            "fewer PCRs",
            resign(
                c.tpm.ak.quote_attest(
                    &qd,
                    &pcrs
                        .iter()
                        .filter(|(i, _)| **i != 7)
                        .map(|(i, v)| (*i, v.clone()))
                        .collect(),
                ),
            ),
            RejectCode::PcrSelection,
        ),
        (
            "bad digest",
            resign(QuoteAttest {
                pcr_digest: vec![0; 32],
                ..c.tpm.ak.quote_attest(&qd, &pcrs)
            }),
            RejectCode::PcrDigest,
        ),
    ];
    for (what, f, code) in cases {
        let e = finish(&c, &f).expect_err(what);
        assert_eq!(e.code(), code, "{what}: {e}");
    }
    // Signed by another key.
    let other = SoftAk::new_p256(&mut rng);
    let mut f = good.clone();
    f.quote.signature = B64(other.sign(&good.quote.attest, &mut rng).unwrap());
    assert_eq!(finish(&c, &f).unwrap_err().code(), RejectCode::QuoteInvalid);
    // Event log missing while required.
    let mut f = good.clone();
    f.event_log = None;
    assert_eq!(
        finish(&c, &f).unwrap_err().code(),
        RejectCode::EventLogMalformed
    );
}

#[test]
fn wrong_ak_and_wrong_name_fail() {
    let mut rng = rand::thread_rng();
    let tpm = SoftTpm::new_ecc(&mut rng);
    let v = Verifier::default();
    // Non-restricted, decrypt-capable and duplicable AKs.
    for (what, attrs) in [
        (
            "not restricted",
            tpm.ak.attributes & !crate::tpm2::public::attr::RESTRICTED,
        ),
        (
            "not fixedTPM",
            tpm.ak.attributes & !crate::tpm2::public::attr::FIXED_TPM,
        ),
        (
            "decrypt",
            tpm.ak.attributes | crate::tpm2::public::attr::DECRYPT,
        ),
        (
            "not sign",
            tpm.ak.attributes & !crate::tpm2::public::attr::SIGN,
        ),
    ] {
        let mut t = tpm.clone();
        t.ak.attributes = attrs;
        let e = v
            .verify_start(&t.start_request(CSR, None, claims()))
            .expect_err(what);
        assert_eq!(e.code(), RejectCode::AkAttributes, "{what}");
    }
    // A credential for another name does not activate.
    let ek = TpmPublic::from_tpm2b(&tpm.ek.public_tpm2b()).unwrap();
    let cred =
        crate::verify::credential::make_credential(&ek, b"\x00\x0bother", &[1; 32], &mut rng)
            .unwrap();
    assert!(tpm
        .ek
        .activate_credential(&tpm.ak.name(), &cred.id_object, &cred.encrypted_secret)
        .is_err());
    // ...nor for another EK.
    let other = SoftEk::new_p256(&mut rng);
    let cred = crate::verify::credential::make_credential(&ek, &tpm.ak.name(), &[1; 32], &mut rng)
        .unwrap();
    assert!(other
        .activate_credential(&tpm.ak.name(), &cred.id_object, &cred.encrypted_secret)
        .is_err());
    assert_eq!(
        tpm.ek
            .activate_credential(&tpm.ak.name(), &cred.id_object, &cred.encrypted_secret)
            .unwrap(),
        vec![1; 32]
    );
}

#[test]
fn every_truncation_and_byte_flip_errors_without_panic() {
    let mut rng = rand::thread_rng();
    let tpm = SoftTpm::new_ecc(&mut rng);
    let pcrs: BTreeMap<u8, Vec<u8>> = [(0u8, vec![0; 32]), (7, vec![1; 32])].into();
    let (attest, sig) = tpm.ak.quote(&[3; 32], &pcrs, &mut rng).unwrap();
    let ak = tpm.ak.public_tpm2b();
    let ek = tpm.ek.public_tpm2b();
    for n in 0..attest.len() {
        assert!(QuoteAttest::parse(&attest[..n]).is_err(), "attest[..{n}]");
    }
    for n in 0..ak.len() {
        assert!(TpmPublic::from_tpm2b(&ak[..n]).is_err(), "ak[..{n}]");
    }
    for n in 0..ek.len() {
        assert!(TpmPublic::from_tpm2b(&ek[..n]).is_err(), "ek[..{n}]");
    }
    for n in 0..sig.len() {
        assert!(
            crate::tpm2::signature::TpmSignature::parse(&sig[..n]).is_err(),
            "sig[..{n}]"
        );
    }
    // Extra bytes are refused too.
    let mut long = attest.clone();
    long.push(0);
    assert!(QuoteAttest::parse(&long).is_err());
    // Byte flips: parse may succeed or fail, but never panics; signature
    // verification of a flipped attest always fails.
    let akp = TpmPublic::from_tpm2b(&ak).unwrap();
    let s = crate::tpm2::signature::TpmSignature::parse(&sig).unwrap();
    for i in 0..attest.len() {
        let mut a = attest.clone();
        a[i] ^= 0x80;
        let _ = QuoteAttest::parse(&a);
        assert!(s.verify(&akp, &a).is_err(), "flip at {i}");
    }
    for i in 0..ak.len() {
        let mut a = ak.clone();
        a[i] ^= 0xff;
        let _ = TpmPublic::from_tpm2b(&a).map(|p| p.spki_der());
    }
    for blob in [&b""[..], b"\xff\xff", b"\x00\x10\x00\x00", &[0u8; 400]] {
        assert!(TpmPublic::from_tpm2b(blob).is_err());
        assert!(QuoteAttest::parse(blob).is_err());
        assert!(crate::verify::eventlog::EventLog::parse(blob).is_err());
    }
}
