//! What a VM test needs from the host, and the `SKIP <test>: <reason>` line
//! it prints instead of passing silently when something is missing.

use keel_builder::vm;

/// Why VM tests cannot run here (not root, a tool missing), or `None`.
pub fn vm_unavailable() -> Option<String> {
    let missing = vm::missing_host_tools();
    if !missing.is_empty() {
        return Some(format!(
            "missing {} (./setup.sh installs them)",
            missing.join(", ")
        ));
    }
    None
}

/// Why images cannot be built here, or `None`: `keel build` runs mkosi,
/// which needs root (or a user namespace setup Keel does not use).
pub fn build_unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root (mkosi needs root to build images)".into());
    }
    if keel_cmd::which("mkosi").is_none() {
        return Some(
            "mkosi not installed (./setup.sh installs mkosi 24 from bookworm-backports)".into(),
        );
    }
    None
}

/// Prints the skip line for `test` and returns true when VM tests that
/// build images cannot run.
pub fn skip_vm_test(test: &str) -> bool {
    match build_unavailable().or_else(vm_unavailable) {
        Some(reason) => {
            keel_testbed::report_skip(format_args!("{test}: {reason}"));
            true
        }
        None => false,
    }
}

/// True (after printing the skip line) unless the environment variable
/// `var` is `1`: for slow tests kept out of the default CI run.
pub fn skip_unless_env(test: &str, var: &str) -> bool {
    if std::env::var(var).as_deref() == Ok("1") {
        false
    } else {
        keel_testbed::report_not_selected(format_args!("{test}: slow; set {var}=1 to run it"));
        true
    }
}

/// Upper bound for a guest to reach what a test waits for (TCG on a busy
/// 2-core machine is slow): `KEEL_TEST_BOOT_TIMEOUT` seconds, else `default_secs`.
pub fn boot_timeout(default_secs: u64) -> std::time::Duration {
    let secs = std::env::var("KEEL_TEST_BOOT_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_secs);
    std::time::Duration::from_secs(secs)
}
