//! The service configuration (TOML, kebab-case, unknown keys refused): where it
//! listens, its certificates, the database, the EK trust roots, the reference
//! PCR values and the per-store join material.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::issue::acme_eab::AcmeEabConfig;
use crate::issue::ceph::CephConfig;
use crate::issue::gitops::GitopsConfig;
use crate::server::limits::{Limits, LimitsError};

/// `keel-enroll.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Address to listen on, e.g. `0.0.0.0:8443`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// External base URL of the service (given to nodes for reports).
    #[serde(default)]
    pub public_url: Option<String>,
    /// Server TLS certificate chain (PEM).
    pub tls_cert: PathBuf,
    /// Server TLS key (PEM).
    pub tls_key: PathBuf,
    /// Node CA certificate (PEM) that signs node identity certificates.
    pub node_ca_cert: PathBuf,
    /// Node CA key (PEM).
    pub node_ca_key: PathBuf,
    /// The audit signing key (ECDSA P-256, PKCS#8 PEM): signs audit chain
    /// heads and exports. `keel-enroll dev-certs` writes one (`audit.key`).
    pub audit_key: PathBuf,
    /// Seconds between signatures of the audit chain's tip (default 10).
    #[serde(default = "default_audit_sign_secs")]
    pub audit_sign_secs: u64,
    /// Lifetime of node identity certificates, in hours (default 7 days).
    #[serde(default = "default_node_cert_hours")]
    pub node_cert_hours: i64,
    /// `sqlite:/path/to/enroll.db` (default) or `postgres://user:pw@host:port/db`.
    pub database: String,
    /// Directory of trusted TPM vendor root/intermediate certificates (PEM/DER).
    pub ek_roots: PathBuf,
    /// Directory of trusted release manifests (`*.json`, keel-manifest
    /// format), each with its cosign signature beside it (`NAME.json.sig`).
    #[serde(default)]
    pub manifests_dir: Option<PathBuf>,
    /// The release signing public key (`cosign.pub`, PEM): only manifests
    /// whose signature verifies against it are loaded. Required with
    /// `manifests-dir`.
    #[serde(default)]
    pub manifest_key: Option<PathBuf>,
    /// Explicit PCR policy file (TOML, keel-attest format), merged with manifests.
    #[serde(default)]
    pub pcr_policy: Option<PathBuf>,
    /// Refuse nodes that send no event log (default true: without the log
    /// the quoted PCRs cannot be explained event by event).
    #[serde(default = "yes")]
    pub require_event_log: bool,
    /// Lowest release version admitted, per image name (`[min-release]`
    /// table, e.g. `store-node = "1.4.0"`); per-store minimums add to it.
    #[serde(default)]
    pub min_release: BTreeMap<String, String>,
    /// Withdrawn releases, `"IMAGE-NAME VERSION"`: never admitted, even
    /// with valid reference values.
    #[serde(default)]
    pub deny_releases: Vec<String>,
    /// Seconds a challenge stays valid.
    #[serde(default = "default_session_ttl")]
    pub session_ttl_secs: i64,
    /// Largest request body accepted, bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Abuse limits: timeouts, per-address connections and request rate
    /// (`[limits]`, every key optional; see [`Limits`] for the defaults).
    #[serde(default)]
    pub limits: Limits,
    /// Per-store join material.
    #[serde(default)]
    pub stores: BTreeMap<String, StoreConfig>,
}

/// `[stores.<id>]`: what a node of that store receives.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StoreConfig {
    /// ACME EAB for the store's ACME server.
    #[serde(default)]
    pub acme_eab: Option<AcmeEabConfig>,
    /// GitOps bundle source.
    #[serde(default)]
    pub gitops: Option<GitopsConfig>,
    /// Ceph cluster admin access.
    #[serde(default)]
    pub ceph: Option<CephConfig>,
    /// Every new node of this store waits for an admin's approval, even with
    /// a valid token or allow-list entry.
    #[serde(default)]
    pub require_approval: bool,
    /// Lowest release version this store admits, per image name.
    #[serde(default)]
    pub min_release: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}
fn default_listen() -> String {
    "127.0.0.1:8443".into()
}
fn default_node_cert_hours() -> i64 {
    24 * 7
}
fn default_audit_sign_secs() -> u64 {
    10
}
fn default_session_ttl() -> i64 {
    60
}
fn default_max_body() -> usize {
    keel_attest::protocol::MAX_REQUEST_BYTES
}

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Reading failed.
    #[error("reading {path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The TOML is wrong.
    #[error("config: {0}")]
    Parse(#[from] toml::de::Error),
    /// A `[limits]` value cannot work.
    #[error("config: {0}")]
    Limits(#[from] LimitsError),
}

/// A parsed configuration and the SHA-256 of its text (recorded in the audit log).
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration, relative paths resolved against the file's directory.
    pub config: Config,
    /// Hex SHA-256 of the file text.
    pub sha256: String,
}

impl Config {
    /// Parses a configuration text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let c: Config = toml::from_str(text)?;
        c.limits.check()?;
        Ok(c)
    }

    /// Reads and parses a configuration file; relative paths are resolved
    /// against the file's directory.
    pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let mut config = Self::parse(&text)?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve(base);
        Ok(Loaded {
            config,
            sha256: hex::encode(Sha256::digest(text.as_bytes())),
        })
    }

    fn resolve(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.tls_cert);
        fix(&mut self.tls_key);
        fix(&mut self.node_ca_cert);
        fix(&mut self.node_ca_key);
        fix(&mut self.audit_key);
        fix(&mut self.ek_roots);
        if let Some(p) = self.manifests_dir.as_mut() {
            fix(p);
        }
        if let Some(p) = self.manifest_key.as_mut() {
            fix(p);
        }
        if let Some(p) = self.pcr_policy.as_mut() {
            fix(p);
        }
        if let Some(rest) = self.database.strip_prefix("sqlite:") {
            let p = Path::new(rest);
            if p.is_relative() {
                self.database = format!("sqlite:{}", base.join(p).display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_minimal_and_full() {
        let c = Config::parse(
            r#"
tls-cert = "server.pem"
tls-key = "server.key"
node-ca-cert = "node-ca.pem"
node-ca-key = "node-ca.key"
audit-key = "audit.key"
database = "sqlite:enroll.db"
ek-roots = "ek-roots"
"#,
        )
        .expect("minimal");
        assert_eq!(c.session_ttl_secs, 60);
        assert!(c.require_event_log, "fails closed by default");
        assert_eq!(c.node_cert_hours, 168);
        let c = Config::parse(
            r#"
listen = "127.0.0.1:0"
tls-cert = "a"
tls-key = "b"
node-ca-cert = "c"
node-ca-key = "d"
audit-key = "e"
database = "postgres://x@127.0.0.1:5432/keel"
ek-roots = "r"
pcr-policy = "policy.toml"
[stores.s1.acme-eab]
directory-url = "https://127.0.0.1:14000/dir"
key-id = "kid-1"
hmac-key = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
[stores.s1.gitops]
url = "https://git/x"
ref = "main"
trust-root = "bundle.pub"
"#,
        )
        .expect("full");
        assert!(c.stores["s1"].acme_eab.is_some());
        assert_eq!(c.limits, Limits::default());
        let base = "tls-cert = \"a\"\ntls-key = \"b\"\nnode-ca-cert = \"c\"\nnode-ca-key = \"d\"\n\
                    audit-key = \"e\"\ndatabase = \"sqlite:x\"\nek-roots = \"r\"\n";
        let c = Config::parse(&format!(
            "{base}[limits]\nheader-read-timeout-secs = 2.5\nburst = 5\n"
        ))
        .expect("limits");
        assert_eq!(c.limits.header_read_timeout_secs, 2.5);
        assert_eq!(c.limits.burst, 5);
        assert_eq!(c.limits.requests_per_second, 20.0);
        let e = Config::parse(&format!("{base}[limits]\nburst = 0\n")).expect_err("burst 0");
        assert!(e.to_string().contains("burst"), "{e}");
        assert!(Config::parse(&format!("{base}[limits]\nbogus = 1\n")).is_err());
        assert!(Config::parse("listen = 1").is_err());
        assert!(Config::parse("tls-cert = \"a\"\nbogus = 1").is_err());
    }
}
