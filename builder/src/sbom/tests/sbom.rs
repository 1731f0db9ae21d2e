//! SBOMs from a tree holding a real captured dpkg database: content checks
//! and the official CycloneDX 1.5 JSON schema. The official SPDX validator
//! (`pyspdxtools`) runs in `builder/tests/sbom_spdx.rs`.

use std::path::Path;

use serde_json::Value;

use super::tree::tree;
use crate::sbom::{self, finalize_tree_at, TreeContext};

fn ctx(root: &Path, publish: &Path) -> TreeContext {
    TreeContext {
        root: root.to_path_buf(),
        publish_dir: publish.to_path_buf(),
        image_name: "test-tiny".into(),
        image_version: "1.0".into(),
        distribution: "debian".into(),
        release: "bookworm".into(),
        architecture: "amd64".into(),
    }
}

fn read(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).expect("read")).expect("json")
}

fn cyclonedx_validator() -> jsonschema::Validator {
    let load = |s: &str| -> Value { serde_json::from_str(s).expect("schema json") };
    let bom = load(include_str!(
        "../testdata/schema/bom-1.5.SNAPSHOT.schema.json"
    ));
    let spdx = load(include_str!("../testdata/schema/spdx.SNAPSHOT.schema.json"));
    let jsf = load(include_str!(
        "../testdata/schema/jsf-0.82.SNAPSHOT.schema.json"
    ));
    jsonschema::options()
        .should_validate_formats(true)
        .with_resource(
            "http://cyclonedx.org/schema/spdx.SNAPSHOT.schema.json",
            jsonschema::Resource::from_contents(spdx).expect("res"),
        )
        .with_resource(
            "http://cyclonedx.org/schema/jsf-0.82.SNAPSHOT.schema.json",
            jsonschema::Resource::from_contents(jsf).expect("res"),
        )
        .build(&bom)
        .expect("schema compiles")
}

#[test]
fn finalize_writes_valid_sboms_into_tree_and_publish_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (root, publish) = (dir.path().join("root"), dir.path().join("out"));
    tree(&root);
    finalize_tree_at(&ctx(&root, &publish), Some(1_700_000_000)).expect("finalize");
    for name in [sbom::SPDX_FILE, sbom::CYCLONEDX_FILE] {
        let a = std::fs::read(root.join(sbom::SBOM_DIR).join(name)).expect("in image");
        let b = std::fs::read(publish.join(name)).expect("published");
        assert_eq!(a, b, "{name}: same bytes inside and beside the image");
    }
    // Reproducible: a second run gives identical bytes.
    let first = std::fs::read(publish.join(sbom::SPDX_FILE)).expect("read");
    finalize_tree_at(&ctx(&root, &publish), Some(1_700_000_000)).expect("finalize again");
    assert_eq!(
        first,
        std::fs::read(publish.join(sbom::SPDX_FILE)).expect("read")
    );
    let systemd_hash = check_cyclonedx(&read(&publish.join(sbom::CYCLONEDX_FILE)));
    check_spdx(&read(&publish.join(sbom::SPDX_FILE)), &systemd_hash);
}

/// Schema-valid, with the packages' purls, hashes and suppliers, the Keel
/// binary and the dependencies; returns systemd's `.deb` hash.
fn check_cyclonedx(cdx: &Value) -> Value {
    let v = cyclonedx_validator();
    let errors: Vec<String> = v
        .iter_errors(cdx)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "CycloneDX schema errors: {errors:#?}");
    assert_eq!(cdx["metadata"]["timestamp"], "2023-11-14T22:13:20Z");
    let comps = cdx["components"].as_array().expect("components");
    assert_eq!(comps.len(), 96, "95 packages + keel-bootstrap");
    let systemd = comps
        .iter()
        .find(|c| c["name"] == "systemd")
        .expect("systemd");
    assert_eq!(
        systemd["purl"],
        "pkg:deb/debian/systemd@252.39-1~deb12u2?arch=amd64&distro=debian-12"
    );
    assert_eq!(
        systemd["hashes"][0]["content"],
        "286f879c537bfba92e59d580c075ad20ab49020244c79634656850a306dd462b"
    );
    assert_eq!(systemd["supplier"]["name"], "Debian systemd Maintainers");
    let keel = comps
        .iter()
        .find(|c| c["name"] == "keel-bootstrap")
        .expect("keel binary");
    assert_eq!(
        keel["hashes"][0]["content"],
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            b"\x7fELF not really"
        ))
    );
    assert!(
        comps.iter().all(|c| c["name"] != "ls"),
        "only keel binaries are listed"
    );
    let deps = cdx["dependencies"].as_array().expect("deps");
    let sd = deps
        .iter()
        .find(|d| d["ref"] == systemd["bom-ref"])
        .expect("systemd deps");
    assert!(sd["dependsOn"].as_array().expect("array").iter().any(|d| d
        .as_str()
        .is_some_and(|s| s.starts_with("pkg:deb/debian/libc6@"))));

    // A broken document is rejected by the same validator (the check has teeth).
    let mut bad = cdx.clone();
    let i = comps
        .iter()
        .position(|c| c["name"] == "systemd")
        .expect("systemd");
    bad["components"][i]["hashes"][0]["alg"] = "SHA-999".into();
    assert!(!v.is_valid(&bad));
    systemd["hashes"][0]["content"].clone()
}

/// The same packages in SPDX: checksum, supplier, licenses, DEPENDS_ON.
fn check_spdx(spdx: &Value, systemd_hash: &Value) {
    assert_eq!(spdx["spdxVersion"], "SPDX-2.3");
    let pkgs = spdx["packages"].as_array().expect("packages");
    let sp = pkgs
        .iter()
        .find(|p| p["name"] == "systemd")
        .expect("systemd");
    assert_eq!(&sp["checksums"][0]["checksumValue"], systemd_hash);
    assert_eq!(sp["supplier"], "Organization: Debian systemd Maintainers (pkg-systemd-maintainers@lists.alioth.debian.org)");
    assert!(sp["licenseDeclared"]
        .as_str()
        .expect("lic")
        .contains("LGPL-2.1-or-later"));
    let bf = pkgs
        .iter()
        .find(|p| p["name"] == "base-files")
        .expect("base-files");
    assert_eq!(bf["licenseDeclared"], "NOASSERTION", "non-DEP-5 copyright");
    let rels = spdx["relationships"].as_array().expect("rels");
    assert!(rels
        .iter()
        .any(|r| r["relationshipType"] == "DEPENDS_ON" && r["spdxElementId"] == sp["SPDXID"]));
}

#[test]
fn finalize_refuses_a_tree_with_a_private_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (root, publish) = (dir.path().join("root"), dir.path().join("out"));
    tree(&root);
    std::fs::create_dir_all(root.join("etc/keel")).expect("mkdir");
    crate::release::sign::generate_key_pair(&root.join("etc/keel/release"), b"pw").expect("key");
    let err = finalize_tree_at(&ctx(&root, &publish), None).expect_err("must refuse");
    let msg = format!("{err:#}");
    assert!(msg.contains("/etc/keel/release.key"), "{msg}");
    assert!(
        msg.contains("cosign/sigstore encrypted private key"),
        "{msg}"
    );
    assert!(
        !publish.join(sbom::SPDX_FILE).exists(),
        "nothing published for a refused tree"
    );
}
