//! The PostgreSQL database URL and its TLS parameters, read the way libpq reads
//! them: `sslmode` (`disable`, `prefer`, `require`, `verify-ca`, `verify-full`)
//! and `sslrootcert` (a PEM file of CA certificates, or `system` for the
//! operating system's trust store). tokio-postgres knows neither `verify-*`
//! nor `sslrootcert`, so both are taken out of the URL here and the rest is
//! handed to it unchanged.
//!
//! Without `sslmode` the service picks by host: a loopback host (`localhost`,
//! `127.0.0.0/8`, `::1`) or a unix socket gets `prefer` (TLS if the server
//! offers it, libpq's default), any other host gets `verify-full`: the
//! certificate must chain to `sslrootcert` (default: the system trust store)
//! and name the host. A database across the network is never used over an
//! unauthenticated channel unless the URL asks for it.
//!
//! As in libpq, `sslmode=require` with an `sslrootcert` verifies the chain
//! (like `verify-ca`); without one it encrypts but checks nothing.

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use percent_encoding::percent_decode_str;
use tokio_postgres::config::Host;

use super::StoreError;

/// `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS if the server offers it, no verification; plain TCP otherwise.
    Prefer,
    /// TLS required; the certificate is checked only if `sslrootcert` is given.
    Require,
    /// TLS; the certificate must chain to a trusted CA (any host name).
    VerifyCa,
    /// TLS; the certificate must chain to a trusted CA and name the host.
    VerifyFull,
}

impl SslMode {
    /// The URL spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// Where trusted CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// The operating system's trust store (`sslrootcert=system`, or no `sslrootcert`).
    System,
    /// A PEM file.
    File(PathBuf),
}

impl std::fmt::Display for Roots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Roots::System => f.write_str("the system trust store"),
            Roots::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// What the connector does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The mode in force (explicit or chosen by default).
    pub mode: SslMode,
    /// Whether `sslmode` was in the URL.
    pub explicit: bool,
    /// Trusted CAs; `None`: the certificate is not checked.
    pub roots: Option<Roots>,
    /// Whether the certificate must name the host.
    pub check_name: bool,
    /// `host:port` for messages (no user, no password).
    pub target: String,
}

/// A database URL split into the tokio-postgres configuration and the TLS settings.
pub fn parse(url: &str) -> Result<(tokio_postgres::Config, TlsSettings), StoreError> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut mode = None;
    let mut rootcert = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode_str(k).decode_utf8_lossy();
        let value = percent_decode_str(v).decode_utf8_lossy().into_owned();
        match &*key {
            "sslmode" => {
                mode = Some(SslMode::parse(&value).ok_or_else(|| {
                    StoreError::Tls(format!(
                        "sslmode={value:?} is not understood; use disable, prefer, require, verify-ca or verify-full"
                    ))
                })?)
            }
            "sslrootcert" => rootcert = Some(value),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let mut config = tokio_postgres::Config::from_str(&rest).map_err(|e| {
        StoreError::Tls(format!(
            "the database URL {} is not understood: {e}",
            redact(url)
        ))
    })?;
    let hosts = config.get_hosts();
    let target = target(&config);
    let explicit = mode.is_some();
    let mode = mode.unwrap_or(if hosts.iter().all(is_local) {
        SslMode::Prefer
    } else {
        SslMode::VerifyFull
    });
    // Every mode above prefer must never fall back to plain text.
    config.ssl_mode(match mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        _ => tokio_postgres::config::SslMode::Require,
    });
    let roots = match rootcert.as_deref() {
        None | Some("") | Some("system") => Roots::System,
        Some(p) => Roots::File(PathBuf::from(p)),
    };
    let roots = match mode {
        SslMode::Disable | SslMode::Prefer => None,
        SslMode::Require => rootcert.is_some().then_some(roots),
        SslMode::VerifyCa | SslMode::VerifyFull => Some(roots),
    };
    Ok((
        config,
        TlsSettings {
            mode,
            explicit,
            roots,
            check_name: mode == SslMode::VerifyFull,
            target,
        },
    ))
}

/// Loopback or unix socket: the connection never leaves the machine.
fn is_local(h: &Host) -> bool {
    match h {
        Host::Unix(_) => true,
        Host::Tcp(name) => {
            name.eq_ignore_ascii_case("localhost")
                || name
                    .trim_matches(|c| c == '[' || c == ']')
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    }
}

fn target(c: &tokio_postgres::Config) -> String {
    let host = match c.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

/// The URL without its password.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// A hint for an error connecting with `s`, from the error's text.
pub fn hint(s: &TlsSettings, cause: &str) -> String {
    if cause.contains("pg_hba.conf") && cause.contains("no encryption") {
        return "the server accepts only TLS connections: use sslmode=verify-full with \
                sslrootcert=/path/to/ca.pem (the CA that signed the server certificate)"
            .into();
    }
    if cause.contains("server does not support TLS") {
        return format!(
            "the server at {} does not offer TLS: turn on ssl in postgresql.conf, or set \
             sslmode=disable only if the network path is trusted",
            s.target
        );
    }
    if s.mode == SslMode::Disable && cause.contains("pg_hba.conf") {
        return "the server refuses this plain-text connection: remove sslmode=disable".into();
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_by_host() {
        let (_, s) = parse("postgres://u:pw@127.0.0.1:5432/keel").expect("url");
        assert_eq!(
            (s.mode, s.explicit, s.roots),
            (SslMode::Prefer, false, None)
        );
        let (_, s) = parse("postgres://u:pw@localhost/keel").expect("url");
        assert_eq!(s.mode, SslMode::Prefer);
        let (_, s) = parse("postgres://u:pw@db.example:5433/keel").expect("url");
        assert_eq!(s.mode, SslMode::VerifyFull);
        assert_eq!(s.roots, Some(Roots::System));
        assert_eq!(s.target, "db.example:5433");
        assert!(s.check_name);
    }

    #[test]
    fn explicit_modes_and_rootcert() {
        let (c, s) = parse(
            "postgres://u@db.example/keel?connect_timeout=5&sslmode=verify-ca&sslrootcert=%2Fetc%2Fca.pem",
        )
        .expect("url");
        assert_eq!(s.mode, SslMode::VerifyCa);
        assert_eq!(s.roots, Some(Roots::File("/etc/ca.pem".into())));
        assert!(!s.check_name);
        assert_eq!(c.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        assert_eq!(
            c.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(5))
        );
        let (_, s) = parse("postgres://u@db.example/keel?sslmode=require").expect("url");
        assert_eq!(s.roots, None);
        let (_, s) =
            parse("postgres://u@db.example/keel?sslmode=require&sslrootcert=ca.pem").expect("url");
        assert_eq!(s.roots, Some(Roots::File("ca.pem".into())));
        let (c, s) = parse("postgres://u@db.example/keel?sslmode=disable").expect("url");
        assert_eq!(s.mode, SslMode::Disable);
        assert_eq!(c.get_ssl_mode(), tokio_postgres::config::SslMode::Disable);
        let (c, _) = parse("postgres://u@db.example/keel").expect("url");
        assert_eq!(c.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        let e = parse("postgres://u@db/keel?sslmode=verify").expect_err("bad mode");
        assert!(e.to_string().contains("verify-full"), "{e}");
        let e = parse("postgres://u:secret@db/keel?bogus=1").expect_err("bad option");
        assert!(!e.to_string().contains("secret"), "{e}");
    }
}
