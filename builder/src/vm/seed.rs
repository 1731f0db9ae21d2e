//! cloud-init NoCloud seeds: a directory made into a `CIDATA` ISO.
//!
//! A seed directory holds `user-data` (required), and optionally `meta-data`,
//! `network-config` and `vendor-data`, the NoCloud file names. Keel makes the
//! ISO with `cloud-localds` (cloud-image-utils); a ready ISO is used as is.
//! keel-bootstrap reads the same files on a node's first boot.

use std::path::{Path, PathBuf};

use anyhow::Context;
use keel_cmd::Task;

/// What a `--seed` argument is, decided from the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedSource {
    /// A NoCloud directory to turn into an ISO.
    Dir(PathBuf),
    /// A ready ISO (or any image) attached as is.
    Iso(PathBuf),
}

impl SeedSource {
    /// Classifies `path`, which must exist.
    pub fn classify(path: &Path) -> anyhow::Result<Self> {
        let meta = std::fs::metadata(path).with_context(|| format!("seed {}", path.display()))?;
        Ok(if meta.is_dir() {
            SeedSource::Dir(path.to_path_buf())
        } else {
            SeedSource::Iso(path.to_path_buf())
        })
    }
}

/// The cloud-localds arguments that make `out` from the seed directory
/// `dir`, given which optional files exist (pure, for tests).
pub fn localds_args(dir: &Path, out: &Path, has: &dyn Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut args: Vec<PathBuf> = Vec::new();
    if has("network-config") {
        args.push("--network-config".into());
        args.push(dir.join("network-config"));
    }
    if has("vendor-data") {
        args.push("--vendor-data".into());
        args.push(dir.join("vendor-data"));
    }
    args.push(out.to_path_buf());
    args.push(dir.join("user-data"));
    if has("meta-data") {
        args.push(dir.join("meta-data"));
    }
    args
}

/// Returns the ISO to attach for `seed`, making it in `work_dir` when `seed`
/// is a directory.
pub fn prepare(seed: &Path, work_dir: &Path) -> anyhow::Result<PathBuf> {
    match SeedSource::classify(seed)? {
        SeedSource::Iso(p) => {
            std::path::absolute(&p).with_context(|| format!("resolving {}", p.display()))
        }
        SeedSource::Dir(dir) => {
            anyhow::ensure!(
                dir.join("user-data").is_file(),
                "seed directory {} has no user-data file (NoCloud needs user-data; meta-data, network-config and vendor-data are optional)",
                dir.display()
            );
            let out = work_dir.join("seed.iso");
            let has = |name: &str| dir.join(name).is_file();
            Task::new(
                format!("Making a cloud-init seed from {}", dir.display()),
                "cloud-localds",
            )
            .args(localds_args(&dir, &out, &has))
            .run()
            .context("making the cloud-init seed ISO")?;
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: Vec<PathBuf>) -> Vec<String> {
        v.into_iter().map(|p| p.display().to_string()).collect()
    }

    #[test]
    fn localds_arguments_follow_present_files() {
        let d = Path::new("/seed");
        let o = Path::new("/w/seed.iso");
        assert_eq!(
            s(localds_args(d, o, &|_| false)),
            ["/w/seed.iso", "/seed/user-data"]
        );
        assert_eq!(
            s(localds_args(d, o, &|_| true)),
            [
                "--network-config",
                "/seed/network-config",
                "--vendor-data",
                "/seed/vendor-data",
                "/w/seed.iso",
                "/seed/user-data",
                "/seed/meta-data"
            ]
        );
    }

    #[test]
    fn directory_without_user_data_is_refused() {
        let seed = tempfile::tempdir().expect("tempdir");
        let work = tempfile::tempdir().expect("tempdir");
        let e = prepare(seed.path(), work.path()).expect_err("no user-data");
        assert!(e.to_string().contains("no user-data"), "{e}");
    }

    #[test]
    fn seed_dir_becomes_a_cidata_iso() {
        if keel_cmd::which("cloud-localds").is_none() {
            keel_testbed::report_skip(format_args!(
                "seed_dir_becomes_a_cidata_iso: cloud-localds not installed"
            ));
            return;
        }
        let seed = tempfile::tempdir().expect("tempdir");
        let work = tempfile::tempdir().expect("tempdir");
        std::fs::write(seed.path().join("user-data"), "#cloud-config\n{}\n").expect("write");
        std::fs::write(seed.path().join("meta-data"), "instance-id: keel-test\n").expect("write");
        let iso = prepare(seed.path(), work.path()).expect("iso");
        let bytes = std::fs::read(&iso).expect("read iso");
        // ISO 9660 primary volume descriptor at 32 KiB: "CD001", volume id at +40.
        assert_eq!(&bytes[0x8001..0x8006], b"CD001");
        let label = String::from_utf8_lossy(&bytes[0x8028..0x8028 + 32]);
        assert_eq!(label.trim_end(), "cidata");
    }
}
