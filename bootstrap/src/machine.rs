//! The first-boot state machine: runs the step that leaves the current
//! [`State`], persists the transition, and repeats until `Done`.
//!
//! Steps are generic ([`Step`]) so the machine is tested with any real step;
//! each step must be idempotent, because a power cut between its side effect
//! and the persisted transition makes it run again. Transient failures
//! (network down) are retried with exponential backoff and jitter, counted in
//! the state; a final failure (enrollment rejected) stops the agent.
//!
//! With the `failpoints` feature, two fail points surround every transition:
//! `step-<stage>` (the step's work is done, the state is not yet saved) and
//! `transition-<stage>` (saved). `FAILPOINTS=transition-enrolled=return`
//! aborts the process there, like a power cut; `=panic` panics.

use std::path::Path;
use std::time::Duration;

use rand::Rng;

use crate::progress::Progress;
use crate::seed::Seed;
use crate::state::{Persisted, State, StateDir};

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

/// One step of first boot.
pub trait Step {
    /// What the step does, for status lines ("enrolling with https://...").
    fn describe(&self, ctx: &Ctx) -> String;
    /// Does the work; must be idempotent.
    fn run(&mut self, ctx: &Ctx) -> Result<(), StepError>;
}

/// Exponential backoff with jitter.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (1-based): `initial * 2^(attempt-1)`
    /// capped at `max`, then a random 50-100% of it so a fleet that lost its
    /// WAN together does not come back in lockstep.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let capped = exp.min(self.max);
        capped.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
    }
}

/// Why the machine stopped before `Done`.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// A step failed for good.
    #[error("{stage}: {source}")]
    Step {
        /// The state it was in.
        stage: &'static str,
        /// The step's error.
        #[source]
        source: StepError,
    },
    /// The state could not be saved.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// Runs `steps[state.index()]` until `Done`. `steps` has one entry per
/// non-final state, in [`crate::state::STAGES`] order.
pub fn run(
    ctx: &Ctx,
    steps: &mut [Box<dyn Step + '_>; 5],
    backoff: Backoff,
) -> Result<Persisted, MachineError> {
    let mut p = ctx.state_dir.load()?;
    loop {
        let state = p.state;
        if state == State::Done {
            return Ok(p);
        }
        let step = &mut steps[state.index()];
        let what = step.describe(ctx);
        ctx.progress
            .status(&format!("{} ({})", what, state.describe()));
        match step.run(ctx) {
            Ok(()) => {
                let next = state.next();
                failpoint(&format!("step-{}", next.name()));
                p.state = next;
                p.last_error = None;
                ctx.state_dir.save(&p)?;
                failpoint(&format!("transition-{}", next.name()));
                tracing::info!(from = state.name(), to = next.name(), "transition");
            }
            Err(StepError::Retry(e)) => {
                p.state = state.failed();
                p.last_error = Some(format!("{e:#}"));
                ctx.state_dir.save(&p)?;
                let delay = backoff.delay(p.state.attempts());
                ctx.progress.status(&format!(
                    "waiting: {what}: {e:#}; retry {} in {}s",
                    p.state.attempts(),
                    delay.as_secs_f32().ceil()
                ));
                std::thread::sleep(delay);
            }
            Err(e) => {
                p.state = state.failed();
                p.last_error = Some(e.to_string());
                ctx.state_dir.save(&p)?;
                return Err(MachineError::Step {
                    stage: state.name(),
                    source: e,
                });
            }
        }
    }
}

/// A fail point; `return` aborts the process (a power cut), `panic` panics.
fn failpoint(name: &str) {
    fail::fail_point!(name, |_| {
        eprintln!("failpoint {name}: aborting");
        std::process::abort()
    });
    let _ = name;
}
