//! Which Debian archive a build and a lock talk to.
//!
//! Keel names no mirror host of its own: an image definition may set
//! `distribution.mirror` / `distribution.security-mirror`; otherwise the
//! URIs come from the build host's own apt configuration (the source that
//! carries the release's suite, and the one that carries `RELEASE-security`),
//! or from `KEEL_DEBIAN_MIRROR` / `KEEL_DEBIAN_SECURITY_MIRROR`. A machine
//! that can install packages at all therefore builds images from the same
//! archive, with no host name in code, definitions or locks.
//!
//! [`parse_sources`] is pure and table-tested; [`host_sources`] reads /etc/apt.

use std::path::Path;

use super::Distribution;

/// The two archives a Debian image is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirrors {
    /// The release and its `-updates` suite.
    pub main: String,
    /// The `-security` suite.
    pub security: String,
}

/// One apt source: a URI and the suites it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub uri: String,
    pub suites: Vec<String>,
}

/// Why no mirror could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error(
        "no apt source for the `{suite}` suite in this machine's apt configuration \
         (/etc/apt/sources.list, /etc/apt/sources.list.d/): set `distribution.{key}` in image.toml \
         or {env}=URI"
    )]
    NotFound {
        suite: String,
        key: &'static str,
        env: &'static str,
    },
}

/// Parses apt source files: deb822 (`.sources`) when `deb822`, else the
/// one-line format. Only `deb` entries (not `deb-src`), disabled ones skipped.
pub fn parse_sources(text: &str, deb822: bool) -> Vec<Source> {
    if deb822 {
        parse_deb822(text)
    } else {
        parse_one_line(text)
    }
}

fn parse_deb822(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    // Stanzas are separated by blank lines; comments are dropped first.
    let mut stanza: Vec<&str> = Vec::new();
    let mut lines = text.lines().filter(|l| !l.trim_start().starts_with('#'));
    loop {
        let line = lines.next();
        match line {
            Some(l) if !l.trim().is_empty() => {
                stanza.push(l);
                continue;
            }
            _ => {}
        }
        if !stanza.is_empty() {
            let field = |k: &str| {
                stanza.iter().find_map(|l| {
                    let (key, v) = l.split_once(':')?;
                    key.trim().eq_ignore_ascii_case(k).then(|| v.trim())
                })
            };
            let types = field("Types").unwrap_or("");
            let enabled = field("Enabled").is_none_or(|v| !v.eq_ignore_ascii_case("no"));
            if enabled && types.split_whitespace().any(|t| t == "deb") {
                let suites: Vec<String> = field("Suites")
                    .unwrap_or("")
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
                for uri in field("URIs").unwrap_or("").split_whitespace() {
                    out.push(Source {
                        uri: uri.to_string(),
                        suites: suites.clone(),
                    });
                }
            }
            stanza.clear();
        }
        if line.is_none() {
            break;
        }
    }
    out
}

fn parse_one_line(text: &str) -> Vec<Source> {
    text.lines()
        .filter_map(|l| {
            let l = l.split('#').next().unwrap_or("").trim();
            let rest = l.strip_prefix("deb ")?.trim_start();
            // Skip an options block: `[arch=amd64 signed-by=...]`.
            let rest = match rest.strip_prefix('[') {
                Some(r) => r.split_once(']')?.1.trim_start(),
                None => rest,
            };
            let mut f = rest.split_whitespace();
            let uri = f.next()?.to_string();
            let suite = f.next()?.to_string();
            Some(Source {
                uri,
                suites: vec![suite],
            })
        })
        .collect()
}

/// Every `deb` source of this machine's apt configuration, in apt's order.
pub fn host_sources(etc_apt: &Path) -> Vec<Source> {
    let mut v = Vec::new();
    if let Ok(t) = std::fs::read_to_string(etc_apt.join("sources.list")) {
        v.extend(parse_sources(&t, false));
    }
    let mut files: Vec<_> = std::fs::read_dir(etc_apt.join("sources.list.d"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    for f in files {
        let deb822 = match f.extension().and_then(|e| e.to_str()) {
            Some("sources") => true,
            Some("list") => false,
            _ => continue,
        };
        if let Ok(t) = std::fs::read_to_string(&f) {
            v.extend(parse_sources(&t, deb822));
        }
    }
    v
}

/// The first source that serves `suite`, without a trailing slash.
pub fn uri_for(sources: &[Source], suite: &str) -> Option<String> {
    sources
        .iter()
        .find(|s| s.suites.iter().any(|x| x == suite))
        .map(|s| s.uri.trim_end_matches('/').to_string())
}

/// The definition's mirrors, falling back to the environment and then to
/// the sources in `etc_apt` (normally /etc/apt).
pub fn resolve(d: &Distribution, etc_apt: &Path) -> Result<Mirrors, MirrorError> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let mut sources = None;
    let mut lookup = |suite: String, key: &'static str, env_name: &'static str| {
        let sources = sources.get_or_insert_with(|| host_sources(etc_apt));
        uri_for(sources, &suite).ok_or(MirrorError::NotFound {
            suite,
            key,
            env: env_name,
        })
    };
    let main = match d.mirror.clone().or_else(|| env("KEEL_DEBIAN_MIRROR")) {
        Some(m) => m,
        None => lookup(d.release.clone(), "mirror", "KEEL_DEBIAN_MIRROR")?,
    };
    let security = match d
        .security_mirror
        .clone()
        .or_else(|| env("KEEL_DEBIAN_SECURITY_MIRROR"))
    {
        Some(m) => m,
        None => lookup(
            format!("{}-security", d.release),
            "security-mirror",
            "KEEL_DEBIAN_SECURITY_MIRROR",
        )?,
    };
    Ok(Mirrors { main, security })
}

/// [`resolve`] against this machine's /etc/apt.
pub fn for_host(d: &Distribution) -> Result<Mirrors, MirrorError> {
    resolve(d, Path::new("/etc/apt"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEB822: &str = "Types: deb\n# a comment\nURIs: http://archive.example/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n\n\
        Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm-security\n\n\
        Types: deb\nEnabled: no\nURIs: http://off.example/debian-security\nSuites: bookworm-security\n\n\
        Types: deb\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\nComponents: main\n";

    #[test]
    fn deb822_stanzas_give_uris_and_suites() {
        let s = parse_sources(DEB822, true);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(
            uri_for(&s, "bookworm").as_deref(),
            Some("http://archive.example/debian")
        );
        assert_eq!(
            uri_for(&s, "bookworm-security").as_deref(),
            Some("http://sec.example/debian-security"),
            "deb-src and disabled stanzas are skipped"
        );
        assert_eq!(uri_for(&s, "trixie"), None);
    }

    #[test]
    fn one_line_sources_with_options_and_comments() {
        let t = "# deb http://commented.example/debian bookworm main\n\
                 deb [arch=amd64 signed-by=/k.gpg] http://a.example/debian bookworm main contrib\n\
                 deb-src http://a.example/debian bookworm main\n\
                 deb http://b.example/debian-security bookworm-security main # trailing\n";
        let s = parse_sources(t, false);
        assert_eq!(
            s,
            vec![
                Source {
                    uri: "http://a.example/debian".into(),
                    suites: vec!["bookworm".into()]
                },
                Source {
                    uri: "http://b.example/debian-security".into(),
                    suites: vec!["bookworm-security".into()]
                },
            ]
        );
    }

    fn dist(mirror: Option<&str>) -> Distribution {
        Distribution {
            name: "debian".into(),
            release: "bookworm".into(),
            architecture: "x86-64".into(),
            mirror: mirror.map(str::to_string),
            security_mirror: None,
            components: vec!["main".into()],
        }
    }

    #[test]
    fn resolves_from_an_apt_directory_and_prefers_the_definition() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(dir.path().join("sources.list.d")).expect("mkdir");
        std::fs::write(dir.path().join("sources.list.d/debian.sources"), DEB822).expect("write");
        let m = resolve(&dist(None), dir.path()).expect("resolve");
        assert_eq!(m.main, "http://archive.example/debian");
        assert_eq!(m.security, "http://sec.example/debian-security");
        let m = resolve(&dist(Some("http://own.example/debian")), dir.path()).expect("resolve");
        assert_eq!(m.main, "http://own.example/debian");
    }

    #[test]
    fn missing_source_names_the_key_to_set() {
        let dir = tempfile::tempdir().expect("tmp");
        let e = resolve(&dist(Some("http://own.example/debian")), dir.path())
            .expect_err("no security source");
        let msg = e.to_string();
        assert!(
            msg.contains("bookworm-security") && msg.contains("distribution.security-mirror"),
            "{msg}"
        );
    }
}
