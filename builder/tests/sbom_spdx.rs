//! The SPDX 2.3 document `keel sbom` writes for a tree holding a real
//! captured dpkg database passes the official SPDX validator (`pyspdxtools`,
//! PyPI spdx-tools, installed by ./setup.sh).

mod support;

use std::process::Command;

use keel_builder::sbom;
use keel_cmd::CommandRunExt as _;

#[path = "../src/sbom/tests/tree.rs"]
mod tree;

#[test]
fn spdx_document_passes_the_official_validator() {
    if support::skip_without("spdx validation", "pyspdxtools") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (root, publish) = (dir.path().join("root"), dir.path().join("out"));
    tree::tree(&root);
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("sbom")
        .arg("--root")
        .arg(&root)
        .arg("--out")
        .arg(&publish)
        .args(["--image-name", "test-tiny", "--image-version", "1.0"])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .run()
        .expect("keel sbom");
    let spdx = publish.join(sbom::SPDX_FILE);
    assert!(
        root.join(sbom::SBOM_DIR).join(sbom::SPDX_FILE).is_file(),
        "the SBOM also went into the tree"
    );
    let out = Command::new("pyspdxtools")
        .arg("-i")
        .arg(&spdx)
        .run_get_string();
    assert!(
        out.is_ok(),
        "pyspdxtools rejected the SPDX document: {out:?}"
    );
}
