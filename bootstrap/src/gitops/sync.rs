//! One sync run: fetch, verify, switch, health-check (roll back on failure),
//! persist, report.

use super::check::{verify_tree, Expected};
use super::fetch::{extract, fetch};
use super::releases::{health_check, Releases};
use super::verify::TrustRoot;
use super::{GitopsError, SyncConfig};

/// What a sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutcome {
    /// A new revision is current; `previous` is kept for rollback.
    Applied {
        rev: String,
        previous: Option<String>,
    },
    /// The remote revision is already current.
    UpToDate { rev: String },
}

impl SyncOutcome {
    /// The revision now current.
    pub fn rev(&self) -> &str {
        match self {
            SyncOutcome::Applied { rev, .. } | SyncOutcome::UpToDate { rev } => rev,
        }
    }
}

/// Fetches, verifies and applies the configured ref (blocking: runs git).
pub fn apply_latest(cfg: &SyncConfig) -> Result<SyncOutcome, GitopsError> {
    let trust_pem = std::fs::read_to_string(&cfg.trust_root).map_err(|source| GitopsError::Io {
        what: "reading trust root",
        path: cfg.trust_root.clone(),
        source,
    })?;
    let trust = TrustRoot::parse(&trust_pem)?;
    let releases = Releases::open(&cfg.root)?;
    let mut state = releases.state()?;
    let rev = fetch(cfg)?;
    if state.current.as_deref() == Some(rev.as_str()) && releases.dir(&rev).is_dir() {
        return Ok(SyncOutcome::UpToDate { rev });
    }
    if state.failed.contains(&rev) {
        return Err(GitopsError::KnownBad { rev });
    }
    let staging = releases.staging(&rev)?;
    extract(cfg, &rev, &staging)?;
    let expected = Expected {
        store: &cfg.store,
        reference: &cfg.reference,
        applied_serial: state.serial,
    };
    let header = match verify_tree(&trust, &staging, &rev, &expected) {
        Ok(h) => h,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    let dir = releases.commit_staging(&staging, &rev)?;
    let old = state.current.clone();
    releases.point_current(Some(&rev))?;
    tracing::info!(%rev, serial = header.serial, previous = ?old, "bundle switched");

    let own = dir.join(".keel/health-check");
    let argv = if !cfg.health_check.is_empty() {
        cfg.health_check.clone()
    } else if own.is_file() {
        vec![".keel/health-check".to_string()]
    } else {
        Vec::new()
    };
    if let Err(e) = health_check(&argv, &dir, &rev) {
        releases.point_current(old.as_deref())?;
        state.failed.push(rev.clone());
        releases.save(&state)?;
        let keep: Vec<&str> = [old.as_deref(), state.previous.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        releases.prune(&keep);
        let detail = match e {
            GitopsError::HealthCheck { detail, .. } => detail,
            other => other.to_string(),
        };
        return Err(GitopsError::RolledBack {
            rev,
            restored: old.unwrap_or_else(|| "nothing (no earlier release)".into()),
            detail,
        });
    }
    state.previous = old.clone();
    state.current = Some(rev.clone());
    // The serial goes into the same atomic write as the revision it belongs to.
    state.serial = Some(header.serial);
    releases.save(&state)?;
    let keep: Vec<&str> = [Some(rev.as_str()), old.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    releases.prune(&keep);
    Ok(SyncOutcome::Applied { rev, previous: old })
}

/// `keel-bootstrap sync`: apply the latest signed bundle (git and the tree
/// walk block, so they run on the blocking pool). The caller then reports
/// the revision with [`super::report::send`].
pub async fn sync(cfg: &SyncConfig) -> Result<SyncOutcome, GitopsError> {
    let c = cfg.clone();
    tokio::task::spawn_blocking(move || apply_latest(&c))
        .await
        .map_err(|e| GitopsError::State(format!("sync task: {e}")))?
}
