//! What a first-boot step is ([`Step`]), what it works with ([`Ctx`]) and
//! how it fails ([`StepError`]). Whether a failure is worth waiting for is
//! asked of the typed error itself ([`Transient`]), never read from its text.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::progress::Progress;
use super::state::StateDir;
use crate::seed::Seed;

/// How a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Transient (network down, service busy): retried after a backoff.
    #[error("{0:#}")]
    Retry(anyhow::Error),
    /// Final: retrying cannot help; a person must act.
    #[error("{reason}\nwhat to do: {action}")]
    Fatal {
        /// What happened (e.g. the service's rejection reason).
        reason: String,
        /// What the person should do.
        action: String,
    },
    /// Anything else: the agent exits non-zero and systemd restarts it.
    #[error("{0:#}")]
    Other(anyhow::Error),
}

impl From<anyhow::Error> for StepError {
    fn from(e: anyhow::Error) -> Self {
        StepError::Other(e)
    }
}

/// An error that knows whether waiting and trying again can help.
pub trait Transient: std::error::Error + Send + Sync + 'static {
    /// True for a service out of reach or busy; false when something must
    /// change first.
    fn is_transient(&self) -> bool;
}

impl Transient for crate::ceph::CephError {
    fn is_transient(&self) -> bool {
        crate::ceph::CephError::is_transient(self)
    }
}

impl Transient for crate::acme::AcmeError {
    fn is_transient(&self) -> bool {
        crate::acme::AcmeError::is_transient(self)
    }
}

impl Transient for crate::gitops::GitopsError {
    fn is_transient(&self) -> bool {
        crate::gitops::GitopsError::is_transient(self)
    }
}

impl StepError {
    /// A transient error is retried (the console says the agent is waiting
    /// for `service`); any other ends the run.
    pub fn classify<E: Transient>(e: E, service: &str) -> StepError {
        if e.is_transient() {
            StepError::Retry(anyhow::Error::new(e).context(format!("waiting for {service}")))
        } else {
            StepError::Other(anyhow::Error::new(e))
        }
    }
}

/// What a step gets to work with.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// /var/lib/keel.
    pub state_dir: &'a StateDir,
    /// The target root (`/` on a node).
    pub root: &'a Path,
    /// The parsed seed.
    pub seed: &'a Seed,
    /// Status lines.
    pub progress: &'a Progress,
    /// TPM TCTI string.
    pub tcti: &'a str,
}

impl Ctx<'_> {
    /// Writes `text` to the state directory file `name` atomically with
    /// `mode`; returns its path.
    pub fn write_state_file(&self, name: &str, text: &str, mode: u32) -> anyhow::Result<PathBuf> {
        let p = self.state_dir.file(name);
        keel_cmd::fs::write_atomic(&p, text.as_bytes(), mode)
            .with_context(|| format!("writing {}", p.display()))?;
        Ok(p)
    }
}

/// One step of first boot.
pub trait Step {
    /// What the step does, for status lines ("enrolling with https://...").
    fn describe(&self, ctx: &Ctx) -> String;
    /// Does the work; must be idempotent.
    fn run(&mut self, ctx: &Ctx) -> Result<(), StepError>;
}

/// A small current-thread runtime for a step's async clients (ACME, Git,
/// keel-enroll): the agent is otherwise synchronous.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::AcmeError;
    use crate::ceph::CephError;
    use crate::gitops::GitopsError;

    #[test]
    fn transient_errors_are_retried_with_what_is_awaited() {
        let e = AcmeError::GaveUp {
            attempts: 3,
            elapsed_s: 60,
            last: Box::new(AcmeError::Protocol(instant_acme::Error::Timeout(None))),
        };
        match StepError::classify(e, "the ACME CA") {
            StepError::Retry(e) => {
                assert!(
                    format!("{e:#}").starts_with("waiting for the ACME CA: "),
                    "{e:#}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_errors_end_the_run_whatever_their_text() {
        // Texts that the old substring matching took for network trouble.
        let cases: Vec<StepError> = vec![
            StepError::classify(
                GitopsError::KnownBad {
                    rev: "connect-timeout".into(),
                },
                "the Git server",
            ),
            StepError::classify(
                CephError::Inconsistent("dns unreachable, connection refused".into()),
                "the Ceph monitors",
            ),
            StepError::classify(AcmeError::Config("timed out".into()), "the ACME CA"),
        ];
        for e in cases {
            assert!(matches!(e, StepError::Other(_)), "{e:?}");
        }
    }
}
