//! Short-lived TLS certificates for the node from an ACME CA (RFC 8555).
//!
//! The join material from enrollment names the CA's directory URL, the CA
//! bundle that signs its TLS listener, and an External Account Binding (EAB)
//! key id and HMAC key. With these the node:
//!
//! 1. creates (once) an ACME account bound to the EAB key and persists its
//!    credentials under the state directory (0600), so every later run, and
//!    every rerun after a power cut, uses the SAME account ([`issue`]);
//! 2. generates a fresh P-256 certificate key locally, answers the HTTP-01
//!    challenge with its own small responder ([`http01`]), and writes the
//!    key, certificate and chain into a new generation directory, switched in
//!    by an atomic symlink swap, so the old certificate stays in place until
//!    the new one is complete ([`store`]);
//! 3. renews when a configurable fraction (default two thirds) of the
//!    lifetime the CA chose has passed, retrying with backoff and jitter
//!    while the CA is unreachable ([`renew`]).
//!
//! Keys are files with mode 0600, not TPM-resident: instant-acme signs with
//! an in-memory PKCS#8 key and rustls/rcgen need the key material too.

pub mod config;
pub mod http01;
pub mod issue;
pub mod renew;
pub mod store;

pub use config::{AcmeConfig, Eab, RetryPolicy};
pub use issue::{ensure_account, issue_certificate};
pub use renew::{renew, renew_once, renewal_due, RenewOutcome};
pub use store::{CertInfo, CertStore};

/// Errors from the ACME client.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("reading ACME config {path}: {source}")]
    ConfigRead {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing ACME config: {0}")]
    ConfigParse(#[from] serde_json::Error),
    #[error("invalid ACME config: {0}")]
    Config(String),
    #[error("ACME protocol: {0}")]
    Protocol(#[from] instant_acme::Error),
    #[error("certificate key or request: {0}")]
    Key(#[from] rcgen::Error),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP-01 responder on {addr}: {source}")]
    Responder {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("order for {names:?} ended {status}")]
    Order { names: Vec<String>, status: String },
    #[error("certificate from the CA is not valid PEM/X.509: {0}")]
    BadCertificate(String),
    #[error("ACME CA unreachable or failing; gave up after {attempts} attempts over {elapsed_s} s: {last}")]
    GaveUp {
        attempts: u32,
        elapsed_s: u64,
        last: Box<AcmeError>,
    },
}

/// RFC 8555 §6.7 error types (`urn:ietf:params:acme:error:<name>`) that
/// say the CA refuses this request as it is: retrying cannot help.
const REFUSALS: [&str; 5] = [
    "externalAccountRequired",
    "unauthorized",
    "rejectedIdentifier",
    "badCSR",
    "malformed",
];

impl AcmeError {
    /// True when trying again later can help: the CA unreachable, slow or
    /// failing on its side, an order that did not complete, a local write
    /// that failed. False for a bad configuration and for the CA refusing
    /// the request itself ([`REFUSALS`]). `renew` retries within its budget
    /// on these; when it gives up ([`AcmeError::GaveUp`]) first boot waits
    /// and tries again.
    pub fn is_transient(&self) -> bool {
        match self {
            AcmeError::Config(_) | AcmeError::ConfigRead { .. } | AcmeError::ConfigParse(_) => {
                false
            }
            AcmeError::Protocol(_) => !self.problem().is_some_and(|p| REFUSALS.contains(&p)),
            _ => true,
        }
    }

    /// The RFC 8555 error name of a problem document from the CA
    /// (`unauthorized`), if this is one.
    pub fn problem(&self) -> Option<&str> {
        match self {
            AcmeError::Protocol(instant_acme::Error::Api(p)) => p
                .r#type
                .as_deref()
                .and_then(|t| t.strip_prefix("urn:ietf:params:acme:error:")),
            _ => None,
        }
    }

    pub(crate) fn io(what: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        AcmeError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(kind: &str) -> AcmeError {
        let p: instant_acme::Problem = serde_json::from_value(serde_json::json!({
            "type": format!("urn:ietf:params:acme:error:{kind}"),
            "detail": "connection refused, timed out",
            "status": 403,
        }))
        .expect("problem document");
        AcmeError::Protocol(instant_acme::Error::Api(p))
    }

    #[test]
    fn transient_classification() {
        // The CA refusing the request is final, whatever the detail text says.
        for kind in REFUSALS {
            assert!(!problem(kind).is_transient(), "{kind}");
            assert_eq!(problem(kind).problem(), Some(kind));
        }
        // CA-side trouble and a lost account: try again.
        for kind in ["serverInternal", "rateLimited", "accountDoesNotExist"] {
            assert!(problem(kind).is_transient(), "{kind}");
        }
        let local = [
            AcmeError::Config("no domains".into()),
            AcmeError::ConfigParse(serde_json::from_str::<u8>("x").expect_err("bad json")),
            AcmeError::ConfigRead {
                path: "/etc/acme.json".into(),
                source: std::io::ErrorKind::NotFound.into(),
            },
        ];
        for e in local {
            assert!(!e.is_transient(), "{e}");
            assert_eq!(e.problem(), None);
        }
        let unreachable = AcmeError::Protocol(instant_acme::Error::Timeout(None));
        assert!(unreachable.is_transient());
        let gave_up = AcmeError::GaveUp {
            attempts: 5,
            elapsed_s: 300,
            last: Box::new(unreachable),
        };
        assert!(
            gave_up.is_transient(),
            "first boot keeps waiting for the CA"
        );
        let order = AcmeError::Order {
            names: vec!["node.example".into()],
            status: "Invalid".into(),
        };
        assert!(order.is_transient());
    }
}
