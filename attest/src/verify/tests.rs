//! Table tests for the pure verifier parts: EK certificate paths and NV
//! framing, event log parsing and replay, PCR policy files and manifests.

use std::collections::BTreeMap;

use super::ekcert::{trim_nv_cert, validate_ek_cert, EkCertError, TrustStore};
use super::eventlog::{initial_value, EventLog, EventLogBuilder, EventLogError, EV_NO_ACTION};
use super::policy::{PcrPolicy, PolicyError};
use crate::protocol::ReleaseRef;

const ROOT: &str = include_str!("../../tests/fixtures/ekca/root.pem");
const INT: &str = include_str!("../../tests/fixtures/ekca/int.pem");
const OTHER_ROOT: &str = include_str!("../../tests/fixtures/ekca/other-root.pem");
const LEAF: &[u8] = include_bytes!("../../tests/fixtures/ekca/leaf.der");

fn store(roots: &[&str], ints: &[&str]) -> TrustStore {
    let mut t = TrustStore::default();
    for r in roots {
        t.add_roots_pem(r).unwrap();
    }
    for i in ints {
        t.add_intermediates_pem(i).unwrap();
    }
    t
}

#[test]
fn ek_cert_paths() {
    // ECDSA root -> RSA intermediate -> leaf.
    assert!(validate_ek_cert(LEAF, &store(&[ROOT], &[INT])).is_ok());
    // The intermediate configured as a root anchor also works.
    assert!(validate_ek_cert(LEAF, &store(&[INT], &[])).is_ok());
    for (what, t) in [
        ("no anchors", store(&[], &[])),
        ("root without intermediate", store(&[ROOT], &[])),
        (
            "same-name root with another key",
            store(&[OTHER_ROOT], &[INT]),
        ),
    ] {
        let e = validate_ek_cert(LEAF, &t).expect_err(what);
        assert!(matches!(e, EkCertError::Untrusted { .. }), "{what}: {e}");
    }
    // A tampered certificate does not verify.
    let mut bad = LEAF.to_vec();
    let n = bad.len();
    bad[n - 70] ^= 1;
    assert!(validate_ek_cert(&bad, &store(&[ROOT], &[INT])).is_err());
}

#[test]
fn nv_framing_is_trimmed() {
    let mut padded = LEAF.to_vec();
    padded.extend_from_slice(&[0xff; 37]);
    let mut headed = vec![0x10, 0x01, 0x00, 0x02, 0x5b];
    headed.extend_from_slice(LEAF);
    headed.extend_from_slice(&[0; 8]);
    for (what, raw, ok) in [
        ("exact", LEAF.to_vec(), true),
        ("0xff padding", padded, true),
        ("TCG header and zero padding", headed, true),
        ("truncated", LEAF[..LEAF.len() - 1].to_vec(), false),
        ("garbage", vec![1, 2, 3], false),
        ("empty", vec![], false),
    ] {
        match trim_nv_cert(&raw) {
            Ok(d) => {
                assert!(ok, "{what} should fail");
                assert_eq!(d, LEAF, "{what}");
            }
            Err(_) => assert!(!ok, "{what} should trim"),
        }
    }
    let mut padded = LEAF.to_vec();
    padded.extend_from_slice(&[0; 100]);
    assert!(validate_ek_cert(&padded, &store(&[ROOT], &[INT])).is_ok());
}

#[test]
fn trust_store_loads_a_directory() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("root.pem"), ROOT).unwrap();
    std::fs::write(d.path().join("int.crt"), INT).unwrap();
    std::fs::write(d.path().join("README"), "not a cert").unwrap();
    let t = TrustStore::load_dir(d.path()).unwrap();
    assert_eq!(t.root_count(), 1);
    assert!(validate_ek_cert(LEAF, &t).is_ok());
}

#[test]
fn event_log_parse_and_replay() {
    let mut b = EventLogBuilder::new();
    let d1 = b.measure(0, 8, b"a");
    let d2 = b.measure(7, 0x8000_00e0, b"b");
    b.event(4, EV_NO_ACTION, [9; 32], b"ignored");
    let d3 = b.measure(0, 8, b"c");
    let log = EventLog::parse(&b.finish()).unwrap();
    assert_eq!(log.events.len(), 4);
    let r = log.replay();
    let ext = |cur: [u8; 32], d: [u8; 32]| -> [u8; 32] {
        crate::tpm2::HashAlg::Sha256
            .digest(&[&cur, &d])
            .try_into()
            .unwrap()
    };
    assert_eq!(r[&0], ext(ext([0; 32], d1), d3));
    assert_eq!(r[&7], ext([0; 32], d2));
    assert!(!r.contains_key(&4), "EV_NO_ACTION is not extended");
    assert_eq!(initial_value(17, 0), [0xff; 32]);
    assert_eq!(initial_value(0, 3)[31], 3);
}

#[test]
fn pcr11_may_carry_boot_phases_the_log_cannot_have() {
    use crate::verify::eventlog::{explains, PCRPHASES};
    let ext = |cur: [u8; 32], d: &[u8]| -> [u8; 32] {
        let h: [u8; 32] = crate::tpm2::HashAlg::Sha256
            .digest(&[d])
            .try_into()
            .unwrap();
        crate::tpm2::HashAlg::Sha256
            .digest(&[&cur, &h])
            .try_into()
            .unwrap()
    };
    let logged = ext([0; 32], b".linux section");
    assert_eq!(explains(11, &logged, &logged), Some(vec![]));
    let mut cur = logged;
    for (i, p) in PCRPHASES.iter().enumerate() {
        cur = ext(cur, p.as_bytes());
        assert_eq!(explains(11, &logged, &cur), Some(PCRPHASES[..=i].to_vec()));
    }
    // Out of order, repeated, unknown or past the last phase: not explained.
    let skipped = ext(logged, b"leave-initrd");
    assert_eq!(explains(11, &logged, &skipped), None);
    assert_eq!(explains(11, &logged, &ext(cur, b"ready")), None);
    assert_eq!(explains(11, &logged, &ext(logged, b"shutdown")), None);
    // Only PCR 11 gets this: any other PCR must replay exactly.
    assert_eq!(explains(4, &logged, &ext(logged, b"enter-initrd")), None);
}

#[test]
fn event_log_startup_locality() {
    let mut b = EventLogBuilder::new();
    let mut data = b"StartupLocality\0".to_vec();
    data.push(3);
    b.event(0, EV_NO_ACTION, [0; 32], &data);
    let d = b.measure(0, 8, b"x");
    let log = EventLog::parse(&b.finish()).unwrap();
    assert_eq!(log.startup_locality, 3);
    let mut init = [0u8; 32];
    init[31] = 3;
    let want: [u8; 32] = crate::tpm2::HashAlg::Sha256
        .digest(&[&init, &d])
        .try_into()
        .unwrap();
    assert_eq!(log.replay()[&0], want);
}

#[test]
fn event_log_errors() {
    let mut b = EventLogBuilder::new();
    b.measure(0, 8, b"abc");
    let good = b.finish();
    for n in 0..good.len() {
        if n == 0 {
            continue;
        }
        // Cutting inside the header or an event is an error; cutting exactly
        // between events yields a shorter valid log.
        let r = EventLog::parse(&good[..n]);
        if let Ok(l) = r {
            assert!(l.events.is_empty(), "cut at {n}");
        }
    }
    assert!(matches!(
        EventLog::parse(&[0; 32]),
        Err(EventLogError::NotCryptoAgile | EventLogError::Truncated(_))
    ));
    // An event for PCR 30.
    let mut b = EventLogBuilder::new();
    b.measure(30, 8, b"x");
    assert!(matches!(
        EventLog::parse(&b.finish()),
        Err(EventLogError::Invalid(_))
    ));
    // An event with an undeclared algorithm.
    let mut raw = EventLogBuilder::new().finish();
    raw.extend_from_slice(&0u32.to_le_bytes());
    raw.extend_from_slice(&8u32.to_le_bytes());
    raw.extend_from_slice(&1u32.to_le_bytes());
    raw.extend_from_slice(&0x0004u16.to_le_bytes());
    assert!(matches!(
        EventLog::parse(&raw),
        Err(EventLogError::UnknownAlgorithm { .. })
    ));
}

fn rel(v: &str) -> ReleaseRef {
    ReleaseRef {
        name: "store-node".into(),
        version: v.into(),
    }
}

#[test]
fn policy_file_table() {
    let a = "aa".repeat(32);
    let b = "bb".repeat(32);
    let good = format!("[[release]]\nname = \"store-node\"\nversion = \"1\"\n[release.pcrs]\n7 = [\"{a}\", \"{b}\"]\n0 = [\"{a}\"]\n");
    let p = PcrPolicy::parse(&good).unwrap();
    assert_eq!(p.pcrs_for(&rel("1")), Some(vec![0, 7]));
    let pcrs: BTreeMap<u8, Vec<u8>> =
        [(0u8, vec![0xaa; 32]), (7, vec![0xbb; 32]), (4, vec![1; 32])].into();
    assert!(p.evaluate(&rel("1"), &pcrs).is_ok());
    let mut wrong = pcrs.clone();
    wrong.insert(7, vec![0xcc; 32]);
    assert!(matches!(
        p.evaluate(&rel("1"), &wrong),
        Err(PolicyError::NotAllowed { pcr: 7, .. })
    ));
    let mut missing = pcrs.clone();
    missing.remove(&0);
    assert!(matches!(
        p.evaluate(&rel("1"), &missing),
        Err(PolicyError::NotQuoted(0))
    ));
    assert!(matches!(
        p.evaluate(&rel("2"), &pcrs),
        Err(PolicyError::UnknownRelease { .. })
    ));

    for (what, text) in [
        (
            "bad index",
            format!("[[release]]\nname=\"n\"\nversion=\"1\"\n[release.pcrs]\n24 = [\"{a}\"]\n"),
        ),
        (
            "not hex",
            "[[release]]\nname=\"n\"\nversion=\"1\"\n[release.pcrs]\n1 = [\"zz\"]\n".to_string(),
        ),
        (
            "short digest",
            "[[release]]\nname=\"n\"\nversion=\"1\"\n[release.pcrs]\n1 = [\"abcd\"]\n".to_string(),
        ),
        (
            "unknown field",
            "[[release]]\nname=\"n\"\nversion=\"1\"\nextra=1\n[release.pcrs]\n".to_string(),
        ),
        ("not toml", "[[".to_string()),
    ] {
        assert!(
            matches!(PcrPolicy::parse(&text), Err(PolicyError::Parse(_))),
            "{what}"
        );
    }
}

#[test]
fn policy_from_manifest() {
    let a = "aa".repeat(32);
    let b = "bb".repeat(32);
    let json = serde_json::json!({
        "format-version": 1,
        "image": {"name": "store-node", "version": "3"},
        "build": {"definition-sha256": a, "lock-sha256": null, "source-date-epoch": 0,
                  "mkosi-version": "24.3", "keel-version": "0.1.0"},
        "artifacts": [],
        "sboms": [],
        "verity-roothash": null,
        "pcrs": {
            "11": {"bank": "sha256", "value": a, "source": "predicted", "phases": {"sysinit": b}},
            "7": {"bank": "sha256", "value": null, "source": "reference-boot"}
        }
    });
    let m = keel_manifest::parse(&json.to_string()).unwrap();
    let mut p = PcrPolicy::default();
    p.add_manifest(&m).unwrap();
    assert_eq!(
        p.pcrs_for(&rel("3")),
        Some(vec![11]),
        "PCR 7 awaits a reference boot"
    );
    for (v, ok) in [(0xaa, true), (0xbb, true), (0xcc, false)] {
        let pcrs: BTreeMap<u8, Vec<u8>> = [(11u8, vec![v; 32])].into();
        assert_eq!(p.evaluate(&rel("3"), &pcrs).is_ok(), ok, "{v:x}");
    }
}

#[test]
fn policy_fails_closed() {
    // A policy-file release without constrained PCRs is refused at load.
    let text = "[[release]]\nname = \"store-node\"\nversion = \"1\"\n[release.pcrs]\n";
    assert!(matches!(
        PcrPolicy::parse(text),
        Err(PolicyError::Unconstrained { .. })
    ));
    let empty = "[[release]]\nname=\"n\"\nversion=\"1\"\n[release.pcrs]\n7 = []\n";
    assert!(matches!(
        PcrPolicy::parse(empty),
        Err(PolicyError::Parse(_))
    ));
    // A manifest whose every PCR awaits a reference boot is refused too.
    let json = serde_json::json!({
        "format-version": 1,
        "image": {"name": "store-node", "version": "4"},
        "build": {"definition-sha256": "aa".repeat(32), "lock-sha256": null, "source-date-epoch": 0,
                  "mkosi-version": "24.3", "keel-version": "0.1.0"},
        "artifacts": [], "sboms": [], "verity-roothash": null,
        "pcrs": {"7": {"bank": "sha256", "value": null, "source": "reference-boot"}}
    });
    let m = keel_manifest::parse(&json.to_string()).unwrap();
    let mut p = PcrPolicy::default();
    assert!(matches!(
        p.add_manifest(&m),
        Err(PolicyError::Unconstrained { .. })
    ));
    assert!(!p.knows(&rel("4")));
    assert_eq!(p.selection_for(&rel("4")), None);
    // The selection adds firmware (0) and Secure Boot (7) to what is constrained.
    let a = "aa".repeat(32);
    let p = PcrPolicy::parse(&format!(
        "[[release]]\nname=\"store-node\"\nversion=\"5\"\n[release.pcrs]\n11 = [\"{a}\"]\n4 = [\"{a}\"]\n"
    ))
    .unwrap();
    assert_eq!(p.selection_for(&rel("5")), Some(vec![0, 4, 7, 11]));
}
