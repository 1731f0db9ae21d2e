//! Fetching a bundle revision with the git CLI (through keel-cmd).
//!
//! Why the CLI and not git2/libgit2: git's own HTTPS transport handles
//! a CA bundle and client certificates (`GIT_SSL_CAINFO`, `GIT_SSL_CERT`,
//! `GIT_SSL_KEY`)
//! for mTLS exactly as operators already test with `git clone`, it needs no
//! C library built into the agent, and its error text is what the operator
//! sees. The node keeps one bare cache repository and fetches only the
//! configured ref, shallow.

use std::path::{Path, PathBuf};
use std::process::Command;

use keel_cmd::CommandRunExt;

use super::{GitopsError, SyncConfig};

/// A `git` command isolated from user/system config, with the TLS settings.
fn git(cfg: &SyncConfig, repo: &Path) -> Command {
    let mut c = Command::new("git");
    c.env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .arg("--git-dir")
        .arg(repo)
        // Give up on a stalled transfer instead of hanging the timer.
        .args([
            "-c",
            "http.lowSpeedLimit=1000",
            "-c",
            "http.lowSpeedTime=30",
        ]);
    // git's documented environment for its HTTPS transport; these reach the
    // git-remote-https helper process reliably.
    if let Some(ca) = &cfg.ca_bundle {
        c.env("GIT_SSL_CAINFO", ca);
    }
    if let Some(tls) = &cfg.client_tls {
        c.env("GIT_SSL_CERT", &tls.cert)
            .env("GIT_SSL_KEY", &tls.key);
    }
    c
}

/// Fetches `cfg.reference` into the cache repository; returns the commit id.
pub fn fetch(cfg: &SyncConfig) -> Result<String, GitopsError> {
    let repo = cfg.root.join("cache.git");
    if !repo.join("HEAD").exists() {
        Command::new("git")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .args(["init", "-q", "--bare"])
            .arg(&repo)
            .run()?;
    }
    git(cfg, &repo)
        .args([
            "fetch",
            "-q",
            "--no-tags",
            "--depth=1",
            &cfg.url,
            &cfg.reference,
        ])
        .run()
        .map_err(|e| GitopsError::Fetch {
            url: cfg.url.clone(),
            reference: cfg.reference.clone(),
            source: e,
        })?;
    let rev = git(cfg, &repo)
        .args(["rev-parse", "--verify", "FETCH_HEAD^{commit}"])
        .run_get_string()?;
    let rev = rev.trim().to_string();
    if rev.len() < 40 || !rev.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(GitopsError::BadPath(format!(
            "git printed a strange revision {rev:?}"
        )));
    }
    Ok(rev)
}

/// Writes the tree of `rev` into the new directory `dest` (git archive + tar).
pub fn extract(cfg: &SyncConfig, rev: &str, dest: &Path) -> Result<(), GitopsError> {
    let repo = cfg.root.join("cache.git");
    let tar: PathBuf = dest.with_extension("tar");
    std::fs::create_dir_all(dest).map_err(|source| GitopsError::Io {
        what: "creating",
        path: dest.to_path_buf(),
        source,
    })?;
    git(cfg, &repo)
        .args(["archive", "--format=tar", "-o"])
        .arg(&tar)
        .arg(rev)
        .run()?;
    let untar = Command::new("tar")
        .arg("-C")
        .arg(dest)
        .args(["--no-same-owner", "-xf"])
        .arg(&tar)
        .run();
    let _ = std::fs::remove_file(&tar);
    untar?;
    Ok(())
}
