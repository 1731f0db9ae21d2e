//! What the builder's integration tests share: whether the machine can build
//! images, and the image directory and per-image lock they share with
//! qemu-tests (so a CI run builds each image once).

use std::path::{Path, PathBuf};
use std::process::Command;

use keel_cmd::CommandRunExt;

/// Why image builds cannot run here (not root, a tool missing), if so.
pub fn build_skip_reason(tools: &[&str]) -> Option<String> {
    if nix::unistd::getuid().as_raw() != 0 {
        return Some("not root (mkosi needs root)".into());
    }
    for tool in tools {
        if keel_cmd::which(tool).is_none() {
            return Some(format!("{tool} is not installed (./setup.sh --deps)"));
        }
    }
    None
}

/// Where test images are built: `KEEL_TEST_IMAGES` or /var/tmp/keel-qemu-tests.
pub fn images_dir() -> PathBuf {
    std::env::var_os("KEEL_TEST_IMAGES")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/keel-qemu-tests"))
}

/// Holds the lock that serialises every build into `images_dir()/name`.
pub fn lock_image(name: &str) -> nix::fcntl::Flock<std::fs::File> {
    let images = images_dir();
    std::fs::create_dir_all(images.join(name)).expect("images dir");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(images.join(format!("{name}.lock")))
        .expect("lock file");
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("flock")
}

/// The package cache the tests share (`KEEL_TEST_CACHE` or /var/cache/keel).
pub fn cache_dir() -> String {
    std::env::var("KEEL_TEST_CACHE").unwrap_or_else(|_| "/var/cache/keel".into())
}

/// The workspace root (where images/ is).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs the `keel` binary of this package (CI mode: plain progress lines).
pub fn keel(args: &[&str]) -> Result<String, keel_cmd::CmdError> {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .env("CI", "true")
        .run_get_string()
}
