//! One sync run: fetch, verify, switch, health-check (roll back on failure),
//! persist, report.

use std::path::Path;

use super::apply::{health_check, Releases};
use super::fetch::{extract, fetch};
use super::manifest::{self, MANIFEST_PATH, SIGNATURE_PATH};
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

/// Checks a bundle tree: `.keel/signature` verifies over `.keel/manifest`
/// with the trust root, and the tree is exactly what the manifest lists.
pub fn verify_tree(trust: &TrustRoot, dir: &Path, rev: &str) -> Result<(), GitopsError> {
    let read = |rel: &'static str| match std::fs::read(dir.join(rel)) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(GitopsError::Unsigned {
            rev: rev.to_string(),
            missing: rel,
        }),
        Err(source) => Err(GitopsError::Io {
            what: "reading",
            path: dir.join(rel),
            source,
        }),
    };
    let signed = read(MANIFEST_PATH)?;
    let signature = read(SIGNATURE_PATH)?;
    let refused = |e: GitopsError| GitopsError::Refused {
        rev: rev.to_string(),
        detail: e.to_string(),
    };
    let sig_text = String::from_utf8(signature)
        .map_err(|_| refused(GitopsError::BadSignature("signature is not text".into())))?;
    trust.verify(&signed, &sig_text).map_err(refused)?;
    let signed = String::from_utf8(signed)
        .map_err(|_| refused(GitopsError::BadManifest("not UTF-8".into())))?;
    manifest::parse(&signed).map_err(|e| refused(e.into()))?;
    let actual = manifest::build(dir)?;
    if actual != signed {
        return Err(refused(GitopsError::Tampered(first_difference(
            &signed, &actual,
        ))));
    }
    Ok(())
}

/// Names the first manifest line that differs, for the operator.
fn first_difference(signed: &str, actual: &str) -> String {
    let path = |l: &str| l.splitn(3, ' ').nth(2).unwrap_or(l).to_string();
    let mut s = signed.lines();
    let mut a = actual.lines();
    loop {
        match (s.next(), a.next()) {
            (Some(x), Some(y)) if x == y => continue,
            (Some(x), Some(y)) if path(x) == path(y) => return format!("{} changed", path(x)),
            (Some(x), Some(y)) if path(x) < path(y) => return format!("{} missing", path(x)),
            (Some(_), Some(y)) => return format!("{} added", path(y)),
            (Some(x), None) => return format!("{} missing", path(x)),
            (None, Some(y)) => return format!("{} added", path(y)),
            (None, None) => return "identical".into(),
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
    if let Err(e) = verify_tree(&trust, &staging, &rev) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    let dir = releases.commit_staging(&staging, &rev)?;
    let old = state.current.clone();
    releases.point_current(Some(&rev))?;
    tracing::info!(%rev, previous = ?old, "bundle switched");

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

#[cfg(test)]
mod tests {
    use super::first_difference;

    #[test]
    fn first_difference_table() {
        let h = "keel-bundle-manifest v1";
        let cases = [
            (
                format!("{h}\naa 100644 a\n"),
                format!("{h}\nbb 100644 a\n"),
                "a changed",
            ),
            (format!("{h}\naa 100644 a\n"), format!("{h}\n"), "a missing"),
            (format!("{h}\n"), format!("{h}\naa 100644 x\n"), "x added"),
            (
                format!("{h}\naa 100644 b\n"),
                format!("{h}\naa 100644 a\naa 100644 b\n"),
                "a added",
            ),
        ];
        for (s, a, want) in cases {
            assert_eq!(first_difference(&s, &a), want);
        }
    }
}
