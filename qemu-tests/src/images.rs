//! Building the images under images/ with the real `keel build`, once.
//!
//! Every test that needs an image calls [`build`]; outputs go to a
//! persistent directory (`KEEL_TEST_IMAGES`, default
//! /var/tmp/keel-qemu-tests) where `keel build` finds its last build record
//! and skips mkosi when no input changed, so the second caller pays almost
//! nothing. A lock file serialises builds of one image across test binaries
//! running at the same time.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use keel_builder::cli::{self, Cli};
use nix::fcntl::{Flock, FlockArg};

/// A built image's files.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    pub name: String,
    /// The raw GPT disk image.
    pub raw: PathBuf,
    /// The compressed qcow2 image.
    pub qcow2: PathBuf,
    /// The directory holding both and the build record.
    pub dir: PathBuf,
}

/// The workspace root (where images/ is).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// Where test images are built: `KEEL_TEST_IMAGES` or /var/tmp/keel-qemu-tests.
pub fn images_dir() -> PathBuf {
    std::env::var_os("KEEL_TEST_IMAGES")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/keel-qemu-tests"))
}

/// Builds images/`name` with `keel build` (a no-op when nothing changed)
/// and returns its outputs.
pub fn build(name: &str) -> anyhow::Result<BuiltImage> {
    let src = workspace_root().join("images").join(name);
    build_from(&src, name, &[])
}

/// Builds the definition in `src` into `images_dir()/out_name` with extra
/// `keel build` arguments (e.g. `--sign-key`), serialised with every other
/// build of `out_name`.
pub fn build_from(src: &Path, out_name: &str, extra: &[&str]) -> anyhow::Result<BuiltImage> {
    anyhow::ensure!(src.is_dir(), "no image definition at {}", src.display());
    let spec = keel_builder::spec::load(src)?;
    let name = spec.image.name;
    let out = images_dir().join(out_name);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let lock_path = images_dir().join(format!("{out_name}.lock"));
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .with_context(|| format!("locking {}", lock_path.display()))?;
    let started = std::time::Instant::now();
    let mut argv: Vec<&std::ffi::OsStr> = vec![
        "keel".as_ref(),
        "build".as_ref(),
        src.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        // A committed lock goes stale when Debian drops a version: tests
        // re-resolve (the build says so on stderr) instead of failing.
        "--relock".as_ref(),
    ];
    argv.extend(extra.iter().map(std::ffi::OsStr::new));
    let cli = Cli::try_parse_from(argv).context("keel build arguments")?;
    cli::run(cli).with_context(|| format!("keel build {}", src.display()))?;
    eprintln!(
        "keel build {} -> {}: {:.1} s",
        src.display(),
        out.display(),
        started.elapsed().as_secs_f64()
    );
    let image = BuiltImage {
        raw: out.join(format!("{name}.raw")),
        qcow2: out.join(format!("{name}.qcow2")),
        name,
        dir: out,
    };
    anyhow::ensure!(
        image.raw.is_file() || image.qcow2.is_file(),
        "keel build reported success but wrote neither {} nor {}",
        image.raw.display(),
        image.qcow2.display()
    );
    Ok(image)
}

impl BuiltImage {
    /// The image to boot: raw when present (no decompression), else qcow2.
    pub fn bootable(&self) -> &Path {
        if self.raw.is_file() {
            &self.raw
        } else {
            &self.qcow2
        }
    }
}
