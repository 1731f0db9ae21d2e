//! Fetching a bundle revision with the git CLI (through keel-cmd).
//!
//! Why the CLI and not git2/libgit2: git's own HTTPS transport handles
//! a CA bundle and client certificates (`GIT_SSL_CAINFO`, `GIT_SSL_CERT`,
//! `GIT_SSL_KEY`)
//! for mTLS exactly as operators already test with `git clone`, it needs no
//! C library built into the agent, and its error text is what the operator
//! sees. The node keeps one bare cache repository and fetches only the
//! configured ref, shallow.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

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
        .map_err(|source| fetch_error(cfg, source))?;
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

/// How long the reachability probe after a failed fetch waits per address.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// A failed `git fetch` (git exits 128 whatever the cause): the server out
/// of reach is told apart from a server that answered and refused by
/// opening a TCP connection to it ourselves.
fn fetch_error(cfg: &SyncConfig, source: keel_cmd::CmdError) -> GitopsError {
    let (url, reference) = (cfg.url.clone(), cfg.reference.clone());
    match unreachable(&cfg.url, PROBE_TIMEOUT) {
        Some(reach) => GitopsError::Unreachable {
            url,
            reference,
            reach,
            source,
        },
        None => GitopsError::Fetch {
            url,
            reference,
            source,
        },
    }
}

/// `host:port` of an `https://` URL (port 443 unless given).
fn authority(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://")?;
    let auth = rest.split(['/', '?', '#']).next()?;
    let host_port = auth.rsplit('@').next()?;
    if host_port.is_empty() {
        return None;
    }
    let has_port = match host_port.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => host_port.contains(':'),
    };
    Some(if has_port {
        host_port.to_string()
    } else {
        format!("{host_port}:443")
    })
}

/// Why no TCP connection to the URL's server opens (name lookup failed,
/// refused, timed out), or `None` when one does (or the URL names no server).
fn unreachable(url: &str, timeout: Duration) -> Option<std::io::Error> {
    let auth = authority(url)?;
    let addrs = match auth.to_socket_addrs() {
        Ok(a) => a,
        Err(e) => return Some(e),
    };
    let mut last = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(_) => return None,
            Err(e) => last = Some(e),
        }
    }
    Some(last.unwrap_or_else(|| std::io::Error::other(format!("{auth} has no address"))))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn authority_table() {
        let cases = [
            ("https://git.example/bundle.git", Some("git.example:443")),
            ("https://git.example:8443/a/b", Some("git.example:8443")),
            ("https://user:pw@git.example/x", Some("git.example:443")),
            ("https://127.0.0.1:9/x?y#z", Some("127.0.0.1:9")),
            ("https://[::1]/x", Some("[::1]:443")),
            ("https://[::1]:8443/x", Some("[::1]:8443")),
            ("https:///x", None),
            ("http://git.example/x", None),
        ];
        for (url, want) in cases {
            assert_eq!(authority(url).as_deref(), want, "{url}");
        }
    }

    #[test]
    fn unreachable_tells_closed_from_open() {
        let open = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = open.local_addr().expect("addr").port();
        let url = format!("https://127.0.0.1:{port}/bundle.git");
        assert!(unreachable(&url, Duration::from_secs(5)).is_none());
        drop(open);
        let e = unreachable(&url, Duration::from_secs(5)).expect("closed port");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    }

    #[test]
    fn only_an_unreachable_server_is_transient() {
        let failed = || keel_cmd::CmdError::Failed {
            cmdline: "git fetch".into(),
            status: std::os::unix::process::ExitStatusExt::from_raw(128 << 8),
            tail: "fatal: unable to access: Failed to connect".into(),
        };
        let down = GitopsError::Unreachable {
            url: "https://git.example/b".into(),
            reference: "main".into(),
            reach: std::io::ErrorKind::ConnectionRefused.into(),
            source: failed(),
        };
        assert!(down.is_transient());
        // The same git text from a server that answered: not transient.
        let refused = GitopsError::Fetch {
            url: "https://git.example/b".into(),
            reference: "main".into(),
            source: failed(),
        };
        assert!(!refused.is_transient());
        for e in [
            GitopsError::KnownBad { rev: "abc".into() },
            GitopsError::Tampered("connection".into()),
            GitopsError::Config("timeout".into()),
            GitopsError::RolledBack {
                rev: "abc".into(),
                restored: "def".into(),
                detail: "unreachable".into(),
            },
        ] {
            assert!(!e.is_transient(), "{e}");
        }
    }
}
