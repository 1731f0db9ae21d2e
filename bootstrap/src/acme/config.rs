//! What the ACME client needs to know, persisted by the first-boot agent so
//! that the `renew` timer can run on its own (`/var/lib/keel/acme.json`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::AcmeError;

/// ACME settings: the CA from the join material plus local choices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AcmeConfig {
    /// The CA's ACME directory URL (join material `acme.directory_url`).
    pub directory_url: String,
    /// PEM file with the CA certificate that signs the ACME server's TLS
    /// listener (join material `acme.ca_bundle`, written to disk).
    pub ca_bundle: PathBuf,
    /// External Account Binding; required by the Keel CA to create an account.
    pub eab: Option<Eab>,
    /// DNS names the certificate is for; the first is the subject.
    pub domains: Vec<String>,
    /// Where account credentials and certificate generations live.
    pub state_dir: PathBuf,
    /// Where the HTTP-01 responder listens while an order is open
    /// (the CA connects to port 80 of the name in production).
    #[serde(default = "default_http01_listen")]
    pub http01_listen: SocketAddr,
    /// Fraction of the lifetime after which `renew` replaces the certificate.
    #[serde(default = "default_renew_fraction")]
    pub renew_fraction: f64,
    /// Retry policy while the CA is unreachable.
    #[serde(default)]
    pub retry: RetryPolicy,
}

/// An External Account Binding key as issued by the CA operator.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Eab {
    /// The key identifier (`kid`).
    pub kid: String,
    /// The HMAC key, base64url without padding as CAs print it.
    pub hmac_key: String,
}

impl std::fmt::Debug for Eab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Eab")
            .field("kid", &self.kid)
            .field("hmac_key", &"<redacted>")
            .finish()
    }
}

/// Exponential backoff with jitter, bounded in total time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RetryPolicy {
    /// First delay, in milliseconds.
    pub initial_ms: u64,
    /// Upper bound of a single delay, in milliseconds.
    pub max_ms: u64,
    /// Give up after this many seconds in total (the timer runs again later).
    pub total_s: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        // Under an hourly timer: keep trying for most of the hour.
        RetryPolicy {
            initial_ms: 2_000,
            max_ms: 300_000,
            total_s: 45 * 60,
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `attempt` (1-based), with ±25 % jitter.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = self
            .initial_ms
            .saturating_mul(1u64 << attempt.saturating_sub(1).min(20));
        let base = exp.min(self.max_ms) as f64;
        let factor = 0.75 + 0.5 * jitter.clamp(0.0, 1.0);
        Duration::from_millis((base * factor) as u64)
    }
}

fn default_http01_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 80))
}

fn default_renew_fraction() -> f64 {
    2.0 / 3.0
}

impl AcmeConfig {
    /// Parses and checks a JSON config.
    pub fn parse(text: &str) -> Result<Self, AcmeError> {
        let cfg: AcmeConfig = serde_json::from_str(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads and parses a JSON config file.
    pub fn load(path: &Path) -> Result<Self, AcmeError> {
        let text = std::fs::read_to_string(path).map_err(|source| AcmeError::ConfigRead {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Checks values serde cannot.
    pub fn validate(&self) -> Result<(), AcmeError> {
        if self.domains.is_empty() {
            return Err(AcmeError::Config("no domains to certify".into()));
        }
        if !(self.renew_fraction > 0.0 && self.renew_fraction < 1.0) {
            return Err(AcmeError::Config(format!(
                "renew-fraction {} is not between 0 and 1",
                self.renew_fraction
            )));
        }
        if !self.directory_url.starts_with("https://") {
            return Err(AcmeError::Config(format!(
                "directory URL {} is not https",
                self.directory_url
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"directory-url":"https://ca.example/dir","ca-bundle":"/etc/keel/acme-ca.pem",
        "eab":{"kid":"k1","hmac-key":"abc"},"domains":["n1.store.example"],"state-dir":"/var/lib/keel/acme"}"#;

    #[test]
    fn parse_table() {
        let cfg = AcmeConfig::parse(GOOD).expect("good config");
        assert_eq!(cfg.http01_listen.port(), 80);
        assert!((cfg.renew_fraction - 2.0 / 3.0).abs() < 1e-9);
        let cases = [
            (
                GOOD.replace("\"domains\":[\"n1.store.example\"]", "\"domains\":[]"),
                "no domains",
            ),
            (GOOD.replace("https://ca", "http://ca"), "not https"),
            (
                GOOD.replace("\"state-dir\"", "\"bogus\":1,\"state-dir\""),
                "unknown field",
            ),
            (
                GOOD.replace("\"state-dir\"", "\"renew-fraction\":1.5,\"state-dir\""),
                "not between",
            ),
        ];
        for (text, want) in cases {
            let err = AcmeConfig::parse(&text).expect_err(want).to_string();
            assert!(err.contains(want), "{err} should contain {want}");
        }
    }

    #[test]
    fn eab_debug_redacts_key() {
        let eab = Eab {
            kid: "k".into(),
            hmac_key: "secret".into(),
        };
        assert!(!format!("{eab:?}").contains("secret"));
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        let p = RetryPolicy {
            initial_ms: 100,
            max_ms: 1000,
            total_s: 10,
        };
        assert_eq!(p.delay(1, 0.5), Duration::from_millis(100));
        assert_eq!(p.delay(3, 0.5), Duration::from_millis(400));
        assert_eq!(p.delay(30, 0.5), Duration::from_millis(1000));
        assert_eq!(p.delay(1, 0.0), Duration::from_millis(75));
        assert_eq!(p.delay(1, 1.0), Duration::from_millis(125));
    }
}
