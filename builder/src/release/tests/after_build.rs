//! Signing a build keeps the key password out of the process environment
//! (so mkosi and every other child cannot inherit it), and the release it
//! signs verifies.

use crate::release::sign::generate_key_pair;
use crate::release::verify::verify_dir;
use crate::release::{after_build, ReleaseContext};

const PW: &[u8] = b"correct horse";

#[test]
fn build_signing_keeps_the_password_out_of_the_environment() {
    for v in ["KEEL_KEY_PASSWORD", "KEEL_KEY_PASSWORD_FILE"] {
        assert!(
            std::env::var_os(v).is_none(),
            "{v} set in the test's environment"
        );
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("out");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("test-tiny.efi"), b"MZ not a real UKI").expect("write");
    let pw_file = tmp.path().join("password");
    std::fs::write(&pw_file, [PW, b"\n"].concat()).expect("write");
    let (key, pubkey) = generate_key_pair(&tmp.path().join("release"), PW).expect("keygen");
    let ctx = ReleaseContext {
        out_dir: dir.clone(),
        image_name: "test-tiny".into(),
        image_version: "1.0".into(),
        definition_sha256: "ab".repeat(32),
        lock_sha256: None,
        source_date_epoch: 1_700_000_000,
        mkosi_version: "24.3".into(),
        artifacts: vec![dir.join("test-tiny.efi")],
        uki: None,
        verity_roothash: None,
        sign_key: Some(key),
    };
    after_build(&ctx, Some(&pw_file)).expect("signed with the password from the file");
    assert!(
        std::env::var_os("KEEL_KEY_PASSWORD").is_none(),
        "signing put the password into the environment"
    );
    let report = verify_dir(&dir, &pubkey).expect("verify runs");
    assert!(report.ok, "{report:#?}");
    // No password anywhere: a clear error, nothing guessed.
    let e = after_build(&ctx, None).expect_err("no password");
    assert!(format!("{e:#}").contains("no key password"), "{e:#}");
}
