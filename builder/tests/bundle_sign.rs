//! `keel bundle sign` on a real git repository; the signature is checked by
//! the real `cosign verify-blob`.

use std::path::Path;
use std::process::Command;

use keel_builder::bundle::{committed_serial, header_for, manifest, sign_repo};
use keel_cmd::CommandRunExt;

fn git(repo: &Path) -> Command {
    let mut c = Command::new("git");
    c.arg("-C")
        .arg(repo)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@keel.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@keel.invalid");
    c
}

/// A bundle repository with one commit, then an uncommitted edit and an
/// untracked file (neither may be signed).
fn bundle_repo(repo: &Path) {
    std::fs::create_dir(repo).expect("mkdir");
    git(repo)
        .args(["init", "-q", "-b", "main"])
        .run()
        .expect("init");
    std::fs::write(repo.join("app.yaml"), "replicas: 1\n").expect("write");
    git(repo).args(["add", "-A"]).run().expect("add");
    git(repo)
        .args(["commit", "-q", "-m", "app"])
        .run()
        .expect("commit");
    std::fs::write(repo.join("app.yaml"), "replicas: 9\n").expect("edit");
    std::fs::write(repo.join("untracked.txt"), "x").expect("untracked");
}

/// The committed tree (HEAD now includes .keel/) matches the signed manifest.
fn check_committed_tree(repo: &Path, scratch: &Path, header: &manifest::Header, text: &str) {
    let check = scratch.join("check");
    std::fs::create_dir(&check).expect("mkdir");
    let tar = scratch.join("t.tar");
    git(repo)
        .args(["archive", "--format=tar", "-o"])
        .arg(&tar)
        .arg("HEAD")
        .run()
        .expect("archive");
    Command::new("tar")
        .arg("-C")
        .arg(&check)
        .arg("-xf")
        .arg(&tar)
        .run()
        .expect("untar");
    assert_eq!(manifest::build(&check, header).expect("rebuild"), text);
    assert!(check.join(manifest::SIGNATURE_PATH).is_file());
}

/// The next signature derives serial 2 from the committed manifest; an
/// explicit serial at or below the committed one is refused; a detached
/// HEAD needs --ref.
fn check_serials_and_refs(repo: &Path) {
    let next = header_for(repo, "HEAD", "store-1", None, None).expect("next");
    assert_eq!(next.serial, 2);
    let e = header_for(repo, "HEAD", "store-1", None, Some(1))
        .expect_err("serial 1 again")
        .to_string();
    assert!(e.contains("not above serial 1"), "{e}");
    let explicit =
        header_for(repo, "HEAD", "store-1", Some("prod".into()), Some(40)).expect("explicit");
    assert_eq!((explicit.reference.as_str(), explicit.serial), ("prod", 40));
    git(repo)
        .args(["checkout", "-q", "--detach"])
        .run()
        .expect("detach");
    let e = header_for(repo, "HEAD", "store-1", None, None)
        .expect_err("detached")
        .to_string();
    assert!(e.contains("--ref"), "{e}");
}

/// cosign verifies the signature, and rejects a manifest changed by one mode.
fn check_with_cosign(repo: &Path, pub_path: &Path, scratch: &Path, text: &str) {
    if Command::new("cosign").arg("version").run().is_err() {
        keel_testbed::report_skip(format_args!(
            "cosign verify-blob part: cosign is not installed"
        ));
        return;
    }
    let verify = |file: &Path| {
        Command::new("cosign")
            .args(["verify-blob", "--insecure-ignore-tlog=true", "--key"])
            .arg(pub_path)
            .arg("--signature")
            .arg(repo.join(manifest::SIGNATURE_PATH))
            .arg(file)
            .run()
    };
    verify(&repo.join(manifest::MANIFEST_PATH)).expect("cosign verifies the signature");
    let tampered = scratch.join("tampered");
    std::fs::write(
        &tampered,
        text.replace("100644 app.yaml", "100755 app.yaml"),
    )
    .expect("write");
    assert!(
        verify(&tampered).is_err(),
        "cosign rejects a changed manifest"
    );
}

#[test]
fn sign_commits_a_manifest_of_the_committed_tree_that_cosign_verifies() {
    if Command::new("git").arg("--version").run().is_err() {
        keel_testbed::report_skip(format_args!(
            "sign_commits_a_manifest: git is not installed"
        ));
        return;
    }
    let d = tempfile::tempdir().expect("tempdir");
    let repo = d.path().join("bundle");
    bundle_repo(&repo);

    let (key_path, pub_path) =
        keel_builder::release::sign::generate_key_pair(&d.path().join("cosign"), b"pw")
            .expect("keys");
    let key = keel_builder::release::sign::load_signing_key(&key_path, b"pw").expect("load");
    let header = header_for(&repo, "HEAD", "store-1", None, None).expect("header");
    assert_eq!(
        header,
        manifest::Header::new("store-1", "main", 1).expect("h"),
        "ref from the branch checked out, first serial 1"
    );
    sign_repo(&repo, "HEAD", &header, &key, true).expect("sign");
    assert_eq!(committed_serial(&repo, "HEAD").expect("serial"), 1);

    let text = std::fs::read_to_string(repo.join(manifest::MANIFEST_PATH)).expect("manifest");
    assert!(
        text.starts_with("keel-bundle-manifest v2\nstore store-1\nref main\nserial 1\n"),
        "{text}"
    );
    assert!(text.contains(" 100644 app.yaml\n"), "{text}");
    assert!(!text.contains("untracked"), "{text}");
    check_committed_tree(&repo, d.path(), &header, &text);
    check_serials_and_refs(&repo);
    check_with_cosign(&repo, &pub_path, d.path(), &text);
}
