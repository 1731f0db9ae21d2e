//! Table tests for parsing and validating manifests.

use super::*;

const D: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn sample() -> Manifest {
    let mut pcrs = BTreeMap::new();
    pcrs.insert(
        11,
        PcrExpectation {
            bank: "sha256".into(),
            value: Some(D.replace('0', "a")),
            source: PcrSource::Predicted,
            phases: BTreeMap::from([("enter-initrd".into(), D.replace('0', "b"))]),
            components: vec![PcrComponent {
                what: ".linux".into(),
                sha256: D.into(),
            }],
            assumptions: None,
        },
    );
    pcrs.insert(
        7,
        PcrExpectation {
            bank: "sha256".into(),
            value: None,
            source: PcrSource::ReferenceBoot,
            phases: BTreeMap::new(),
            components: vec![],
            assumptions: Some("secure boot state".into()),
        },
    );
    Manifest {
        format_version: FORMAT_VERSION,
        image: Image {
            name: "store-node".into(),
            version: "1.2.3".into(),
        },
        build: Build {
            definition_sha256: D.into(),
            lock_sha256: None,
            source_date_epoch: 1_700_000_000,
            mkosi_version: "24.3".into(),
            keel_version: "0.1.0".into(),
        },
        artifacts: vec![Artifact {
            name: "store-node.raw".into(),
            size: 42,
            sha256: D.into(),
        }],
        sboms: vec![Sbom {
            format: "spdx-2.3".into(),
            path: "/usr/share/keel/sbom/sbom.spdx.json".into(),
            sha256: D.into(),
        }],
        verity_roothash: Some("ab".repeat(32)),
        pcrs,
    }
}

#[test]
fn round_trip() {
    let m = sample();
    let text = m.to_json();
    assert!(text.contains("\"format-version\": 1"), "{text}");
    assert_eq!(parse(&text).expect("parses"), m);
}

#[test]
fn rejects_bad_manifests() {
    type Edit = fn(&mut serde_json::Value);
    let cases: &[(&str, Edit, &str)] = &[
        (
            "future version",
            |v| v["format-version"] = 2.into(),
            "not supported",
        ),
        ("unknown field", |v| v["extra"] = 1.into(), "unknown field"),
        (
            "uppercase digest",
            |v| v["artifacts"][0]["sha256"] = D.replace('0', "A").into(),
            "hex",
        ),
        (
            "short digest",
            |v| v["build"]["definition-sha256"] = "abc".into(),
            "definition",
        ),
        (
            "path in name",
            |v| v["artifacts"][0]["name"] = "../x".into(),
            "plain file name",
        ),
        (
            "duplicate artifact",
            |v| {
                let a = v["artifacts"][0].clone();
                v["artifacts"].as_array_mut().expect("array").push(a);
            },
            "twice",
        ),
        (
            "predicted without value",
            |v| v["pcrs"]["11"]["value"] = serde_json::Value::Null,
            "needs a value",
        ),
        (
            "pcr out of range",
            |v| {
                let p = v["pcrs"]["11"].clone();
                v["pcrs"]["24"] = p;
            },
            "0-23",
        ),
        (
            "sha1 bank",
            |v| v["pcrs"]["11"]["bank"] = "sha1".into(),
            "sha256",
        ),
        (
            "missing field",
            |v| {
                v["image"]
                    .as_object_mut()
                    .expect("object")
                    .remove("version");
            },
            "version",
        ),
        (
            "relative sbom path",
            |v| v["sboms"][0]["path"] = "usr/x".into(),
            "sbom",
        ),
    ];
    for (name, edit, want) in cases {
        let mut v = serde_json::to_value(sample()).expect("to value");
        edit(&mut v);
        let err = parse(&v.to_string()).expect_err(name).to_string();
        assert!(err.contains(want), "{name}: {err}");
    }
    assert!(matches!(parse("not json"), Err(ManifestError::Json(_))));
}

mod signatures {
    use crate::signature::{load_verified, public_key_from_pem, verify_blob, SignatureError};
    use base64::Engine as _;
    use p256::ecdsa::signature::Signer as _;
    use p256::ecdsa::{Signature, SigningKey};
    use p256::pkcs8::{EncodePublicKey as _, LineEnding};

    fn signed(key: &SigningKey, data: &[u8]) -> String {
        let sig: Signature = key.sign(data);
        base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes())
    }

    #[test]
    fn blob_signatures_are_checked_and_every_alteration_refused() {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let other = SigningKey::random(&mut rand::rngs::OsRng);
        let vk = *key.verifying_key();
        let sig = signed(&key, b"release");
        verify_blob(&vk, b"release", &sig).expect("good");
        verify_blob(&vk, b"release\n", &format!("{sig}\n")).expect_err("tampered data");
        assert!(matches!(
            verify_blob(&vk, b"release", &signed(&other, b"release")),
            Err(SignatureError::Mismatch)
        ));
        assert!(matches!(
            verify_blob(&vk, b"release", "%%%"),
            Err(SignatureError::Base64)
        ));
        assert!(matches!(
            verify_blob(&vk, b"release", "AAAA"),
            Err(SignatureError::Der)
        ));
        let pem = vk.to_public_key_pem(LineEnding::LF).expect("pem");
        assert_eq!(public_key_from_pem(&pem, "k").expect("pem key"), vk);
        assert!(matches!(
            public_key_from_pem(
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                "k"
            ),
            Err(SignatureError::Key(_))
        ));
    }

    #[test]
    fn load_verified_parses_exactly_the_signed_bytes() {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let t = tempfile::tempdir().expect("tmp");
        let f = t.path().join("m.json");
        let text = serde_json::to_string(&super::sample()).expect("json");
        std::fs::write(&f, &text).expect("write");
        std::fs::write(t.path().join("m.json.sig"), signed(&key, text.as_bytes())).expect("sig");
        let m = load_verified(&f, key.verifying_key()).expect("verified");
        assert_eq!(m, super::sample());
        std::fs::write(&f, text.replace("1.2.3", "1.2.4")).expect("tamper");
        let e = load_verified(&f, key.verifying_key()).expect_err("tampered");
        assert!(e.to_string().contains("does not match"), "{e}");
        std::fs::remove_file(t.path().join("m.json.sig")).expect("rm");
        let e = load_verified(&f, key.verifying_key()).expect_err("no sig");
        assert!(e.to_string().contains("m.json.sig"), "{e}");
    }
}
