//! `keel-bootstrap sync`: pull the store's GitOps bundle, check its
//! signature, apply it atomically, health-check it, roll back on failure and
//! report the running revision to keel-enroll.
//!
//! The signing scheme (docs/gitops-bundles.md): the bundle repository holds
//! `.keel/manifest`, a canonical list of every file's SHA-256 and mode
//! ([`manifest`]), and `.keel/signature`, a cosign-format ECDSA P-256
//! signature over the manifest bytes ([`verify`]). The node recomputes the
//! manifest from the fetched tree and requires it byte-identical to the
//! signed one: unsigned, wrongly signed or tampered bundles are refused and
//! the current release stays. The manifest's signed header names the store,
//! the ref and a monotonic serial: another store's or another ref's bundle,
//! and a serial at or below the one applied last (replay, rollback), are
//! refused too ([`verify_tree`]). The caller reports the running revision to
//! keel-enroll with [`report::send`] (it holds the node key).

pub mod fetch;
pub mod manifest;
pub mod report;
pub mod verify;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use releases::{Releases, SyncState};
pub use verify::TrustRoot;

/// Errors from a sync.
#[derive(Debug, thiserror::Error)]
pub enum GitopsError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading sync config: {0}")]
    Config(String),
    #[error("fetching {reference} from {url}: {source}")]
    Fetch {
        url: String,
        reference: String,
        #[source]
        source: keel_cmd::CmdError,
    },
    #[error("the Git server of {url} is unreachable ({reach}); fetching {reference}: {source}")]
    Unreachable {
        url: String,
        reference: String,
        /// Why a TCP connection to the server did not open.
        reach: std::io::Error,
        #[source]
        source: keel_cmd::CmdError,
    },
    #[error(transparent)]
    Cmd(#[from] keel_cmd::CmdError),
    #[error("unusable path in bundle: {0}")]
    BadPath(String),
    #[error("bundle manifest malformed: {0}")]
    BadManifest(String),
    #[error("bundle trust root: {0}")]
    TrustRoot(String),
    #[error(
        "bundle revision {rev} is unsigned (no {missing}); refused, the current release stays"
    )]
    Unsigned { rev: String, missing: &'static str },
    #[error("bundle revision {rev} refused, the current release stays: {detail}")]
    Refused { rev: String, detail: String },
    #[error("bundle signature: {0}")]
    BadSignature(String),
    #[error("bundle content does not match its signed manifest: {0}")]
    Tampered(String),
    #[error(
        "bundle revision {rev} is signed for store {signed_for}, this node belongs to store \
         {ours}; refused, the current release stays"
    )]
    OtherStore {
        rev: String,
        signed_for: String,
        ours: String,
    },
    #[error(
        "bundle revision {rev} is signed for ref {signed_for}, this node follows {ours}; \
         refused, the current release stays (sign it with `keel bundle sign --ref {ours}`)"
    )]
    OtherRef {
        rev: String,
        signed_for: String,
        ours: String,
    },
    #[error(
        "bundle revision {rev} carries serial {serial}, the serial this node applied already: \
         a replayed bundle; refused, the current release stays (sign new content with a higher \
         serial)"
    )]
    Replayed { rev: String, serial: u64 },
    #[error(
        "bundle revision {rev} carries serial {serial}, below serial {applied} this node \
         applied already: a rollback to an older bundle; refused, the current release stays \
         (to go back, sign the old content again with a serial above {applied})"
    )]
    Rollback {
        rev: String,
        serial: u64,
        applied: u64,
    },
    #[error("sync state: {0}")]
    State(String),
    #[error("health check of bundle {rev} failed: {detail}")]
    HealthCheck { rev: String, detail: String },
    #[error("bundle {rev} failed its health check and was rolled back to {restored}: {detail}")]
    RolledBack {
        rev: String,
        restored: String,
        detail: String,
    },
    #[error("bundle {rev} failed its health check before; waiting for a new revision")]
    KnownBad { rev: String },
    #[error("reporting to keel-enroll: {0}")]
    Report(String),
}

impl GitopsError {
    /// True when trying again later can help: the Git server could not be
    /// reached at all (no route, refused, DNS, timeout). A server that
    /// answers and refuses (unknown ref, TLS, authentication), a bundle that
    /// fails its checks and local trouble need a change first.
    pub fn is_transient(&self) -> bool {
        matches!(self, GitopsError::Unreachable { .. })
    }
}

/// Client certificate for mTLS to the Git server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClientTls {
    /// Certificate chain, PEM (e.g. the ACME `live/fullchain.pem`).
    pub cert: PathBuf,
    /// Private key, PEM.
    pub key: PathBuf,
}

/// Sync settings, persisted by the first-boot agent (`/var/lib/keel/sync.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SyncConfig {
    /// The store this node belongs to: bundles signed for another store are
    /// refused. Absent from configs written before bundles carried a store:
    /// [`SyncConfig::parse`] then says how to add it.
    #[serde(default)]
    pub store: String,
    /// Repository URL (https).
    pub url: String,
    /// Branch or tag to follow.
    pub reference: String,
    /// PEM file with the public key(s) bundles must be signed with.
    pub trust_root: PathBuf,
    /// CA bundle for the Git server's TLS (PEM file); system roots when absent.
    #[serde(default)]
    pub ca_bundle: Option<PathBuf>,
    /// Present a client certificate (mTLS) where the server requires one.
    #[serde(default)]
    pub client_tls: Option<ClientTls>,
    /// Where releases live (`/var/lib/keel/bundle`).
    pub root: PathBuf,
    /// Health check command (argv). Empty: run the bundle's own
    /// `.keel/health-check` if it has one, else none.
    #[serde(default)]
    pub health_check: Vec<String>,
}

impl SyncConfig {
    /// Parses a JSON config.
    pub fn parse(text: &str) -> Result<Self, GitopsError> {
        let cfg: SyncConfig =
            serde_json::from_str(text).map_err(|e| GitopsError::Config(e.to_string()))?;
        if !cfg.url.starts_with("https://") {
            return Err(GitopsError::Config(format!(
                "bundle URL {} is not https",
                cfg.url
            )));
        }
        if cfg.store.trim().is_empty() {
            return Err(GitopsError::Config(
                "no \"store\": the node cannot tell its own store's bundles from another \
                 store's; add \"store\": \"<store id>\" (the seed's keel.store-id) to the sync \
                 config, or reset the node so first boot writes it"
                    .into(),
            ));
        }
        if cfg.reference.is_empty() || cfg.reference.starts_with('-') {
            return Err(GitopsError::Config(format!(
                "bad reference {:?}",
                cfg.reference
            )));
        }
        Ok(cfg)
    }

    /// Reads a JSON config file.
    pub fn load(path: &Path) -> Result<Self, GitopsError> {
        let text = std::fs::read_to_string(path).map_err(|source| GitopsError::Io {
            what: "reading",
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text)
    }
}

mod check;
pub mod releases;
mod sync;
pub use check::{verify_tree, Expected};
pub use sync::{apply_latest, sync, SyncOutcome};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_config_needs_a_store() {
        let ok = r#"{"store": "s1", "url": "https://git.example/b.git", "reference": "main",
                     "trust-root": "/t.pem", "root": "/var/lib/keel/bundle"}"#;
        assert_eq!(SyncConfig::parse(ok).expect("parses").store, "s1");
        let old = ok.replace(r#""store": "s1", "#, "");
        let e = SyncConfig::parse(&old).expect_err("no store").to_string();
        assert!(
            e.contains(r#"no "store""#) && e.contains("keel.store-id"),
            "{e}"
        );
        let blank = ok.replace(r#""s1""#, r#""  ""#);
        assert!(SyncConfig::parse(&blank).is_err());
    }
}
