//! First boot: the resumable state machine that takes a node from its seed
//! to `Done`, and its steps.
//!
//! ```text
//! Start ──enroll──► Enrolled ──join Ceph──► CephJoined ──ACME──► Certified
//!                                                                   │ first bundle sync
//!                                    Done ◄──────────────── BundleSynced
//! ```
//!
//! [`run`] runs the step that leaves the current [`State`], persists the
//! transition ([`state`]), and repeats until `Done`. Steps are generic
//! ([`Step`]) so the machine is tested with any real step; each must be
//! idempotent, because a power cut between its side effect and the
//! persisted transition makes it run again. Transient failures (a service
//! out of reach: [`Transient`]) are retried with exponential backoff and
//! jitter ([`Backoff`]), counted in the state; a final failure (enrollment
//! rejected) stops the agent. [`Progress`] tells the technician and systemd
//! what is happening.
//!
//! The steps: [`enroll`] (Start → Enrolled), [`ceph`] (→ CephJoined),
//! [`acme`] (→ Certified), [`gitops`] (→ BundleSynced), [`finish`] (→ Done).
//!
//! With the `failpoints` feature, two fail points surround every transition:
//! `step-<stage>` (the step's work is done, the state is not yet saved) and
//! `transition-<stage>` (saved). `FAILPOINTS=transition-enrolled=return`
//! aborts the process there, like a power cut; `=panic` panics.

pub mod acme;
mod backoff;
pub mod ceph;
pub mod enroll;
pub mod finish;
pub mod gitops;
pub mod progress;
pub mod state;
mod step;

pub use backoff::Backoff;
pub use progress::Progress;
pub use state::{Persisted, State, StateDir, StateError, STAGES};
pub use step::{runtime, Ctx, Step, StepError, Transient};

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
    State(#[from] StateError),
}

/// Runs `steps[state.index()]` until `Done`. `steps` has one entry per
/// non-final state, in [`STAGES`] order.
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
