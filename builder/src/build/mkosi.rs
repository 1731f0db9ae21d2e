//! Running mkosi on a rendered work directory.

use std::path::Path;

use anyhow::Context as _;
use keel_cmd::Task;

use super::progress::Progress;

/// Runs `mkosi build` on `work`, writing its outputs into `stage`, with the
/// package cache and mkosi's own cache under `cache_dir`.
pub fn build(work: &Path, stage: &Path, cache_dir: &Path, name: &str) -> anyhow::Result<()> {
    let pkg_cache = cache_dir.join("packages");
    let mkosi_cache = cache_dir.join("mkosi");
    for d in [stage, &pkg_cache, &mkosi_cache] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mut task = Task::new(format!("Building image {name}"), "mkosi").args([
        "--directory".as_ref(),
        work.as_os_str(),
        "--output-dir".as_ref(),
        stage.as_os_str(),
        "--package-cache-dir".as_ref(),
        pkg_cache.as_os_str(),
        "--cache-dir".as_ref(),
        mkosi_cache.as_os_str(),
        "--force".as_ref(),
        "build".as_ref(),
    ]);
    task.cmd()
        .env("SYSTEMD_LOG_LEVEL", "info")
        .current_dir(work);
    let progress = Progress::start(&format!("Building image {name} with mkosi"));
    let res = task.run_streaming(&mut |l| progress.line(l));
    progress.finish();
    // The error carries the tail of mkosi's own output.
    res.with_context(|| format!("mkosi failed to build {name}"))
}

/// Where apt (run by mkosi with `--package-cache-dir CACHE/packages`) keeps
/// the .debs it downloaded.
pub fn apt_archives(cache_dir: &Path) -> std::path::PathBuf {
    cache_dir.join("packages/cache/apt/archives")
}
