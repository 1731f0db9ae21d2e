//! What each subcommand does: `run` (seed → configure the root → the
//! first-boot state machine), `status`, `seed check`, and the timer entry
//! points `renew` and `sync`. Exit codes are chosen here (see [`exit_code`]).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cli::{CheckArgs, Cli, Command, RunArgs, SeedCommand, StatusArgs, TimerArgs};
use crate::firstboot::acme::{AcmeStep, ACME_CONFIG};
use crate::firstboot::ceph::{ceph_paths, CephStep};
use crate::firstboot::enroll::EnrollStep;
use crate::firstboot::finish::{own_usage, FinishStep};
use crate::firstboot::gitops::{report_applied, GitopsStep, SYNC_CONFIG};
use crate::firstboot::{
    self, Backoff, Ctx, MachineError, Persisted, Progress, State, StateDir, Step, StepError,
};
use crate::seed::{check, locate, Seed, SeedError};

/// Exit code: a step failed for good (e.g. enrollment rejected); retrying
/// will not help until a person acts. The unit does not restart on it.
pub const EXIT_FATAL: i32 = 3;
/// Exit code: the seed is missing or invalid (found while reading it, or
/// while applying it: an owner the image does not have).
pub const EXIT_SEED: i32 = 4;

/// The exit code for an error from [`main`].
pub fn exit_code(e: &anyhow::Error) -> i32 {
    for c in e.chain() {
        if let Some(MachineError::Step {
            source: StepError::Fatal { .. },
            ..
        }) = c.downcast_ref::<MachineError>()
        {
            return EXIT_FATAL;
        }
        if c.downcast_ref::<SeedError>().is_some() {
            return EXIT_SEED;
        }
    }
    1
}

/// Dispatches a subcommand.
pub fn main(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(a) => first_boot(a),
        Command::Status(a) => status(a),
        Command::Renew(a) => renew(a),
        Command::Sync(a) => sync(a),
        Command::Seed(a) => match a.command {
            SeedCommand::Check(c) => seed_check(c),
        },
    }
}

fn first_boot(a: RunArgs) -> Result<()> {
    let sd = StateDir(a.common.state_dir.clone());
    let progress = Progress::new(a.console.as_deref());
    progress.ready();
    let mut p = sd.load()?;
    if p.state == State::Done {
        progress.status("first boot already complete; nothing to do");
        return Ok(());
    }
    let seed = configure_once(&a, &sd, &mut p, &progress)?;
    let tcti = a
        .tcti
        .clone()
        .or_else(|| seed.user.keel.as_ref().and_then(|k| k.tcti.clone()))
        .unwrap_or_else(|| "device:/dev/tpmrm0".into());
    let ctx = Ctx {
        state_dir: &sd,
        root: &a.root,
        seed: &seed,
        progress: &progress,
        tcti: &tcti,
    };
    let mut steps: [Box<dyn Step>; 5] = [
        Box::new(EnrollStep {
            event_log: a.event_log.clone(),
        }),
        Box::new(CephStep {
            paths: ceph_paths(&a.root, a.spawn_osds, &a.osd_options)?,
        }),
        Box::new(AcmeStep {
            http01_listen: a.http01_listen,
        }),
        Box::new(GitopsStep),
        Box::new(FinishStep),
    ];
    let backoff = Backoff {
        initial: Duration::from_millis(a.backoff_initial_ms),
        max: Duration::from_millis(a.backoff_max_ms),
    };
    match firstboot::run(&ctx, &mut steps, backoff) {
        Ok(_) => {
            progress.status(
                "first boot complete: node enrolled, Ceph joined, certified, bundle applied",
            );
            if let Some(u) = own_usage() {
                tracing::info!("agent resource use (this process only): {u}");
            }
            Ok(())
        }
        Err(e) => {
            progress.problem(&format!("stopped: {e}"));
            Err(e.into())
        }
    }
}

/// Finds the seed, refuses one that cannot enroll before changing anything,
/// and configures the root from it unless this seed was applied already.
fn configure_once(
    a: &RunArgs,
    sd: &StateDir,
    p: &mut Persisted,
    progress: &Progress,
) -> Result<Seed> {
    let found = match locate::locate(a.seed.as_deref(), &a.root) {
        Ok(f) => f,
        Err(e) => {
            progress.problem(&format!("{e}"));
            return Err(e.into());
        }
    };
    let seed = found.seed;
    if let Err(e) = seed.keel() {
        for w in &seed.warnings {
            tracing::warn!("{w}");
        }
        progress.problem(&format!("{e}"));
        return Err(e.into());
    }
    progress.status(&format!(
        "seed {} from {}",
        seed.meta.instance_id,
        found.source.display()
    ));
    if p.seed_applied.as_deref() != Some(seed.meta.instance_id.as_str()) {
        crate::configure::apply_seed(&seed, &a.root).context("applying the seed")?;
        p.seed_applied = Some(seed.meta.instance_id.clone());
        sd.save(p)?;
    }
    Ok(seed)
}

fn status(a: StatusArgs) -> Result<()> {
    let sd = StateDir(a.common.state_dir);
    let p = sd.load()?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
        return Ok(());
    }
    println!("state:    {} ({})", p.state.name(), p.state.describe());
    if p.state.attempts() > 0 {
        println!("attempts: {} failed", p.state.attempts());
    }
    if let Some(e) = &p.last_error {
        println!("last error: {e}");
    }
    if let Some(i) = &p.seed_applied {
        println!("seed:     {i} applied");
    }
    Ok(())
}

/// `seed check`: the checks `run` does before applying, and a report.
fn seed_check(a: CheckArgs) -> Result<()> {
    let found = locate::load_any(&a.path);
    let source = a.path.display().to_string();
    let report = check::report(&source, found.as_ref().map(|f| &f.seed));
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", check::render_text(&report));
    }
    let found = found?;
    found.seed.keel()?;
    Ok(())
}

fn config_path(a: &TimerArgs, name: &str) -> PathBuf {
    a.config
        .clone()
        .unwrap_or_else(|| a.common.state_dir.join(name))
}

fn renew(a: TimerArgs) -> Result<()> {
    let path = config_path(&a, ACME_CONFIG);
    let cfg = crate::acme::AcmeConfig::load(&path)
        .with_context(|| format!("loading {}", path.display()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let out = rt
        .block_on(crate::acme::renew(&cfg))
        .context("renewing the certificate")?;
    println!("{out:?}");
    Ok(())
}

fn sync(a: TimerArgs) -> Result<()> {
    let path = config_path(&a, SYNC_CONFIG);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let cfg = crate::gitops::SyncConfig::parse(&text).context("parsing the sync config")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let out = rt
        .block_on(crate::gitops::sync(&cfg))
        .context("syncing the bundle")?;
    println!("{out:?}");
    if let Err(e) = rt.block_on(report_applied(&a.common.state_dir, &out)) {
        tracing::warn!("reporting revision {} to keel-enroll: {e:#}", out.rev());
    }
    Ok(())
}
