//! Wire-format and binding tests for the protocol messages.

use super::*;

const CSR: &[u8] = include_bytes!("../../tests/fixtures/node-csr.der");
const CSR_SPKI: &[u8] = include_bytes!("../../tests/fixtures/node-csr-spki.der");

fn start() -> StartRequest {
    StartRequest {
        version: PROTOCOL_VERSION,
        ek_public: B64(vec![0, 2, 1, 2]),
        ek_cert: None,
        ak_public: B64(vec![0, 1, 9]),
        ak_name: B64(vec![0, 11, 1]),
        token: Some("tok".into()),
        csr: B64(CSR.to_vec()),
        claims: NodeClaims {
            hostname: "store-042-a".into(),
            machine_id: "0123456789abcdef0123456789abcdef".into(),
            store_id: "store-042".into(),
            release: ReleaseRef {
                name: "store-node".into(),
                version: "2026.11.1".into(),
            },
        },
    }
}

#[test]
fn start_request_roundtrips_and_is_kebab_case() {
    let s = start();
    let j = serde_json::to_value(&s).unwrap();
    assert!(j.get("ek-public").is_some());
    assert!(
        j.get("ek-cert").is_none(),
        "absent optional fields are omitted"
    );
    assert_eq!(
        j["claims"]["machine-id"],
        "0123456789abcdef0123456789abcdef"
    );
    let back: StartRequest = serde_json::from_value(j).unwrap();
    assert_eq!(back, s);
}

#[test]
fn unknown_fields_are_ignored_for_forward_compatibility() {
    let mut j = serde_json::to_value(start()).unwrap();
    j["some-future-field"] = serde_json::json!(1);
    assert!(serde_json::from_value::<StartRequest>(j).is_ok());
}

#[test]
fn challenge_and_decisions_roundtrip() {
    let c = Challenge {
        version: PROTOCOL_VERSION,
        session_id: "s1".into(),
        credential_blob: B64(vec![1; 10]),
        encrypted_secret: B64(vec![2; 10]),
        nonce: Bytes32([3; 32]),
        pcr_selection: PcrSelection {
            bank: PcrBank::Sha256,
            pcrs: vec![0, 2, 4, 7],
        },
        expires_at: OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
    };
    let r = StartResponse::Challenge(c);
    let j = serde_json::to_string(&r).unwrap();
    assert!(j.contains("\"expires-at\":\"2027-01-15T08:00:00Z\""), "{j}");
    assert_eq!(serde_json::from_str::<StartResponse>(&j).unwrap(), r);

    let d = Decision::Rejected {
        reason: RejectReason::new(RejectCode::PcrPolicy, "PCR 7 not allowed"),
    };
    let j = serde_json::to_value(&d).unwrap();
    assert_eq!(j["status"], "rejected");
    assert_eq!(j["reason"]["code"], "pcr-policy");
    assert_eq!(serde_json::from_value::<Decision>(j).unwrap(), d);

    let d = Decision::Pending {
        reason: "awaiting approval".into(),
        retry_after: 60,
    };
    let j = serde_json::to_value(&d).unwrap();
    assert_eq!(j["retry-after"], 60);
    assert_eq!(serde_json::from_value::<Decision>(j).unwrap(), d);

    let d = Decision::Admitted {
        node_id: "n1".into(),
        join: Box::new(JoinMaterial {
            identity: NodeIdentity {
                cert_chain_pem: "PEM".into(),
                ca_pem: None,
            },
            ceph: Some(CephJoin {
                fsid: "f".into(),
                mon_host: "127.0.0.1:6789".into(),
                conf: "[global]\n".into(),
                key_name: "client.keel-node-n1".into(),
                key: "SECRETKEY".into(),
                caps: [("mon".to_string(), "allow r".to_string())].into(),
            }),
            acme: None,
            gitops: None,
            enroll: Some(EnrollInfo {
                report_url: "https://enroll/v1/report".into(),
            }),
        }),
    };
    let j = serde_json::to_value(&d).unwrap();
    assert_eq!(j["node-id"], "n1");
    assert_eq!(j["join"]["ceph"]["key-name"], "client.keel-node-n1");
    assert!(
        !format!("{d:?}").contains("SECRETKEY"),
        "Debug must not show secrets"
    );
    assert_eq!(serde_json::from_value::<Decision>(j).unwrap(), d);
}

#[test]
fn finish_request_pcrs_are_hex_by_index() {
    let pcrs: BTreeMap<u8, Vec<u8>> = [(0u8, vec![0xab; 32]), (7, vec![0; 32])].into();
    let f = FinishRequest {
        version: PROTOCOL_VERSION,
        session_id: "s".into(),
        proof: Bytes32([0; 32]),
        quote: Quote {
            attest: B64(vec![1]),
            signature: B64(vec![2]),
        },
        pcrs: encode_pcrs(&pcrs),
        event_log: None,
    };
    let j = serde_json::to_value(&f).unwrap();
    assert_eq!(j["pcrs"]["0"], "ab".repeat(32));
    let back: FinishRequest = serde_json::from_value(j).unwrap();
    assert_eq!(back.pcr_values().unwrap(), pcrs);
    let mut bad = back.clone();
    bad.pcrs.insert(3, "zz".into());
    assert!(matches!(
        bad.pcr_values(),
        Err(ProtocolError::PcrHex { index: 3 })
    ));
}

#[test]
fn qualifying_data_binds_nonce_key_and_session() {
    assert_eq!(
        csr_public_key_der(CSR).unwrap(),
        CSR_SPKI,
        "SPKI equals openssl's"
    );
    let n = [9u8; 32];
    let q = qualifying_data_for_csr(&n, CSR, "session-1").unwrap();
    // Independent computation of the documented formula.
    let mut h = Sha256::new();
    h.update(n);
    h.update(Sha256::digest(CSR_SPKI));
    h.update(b"session-1");
    assert_eq!(q, <[u8; 32]>::from(h.finalize()));
    assert_ne!(q, qualifying_data(&[8; 32], CSR_SPKI, "session-1"));
    assert_ne!(q, qualifying_data(&n, b"other key", "session-1"));
    assert_ne!(q, qualifying_data(&n, CSR_SPKI, "session-2"));
    assert!(csr_public_key_der(&CSR[..CSR.len() - 1]).is_err());
    assert!(csr_public_key_der(b"garbage").is_err());
}

#[test]
fn activation_proof_checks() {
    let n = [1u8; 32];
    let p = activation_proof(b"secret", "s", &n);
    assert!(verify_activation_proof(b"secret", "s", &n, &p));
    assert!(!verify_activation_proof(b"secreT", "s", &n, &p));
    assert!(!verify_activation_proof(b"secret", "t", &n, &p));
    assert!(!verify_activation_proof(b"secret", "s", &[2; 32], &p));
    let mut q = p;
    q[31] ^= 1;
    assert!(!verify_activation_proof(b"secret", "s", &n, &q));
}

/// The node-authenticated messages keep their exact wire form (kebab-case,
/// RFC 3339 time, base64 CSR): nodes already in the field send these bytes.
#[test]
fn report_and_renewal_wire_form() {
    let at = time::macros::datetime!(2026-11-23 10:20:30 UTC);
    let report = NodeReport {
        node_id: "store-042-a".into(),
        revision: "abc123".into(),
        status: "applied".into(),
        at,
    };
    let j = serde_json::to_string(&report).unwrap();
    assert_eq!(
        j,
        r#"{"node-id":"store-042-a","revision":"abc123","status":"applied","at":"2026-11-23T10:20:30Z"}"#
    );
    assert_eq!(serde_json::from_str::<NodeReport>(&j).unwrap(), report);

    let renew = RenewRequest {
        node_id: "store-042-a".into(),
        csr: B64(vec![1, 2, 3]),
        at,
    };
    let j = serde_json::to_string(&renew).unwrap();
    assert_eq!(
        j,
        r#"{"node-id":"store-042-a","csr":"AQID","at":"2026-11-23T10:20:30Z"}"#
    );
    assert_eq!(serde_json::from_str::<RenewRequest>(&j).unwrap(), renew);

    let resp = RenewResponse {
        identity: NodeIdentity {
            cert_chain_pem: "CHAIN".into(),
            ca_pem: None,
        },
    };
    let j = serde_json::to_string(&resp).unwrap();
    assert_eq!(j, r#"{"identity":{"cert-chain-pem":"CHAIN"}}"#);
    assert_eq!(serde_json::from_str::<RenewResponse>(&j).unwrap(), resp);
    assert_eq!(
        (REPORT_PATH, RENEW_PATH, CRL_PATH),
        ("/v1/nodes/report", "/v1/nodes/renew", "/v1/crl")
    );
    assert_eq!(
        (CERT_HEADER, SIGNATURE_HEADER),
        ("x-keel-node-cert", "x-keel-signature")
    );
}
