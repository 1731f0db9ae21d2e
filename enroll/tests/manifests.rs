//! keel-enroll trusts a release's reference values only from a manifest whose
//! cosign signature verifies against the configured release key. The
//! signatures here are made by the real `cosign sign-blob --key`; every
//! way of getting an unsigned or altered manifest in is refused, naming the
//! file.

use std::path::Path;
use std::process::Command;

use keel_cmd::CommandRunExt;
use keel_enroll::server::load_policy;
use keel_manifest::{Artifact, Build, Image, Manifest, PcrExpectation, PcrSource};

const D: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn manifest(version: &str) -> String {
    let mut pcrs = std::collections::BTreeMap::new();
    pcrs.insert(
        11,
        PcrExpectation {
            bank: "sha256".into(),
            value: Some("ab".repeat(32)),
            source: PcrSource::Predicted,
            phases: Default::default(),
            components: vec![],
            assumptions: None,
        },
    );
    let m = Manifest {
        format_version: keel_manifest::FORMAT_VERSION,
        image: Image {
            name: "store-node".into(),
            version: version.into(),
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
            size: 1,
            sha256: D.into(),
        }],
        sboms: vec![],
        verity_roothash: Some("cd".repeat(32)),
        pcrs,
    };
    serde_json::to_string_pretty(&m).expect("json")
}

fn cosign(dir: &Path) -> Command {
    let mut c = Command::new("cosign");
    c.current_dir(dir).env("COSIGN_PASSWORD", "pw");
    c
}

/// A key pair in `dir/NAME.key|pub`.
fn key_pair(dir: &Path, name: &str) {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).expect("mkdir");
    cosign(&d)
        .arg("generate-key-pair")
        .run()
        .expect("cosign generate-key-pair");
    for ext in ["key", "pub"] {
        std::fs::rename(
            d.join(format!("cosign.{ext}")),
            dir.join(format!("{name}.{ext}")),
        )
        .expect("move key");
    }
}

fn sign(dir: &Path, key: &str, file: &Path) {
    cosign(dir)
        .args(["sign-blob", "--yes", "--tlog-upload=false", "--key"])
        .arg(dir.join(format!("{key}.key")))
        .arg("--output-signature")
        .arg(format!("{}.sig", file.display()))
        .arg(file)
        .run()
        .expect("cosign sign-blob");
}

fn err(r: anyhow::Result<keel_attest::verify::policy::PcrPolicy>) -> String {
    format!("{:#}", r.expect_err("must be refused"))
}

#[test]
fn only_manifests_signed_by_the_release_key_are_loaded() {
    if keel_testbed::skip_unless(&["cosign"]) {
        return;
    }
    let t = tempfile::tempdir().expect("tmp");
    let d = t.path();
    key_pair(d, "release");
    key_pair(d, "other");
    let dir = d.join("manifests");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let good = dir.join("store-node-1.0.0.json");
    std::fs::write(&good, manifest("1.0.0")).expect("write");
    sign(d, "release", &good);
    let key = d.join("release.pub");

    // Signed by the release key: loaded.
    let p = load_policy(None, Some(&dir), Some(&key)).expect("signed manifest loads");
    assert!(
        format!("{p:?}").contains("1.0.0"),
        "the release is in the policy: {p:?}"
    );

    // A manifests directory without a key is refused: no unsigned trust.
    let e = err(load_policy(None, Some(&dir), None));
    assert!(e.contains("manifest-key"), "{e}");

    // Another key.
    let e = err(load_policy(None, Some(&dir), Some(&d.join("other.pub"))));
    assert!(
        e.contains("store-node-1.0.0.json") && e.contains("does not match"),
        "{e}"
    );

    // A second manifest signed by the other key is refused too.
    let foreign = dir.join("store-node-6.6.6.json");
    std::fs::write(&foreign, manifest("6.6.6")).expect("write");
    sign(d, "other", &foreign);
    let e = err(load_policy(None, Some(&dir), Some(&key)));
    assert!(
        e.contains("store-node-6.6.6.json") && e.contains("does not match"),
        "{e}"
    );
    std::fs::remove_file(&foreign).expect("rm");
    std::fs::remove_file(format!("{}.sig", foreign.display())).expect("rm");

    // Tampered after signing: one PCR value changed.
    let original = std::fs::read_to_string(&good).expect("read");
    std::fs::write(&good, original.replace(&"ab".repeat(32), &"ee".repeat(32))).expect("tamper");
    let e = err(load_policy(None, Some(&dir), Some(&key)));
    assert!(e.contains("does not match"), "{e}");
    std::fs::write(&good, &original).expect("restore");

    // Missing and malformed signatures.
    let sig = format!("{}.sig", good.display());
    let saved = std::fs::read_to_string(&sig).expect("sig");
    std::fs::remove_file(&sig).expect("rm sig");
    let e = err(load_policy(None, Some(&dir), Some(&key)));
    assert!(e.contains(".json.sig"), "{e}");
    std::fs::write(&sig, "not base64 !!").expect("garbage");
    let e = err(load_policy(None, Some(&dir), Some(&key)));
    assert!(e.contains("not base64"), "{e}");
    std::fs::write(&sig, "AAAA").expect("short");
    let e = err(load_policy(None, Some(&dir), Some(&key)));
    assert!(e.contains("DER"), "{e}");

    // A signed file that is not a manifest: the signature passes, the parse does not.
    std::fs::write(&sig, &saved).expect("restore sig");
    load_policy(None, Some(&dir), Some(&key)).expect("restored");
    let junk = dir.join("junk.json");
    std::fs::write(&junk, "{\"format-version\": 1}").expect("junk");
    sign(d, "release", &junk);
    let e = err(load_policy(None, Some(&dir), Some(&key)));
    assert!(e.contains("junk.json"), "{e}");
}
