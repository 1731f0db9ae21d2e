//! `keel bench`: how much does Keel add over bare mkosi? Cold and warm
//! `keel build` against `mkosi build` of the same rendered configuration,
//! run alternately, plus the no-change rebuild time.

use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;

use crate::cli::{BenchArgs, BuildArgs};

fn keel_build(image_dir: &Path, out: &Path, cache: &Path, force: bool) -> anyhow::Result<f64> {
    let t = Instant::now();
    crate::build::build(&BuildArgs {
        image_dir: image_dir.to_path_buf(),
        out: out.to_path_buf(),
        cache_dir: cache.to_path_buf(),
        force,
        check_reproducible: false,
        json: false,
        sign_key: None,
        sign_key_password_file: None,
        keep_work: true,
        pool: None,
        // A benchmark measures the build, not the day's archive: a stale
        // lock is re-resolved rather than failing the run.
        relock: true,
        ostree_repo: None,
    })?;
    Ok(t.elapsed().as_secs_f64())
}

fn bare_mkosi(work: &Path, stage: &Path, cache: &Path, name: &str) -> anyhow::Result<f64> {
    let t = Instant::now();
    let _ = std::fs::remove_dir_all(stage);
    crate::build::mkosi_build(work, stage, cache, name)?;
    Ok(t.elapsed().as_secs_f64())
}

/// Runs `keel bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let spec = crate::spec::load(&args.image_dir)?;
    let name = spec.image.name.clone();
    std::fs::create_dir_all(&args.work)?;
    let work = std::fs::canonicalize(&args.work)?;
    let out = work.join("out");
    let mut rows = Vec::new();
    for round in 0..args.rounds {
        for warm in [false, true] {
            let kc = work.join(format!("cache-keel-{round}"));
            let mc = work.join(format!("cache-mkosi-{round}"));
            if !warm {
                let _ = std::fs::remove_dir_all(&kc);
                let _ = std::fs::remove_dir_all(&mc);
            }
            let k = keel_build(&args.image_dir, &out, &kc, true).context("keel build")?;
            // The same rendered configuration keel just used (kept with keep_work).
            let rendered = out.join(format!(".keel-work-{name}"));
            let m = bare_mkosi(&rendered, &work.join("mkosi-stage"), &mc, &name)
                .context("bare mkosi build")?;
            let label = if warm { "warm" } else { "cold" };
            println!(
                "round {round} {label}: keel {k:.1} s, mkosi {m:.1} s, ratio {:.3}",
                k / m
            );
            rows.push((label, k, m));
        }
    }
    for label in ["cold", "warm"] {
        let (k, m): (f64, f64) = rows
            .iter()
            .filter(|r| r.0 == label)
            .fold((0.0, 0.0), |a, r| (a.0 + r.1, a.1 + r.2));
        if m > 0.0 {
            println!(
                "{label}: keel/mkosi = {:.3} (overhead {:+.1} %)",
                k / m,
                (k / m - 1.0) * 100.0
            );
        }
    }
    let kc = work.join("cache-keel-0");
    let t = keel_build(&args.image_dir, &out, &kc, false)?;
    println!("no-change rebuild: {t:.2} s");
    for ext in ["raw", "qcow2"] {
        let p = out.join(format!("{name}.{ext}"));
        if let Ok((virt, actual)) = crate::build::image_sizes(&p) {
            println!(
                "{}: virtual {} MiB, on disk {} MiB",
                p.display(),
                virt >> 20,
                actual >> 20
            );
        }
    }
    Ok(())
}
