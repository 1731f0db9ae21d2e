//! The Git server starter: push and clone over HTTPS, mTLS enforced, stop/start.

use keel_cmd::CommandRunExt;
use keel_testbed::git::{GitServer, GitServerOptions};
use std::time::Instant;

#[test]
fn git_clone_over_https_sees_pushed_commit() {
    if keel_testbed::skip_unless(&["git"]) {
        return;
    }
    let t = Instant::now();
    let Some(mut s) = keel_testbed::or_skip(GitServer::start(GitServerOptions::default())) else {
        return;
    };
    eprintln!("git server ready in {:?} on port {}", t.elapsed(), s.port());
    s.create_repo("bundle").expect("create repo");
    let id = s
        .commit_and_push("bundle", "main", &[("a/hello.txt", b"hello\n")], "first")
        .expect("push over https");
    let dst = tempfile::tempdir().expect("tmp");
    let clone = dst.path().join("c");
    s.git()
        .args(["clone", "-q", &s.repo_url("bundle")])
        .arg(&clone)
        .run()
        .expect("clone over https");
    assert_eq!(
        std::fs::read_to_string(clone.join("a/hello.txt")).expect("file"),
        "hello\n"
    );
    let head = s
        .git()
        .arg("-C")
        .arg(&clone)
        .args(["rev-parse", "HEAD"])
        .run_get_string()
        .expect("rev-parse");
    assert_eq!(head.trim(), id);

    // Untrusted server certificate is refused.
    let e = std::process::Command::new("git")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_SSL_CAINFO", "/dev/null")
        .args(["ls-remote", &s.repo_url("bundle")])
        .run()
        .expect_err("unknown CA must fail");
    assert!(
        e.to_string().to_lowercase().contains("ssl") || e.to_string().contains("certificate"),
        "{e}"
    );

    s.stop();
    assert!(s
        .git()
        .args(["ls-remote", &s.repo_url("bundle")])
        .run()
        .is_err());
    s.start_again().expect("start again");
    s.git()
        .args(["ls-remote", &s.repo_url("bundle")])
        .run()
        .expect("back up");
}

#[test]
fn git_mtls_refuses_clients_without_certificate() {
    if keel_testbed::skip_unless(&["git"]) {
        return;
    }
    let Some(s) = keel_testbed::or_skip(GitServer::start(GitServerOptions {
        require_client_cert: true,
        ..GitServerOptions::default()
    })) else {
        return;
    };
    s.create_repo("r").expect("repo");
    s.commit_and_push("r", "main", &[("f", b"x")], "c")
        .expect("push with client cert");
    let no_cert = std::process::Command::new("git")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_SSL_CAINFO", s.ca_path())
        .args(["ls-remote", &s.repo_url("r")])
        .run();
    assert!(
        no_cert.is_err(),
        "mTLS server must refuse a client without a certificate"
    );
}
