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
