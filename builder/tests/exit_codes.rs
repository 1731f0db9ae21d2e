//! `keel`'s exit codes (docs/building-images.md#exit-codes), from the real
//! binary: 0 for a release that verifies, 3 when it was tampered with, 4 when
//! the release directory, its manifest or the key does not exist, 2 for a
//! usage error, 5 when `keel flash` refuses its target, 1 for anything else.
//!
//! The release is made the way a CI job would without mkosi: the key by
//! `keel key generate`, the manifest by the builder's own release code, the
//! signatures by `keel sign`. It embeds no SBOMs, so no disk tool is
//! needed and nothing is skipped (its "disk image" is plain bytes).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use keel_builder::exit::Code;
use keel_builder::release::{after_build, ReleaseContext, MANIFEST_FILE};

const PW: &str = "exit codes";

/// Runs `keel ARGS` with the key password in the environment.
fn keel(args: &[&Path]) -> (Output, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .env("KEEL_KEY_PASSWORD", PW)
        .env("CI", "true")
        .output()
        .expect("run keel");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o, text)
}

/// Asserts that `keel ARGS` exits with `code` and says `want`.
fn exits(args: &[&Path], code: Code, want: &str) {
    let (o, text) = keel(args);
    assert_eq!(
        o.status.code(),
        Some(i32::from(code.value())),
        "keel {args:?} should exit {code:?}:\n{text}"
    );
    assert!(text.contains(want), "missing {want:?} in:\n{text}");
}

/// A release directory signed with a fresh key: (temp dir, release, public key).
fn signed_release() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let prefix = tmp.path().join("release");
    exits(
        &[
            Path::new("key"),
            Path::new("generate"),
            Path::new("--out"),
            &prefix,
        ],
        Code::Success,
        "public key:",
    );
    let dir = tmp.path().join("out");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("tiny.efi"), b"MZ not a real UKI").expect("write");
    std::fs::write(dir.join("notes.txt"), b"release notes\n").expect("write");
    // A "disk image" of plain bytes: all `keel flash` looks at before writing.
    std::fs::write(dir.join("tiny.raw"), vec![0x5a; 64 << 10]).expect("write");
    after_build(
        &ReleaseContext {
            out_dir: dir.clone(),
            image_name: "tiny".into(),
            image_version: "1.0".into(),
            definition_sha256: "ab".repeat(32),
            lock_sha256: None,
            source_date_epoch: 1_700_000_000,
            mkosi_version: "24.3".into(),
            artifacts: vec![
                dir.join("tiny.raw"),
                dir.join("tiny.efi"),
                dir.join("notes.txt"),
            ],
            uki: None,
            verity_roothash: None,
            sign_key: None,
        },
        None,
    )
    .expect("manifest");
    let key = prefix.with_extension("key");
    exits(
        &[Path::new("sign"), &dir, Path::new("--key"), &key],
        Code::Success,
        "",
    );
    (tmp, dir, prefix.with_extension("pub"))
}

fn verify(dir: &Path, key: &Path, code: Code, want: &str) {
    exits(
        &[Path::new("verify"), dir, Path::new("--key"), key],
        code,
        want,
    );
}

#[test]
fn verify_tells_tampering_from_missing_input() {
    let (tmp, dir, public) = signed_release();
    verify(&dir, &public, Code::Success, "verified");

    // One changed byte: a verification failure, naming the file.
    std::fs::write(dir.join("notes.txt"), b"release notez\n").expect("tamper");
    verify(
        &dir,
        &public,
        Code::Verification,
        "error: verification failed: notes.txt: sha256 is",
    );
    std::fs::write(dir.join("notes.txt"), b"release notes\n").expect("restore");
    verify(&dir, &public, Code::Success, "verified");

    // Another key, and a signature gone: verification failures too.
    let (_other_tmp, _, other_public) = signed_release();
    verify(
        &dir,
        &other_public,
        Code::Verification,
        "verification failed: manifest.json: signature does not match",
    );
    std::fs::remove_file(dir.join("tiny.efi.sig")).expect("rm sig");
    verify(
        &dir,
        &public,
        Code::Verification,
        "verification failed: tiny.efi.sig: signature missing",
    );

    // What the command line names does not exist: not found.
    let gone = tmp.path().join("no-such-release");
    verify(
        &gone,
        &public,
        Code::NotFound,
        &format!("release directory {} does not exist", gone.display()),
    );
    let no_key = tmp.path().join("no-such.pub");
    verify(&dir, &no_key, Code::NotFound, "public key");
    // A key file that is no key: a plain failure.
    verify(&dir, &dir.join("notes.txt"), Code::Failure, "error:");
    std::fs::remove_file(dir.join(MANIFEST_FILE)).expect("rm manifest");
    verify(
        &dir,
        &public,
        Code::NotFound,
        &format!(
            "release manifest {} does not exist",
            dir.join(MANIFEST_FILE).display()
        ),
    );
}

#[test]
fn sign_refuses_a_changed_file_as_a_verification_failure() {
    let (tmp, dir, _) = signed_release();
    std::fs::write(dir.join("notes.txt"), b"changed after the build\n").expect("change");
    let key = tmp.path().join("release.key");
    exits(
        &[Path::new("sign"), &dir, Path::new("--key"), &key],
        Code::Verification,
        "notes.txt does not match manifest.json (changed after the build?); not signing",
    );
    exits(
        &[
            Path::new("sign"),
            &dir,
            Path::new("--key"),
            &tmp.path().join("gone.key"),
        ],
        Code::NotFound,
        "signing key",
    );
}

#[test]
fn usage_errors_exit_2() {
    exits(
        &[Path::new("--no-such-flag")],
        Code::Usage,
        "unexpected argument",
    );
    exits(
        &[Path::new("verify"), Path::new("out")],
        Code::Usage,
        "--key <KEY>",
    );
    exits(
        &[Path::new("no-such-command")],
        Code::Usage,
        "unrecognized subcommand",
    );
}

#[test]
fn help_lists_the_exit_codes() {
    let (o, text) = keel(&[Path::new("--help")]);
    assert_eq!(o.status.code(), Some(0), "{text}");
    for want in [
        "Exit codes:",
        "3  verification failed",
        "4  not found",
        "5  refused",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn flash_refuses_a_file_that_is_not_a_disk() {
    let (tmp, dir, public) = signed_release();
    let file = tmp.path().join("not-a-disk");
    std::fs::write(&file, vec![0u8; 1 << 20]).expect("file");
    exits(
        &[
            Path::new("flash"),
            &dir,
            &file,
            Path::new("--key"),
            &public,
            Path::new("--yes"),
        ],
        Code::Refused,
        "is not a block device; give the whole disk",
    );
    assert!(
        std::fs::read(&file).expect("file").iter().all(|b| *b == 0),
        "nothing was written"
    );
    exits(
        &[
            Path::new("flash"),
            &dir,
            &tmp.path().join("no-such-disk"),
            Path::new("--key"),
            &public,
            Path::new("--yes"),
        ],
        Code::NotFound,
        "device",
    );
}
