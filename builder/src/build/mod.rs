//! `keel build`: definition → rendered mkosi configuration → mkosi → disk
//! images (raw + qcow2), UKI, build record, release manifest.
//!
//! The steps: load the definition and its lock; hash every input; skip the
//! whole build when the last build record in the output directory has the
//! same inputs and its artifacts are unchanged; otherwise render the mkosi
//! configuration into a work directory, check the lock against the archive,
//! run mkosi, convert to qcow2, check the installed packages against the
//! lock, write the build record and hand over to the supply chain.

mod esp;
mod inputs;
mod mkosi;
mod outputs;
mod packages;
pub mod progress;
pub mod repro;
pub mod sfdisk;
mod tools;
pub mod verity;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;

use crate::cli::BuildArgs;
use crate::record::BuildRecord;

pub use inputs::Prepared;
pub use mkosi::build as mkosi_build;
pub use outputs::image_sizes;

/// What a finished (or skipped) build produced.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct BuildSummary {
    pub image: String,
    pub version: String,
    pub skipped: bool,
    pub reason: String,
    pub out_dir: PathBuf,
    pub artifacts: BTreeMap<String, String>,
    pub verity_roothash: Option<String>,
    /// Built from a lock `--relock` re-resolved (the definition's was stale).
    pub relocked: bool,
    /// Locked packages taken from the package pool (the archive lacked them).
    pub from_pool: usize,
    pub seconds: f64,
    /// The release's OSTree commit (`--ostree-repo`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ostree_commit: Option<crate::ostree::commit::CommitReport>,
}

/// Runs `keel build`.
pub fn run(args: BuildArgs) -> anyhow::Result<()> {
    crate::exit::require(&args.image_dir, "image definition directory")?;
    crate::exit::require(
        &args.image_dir.join(crate::spec::FILE_NAME),
        "image definition",
    )?;
    if args.check_reproducible {
        return repro::check(&args);
    }
    let mut summary = build(&args)?;
    if let (Some(repo), Some(key)) = (&args.ostree_repo, &args.sign_key) {
        let r = crate::ostree::cli::commit_after_build(
            repo,
            &summary.out_dir,
            key,
            args.sign_key_password_file.as_deref(),
        )
        .with_context(|| format!("committing the release to {}", repo.display()))?;
        summary.ostree_commit = Some(r);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if summary.skipped {
        println!(
            "{}: up to date ({}), {:.2} s",
            summary.image, summary.reason, summary.seconds
        );
    } else {
        println!(
            "built {} {} in {:.0} s:",
            summary.image, summary.version, summary.seconds
        );
        for (name, sha) in &summary.artifacts {
            println!(
                "  {}  {}",
                &sha[..16.min(sha.len())],
                summary.out_dir.join(name).display()
            );
        }
        if let Some(h) = &summary.verity_roothash {
            println!("  verity root hash {h}");
        }
    }
    if let (Some(r), false) = (&summary.ostree_commit, args.json) {
        crate::ostree::cli::print_commit(r, false)?;
    }
    Ok(())
}

/// Builds (or skips) one image; the library entry point behind `keel build`.
pub fn build(args: &BuildArgs) -> anyhow::Result<BuildSummary> {
    let started = Instant::now();
    let mut prep = inputs::prepare(&args.image_dir)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let out_dir = std::fs::canonicalize(&args.out)?;
    if let Some(s) = up_to_date(args, &prep, &out_dir, started, false)? {
        return Ok(s);
    }

    let tools = tools::tool_versions();
    let mut durations = BTreeMap::new();
    let t = Instant::now();
    let pool = packages::pool(args)?;
    let mut plan = None;
    if let Some(lock) = prep.lock.clone() {
        let p = packages::plan(args, &prep, &lock, &pool)?;
        if let Some(new) = &p.relocked {
            prep = inputs::prepare_with(&args.image_dir, Some(new.clone()))?;
            // The last build may have been from this very lock.
            if let Some(s) = up_to_date(args, &prep, &out_dir, started, true)? {
                return Ok(s);
            }
        }
        plan = Some(p);
    } else {
        tracing::warn!(
            "no {} beside the definition: packages come at the archive's current versions (run `keel lock` for a reproducible build)",
            crate::lock::FILE_NAME
        );
    }
    durations.insert("check-lock".to_string(), t.elapsed().as_secs_f64());

    let work = work_dir(&out_dir, &prep.spec.image.name)?;
    prep.write_work_dir(&work)?;
    if let Some(p) = &plan {
        packages::stage(p, &pool, &work)?;
    }
    let stage = work.join("stage");
    let t = Instant::now();
    mkosi::build(&work, &stage, &args.cache_dir, &prep.spec.image.name)?;
    durations.insert("mkosi".to_string(), t.elapsed().as_secs_f64());

    let t = Instant::now();
    let outs = outputs::collect(&prep, &stage, &out_dir)?;
    durations.insert("outputs".to_string(), t.elapsed().as_secs_f64());
    if let Some(lock) = &prep.lock {
        packages::harvest(lock, &pool, &args.cache_dir)?;
        // The lock this build used, beside what it built (`keel pool export` takes it).
        let path = out_dir.join(crate::lock::FILE_NAME);
        keel_cmd::fs::write_atomic(&path, lock.to_text().as_bytes(), 0o644)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if !args.keep_work {
        let _ = std::fs::remove_dir_all(&work);
    }
    durations.insert("total".to_string(), started.elapsed().as_secs_f64());
    let record = write_record(&prep, tools, durations, &outs, &out_dir)?;

    release(args, &prep, &record, &out_dir, &outs)?;
    Ok(BuildSummary {
        image: record.image_name,
        version: record.image_version,
        skipped: false,
        reason: "built".into(),
        out_dir,
        artifacts: record.artifacts,
        verity_roothash: record.verity_roothash,
        relocked: plan.as_ref().is_some_and(|p| p.relocked.is_some()),
        from_pool: plan.as_ref().map_or(0, |p| p.from_pool.len()),
        seconds: started.elapsed().as_secs_f64(),
        ostree_commit: None,
    })
}

/// Writes `build-record.json`: what went in, which tools, how long each step
/// took, what came out.
fn write_record(
    prep: &Prepared,
    tools: BTreeMap<String, String>,
    durations: BTreeMap<String, f64>,
    outs: &outputs::Outputs,
    out_dir: &Path,
) -> anyhow::Result<BuildRecord> {
    let record = BuildRecord {
        format: 1,
        image_name: prep.spec.image.name.clone(),
        image_version: prep.spec.image.version.clone(),
        inputs: prep.inputs.clone(),
        tools,
        source_date_epoch: prep.source_date_epoch,
        durations,
        artifacts: outs.artifacts.clone(),
        verity_roothash: outs.roothash.clone(),
        finished_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
    };
    keel_cmd::fs::write_atomic(
        &out_dir.join(crate::record::FILE_NAME),
        record.to_json().as_bytes(),
        0o644,
    )
    .context("writing the build record")?;
    Ok(record)
}

/// The summary of a skipped build when the output directory's build record
/// has exactly `prep`'s inputs and its artifacts are unchanged. The release
/// (manifest, PCR predictions, signatures) is written again all the same:
/// it is cheap, and this Keel or this `--sign-key` may differ from the last.
fn up_to_date(
    args: &BuildArgs,
    prep: &Prepared,
    out_dir: &Path,
    started: Instant,
    relocked: bool,
) -> anyhow::Result<Option<BuildSummary>> {
    if args.force {
        return Ok(None);
    }
    let Some(rec) = BuildRecord::load(out_dir) else {
        return Ok(None);
    };
    if let Some(why) = rec.stale_reason(&prep.inputs, out_dir, &outputs::cheap_hash(&rec)) {
        tracing::info!("rebuilding: {why}");
        return Ok(None);
    }
    let uki = out_dir.join(format!("{}.efi", prep.spec.image.name));
    let outs = outputs::Outputs {
        artifacts: rec.artifacts.clone(),
        uki: uki.is_file().then_some(uki),
        roothash: rec.verity_roothash.clone(),
    };
    release(args, prep, &rec, out_dir, &outs)?;
    Ok(Some(BuildSummary {
        image: prep.spec.image.name.clone(),
        version: prep.spec.image.version.clone(),
        skipped: true,
        reason: "every input matches the last build record".into(),
        out_dir: out_dir.to_path_buf(),
        artifacts: rec.artifacts.clone(),
        verity_roothash: rec.verity_roothash.clone(),
        relocked,
        from_pool: 0,
        seconds: started.elapsed().as_secs_f64(),
        ostree_commit: None,
    }))
}

fn release(
    args: &BuildArgs,
    prep: &Prepared,
    record: &BuildRecord,
    out_dir: &Path,
    outs: &outputs::Outputs,
) -> anyhow::Result<()> {
    let ctx = crate::release::ReleaseContext {
        out_dir: out_dir.to_path_buf(),
        image_name: prep.spec.image.name.clone(),
        image_version: prep.spec.image.version.clone(),
        definition_sha256: prep.inputs.get("definition").cloned().unwrap_or_default(),
        lock_sha256: prep.inputs.get("lock").cloned(),
        source_date_epoch: prep.source_date_epoch,
        mkosi_version: record.tools.get("mkosi").cloned().unwrap_or_default(),
        artifacts: record.artifacts.keys().map(|n| out_dir.join(n)).collect(),
        uki: outs.uki.clone(),
        verity_roothash: record.verity_roothash.clone(),
        sign_key: args.sign_key.clone(),
    };
    // The password goes from its file into memory, never into the
    // environment every later child would inherit.
    crate::release::after_build(&ctx, args.sign_key_password_file.as_deref())
        .context("writing the release manifest")
}

/// A fresh work directory beside the outputs (same file system, so results move cheaply).
fn work_dir(out_dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let work = out_dir.join(format!(".keel-work-{name}"));
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("cleaning {}", work.display()))?;
    }
    std::fs::create_dir_all(&work)?;
    Ok(work)
}
