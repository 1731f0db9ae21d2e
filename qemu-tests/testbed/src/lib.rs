//! Real services on loopback for tests (swtpm, PostgreSQL, pebble, a Git server,
//! Ceph, a static HTTPS file server), started as child processes tracked by PID and stopped on drop.
//! Ceph, pebble and the Git server can instead bind the bridge address of a
//! private network namespace ([`netns`]), where a QEMU guest reaches them.
//!
//! Every starter picks free ports at runtime (many tests run at once), keeps all
//! of its files in its own temporary directory, waits until the service answers,
//! and exposes the addresses and credentials a test needs. When the program is
//! not installed, `start()` returns [`Error::Missing`]; tests turn that into a
//! `SKIP <test>: <reason>` line with [`or_skip`] instead of passing silently.

pub mod ceph;
pub mod dhcp;
pub mod git;
pub mod netns;
pub mod pebble;
pub mod postgres;
mod proc;
pub mod prometheus;
pub mod static_http;
pub mod swtpm;
pub mod tls;

pub use ceph::{CephCluster, CephOptions};
pub use dhcp::Dhcp;
pub use git::{GitServer, GitServerOptions};
/// Finds a program on PATH (or by its path): keel-cmd's one lookup.
pub use keel_cmd::which;
pub use netns::{NetnsGuard, TestNet};
pub use pebble::{Pebble, PebbleOptions};
pub use postgres::Postgres;
pub use proc::{free_port, free_port_on, free_port_pair, wait_for_tcp, Daemon};
pub use prometheus::{promtool_check, Prometheus};
pub use static_http::StaticServer;
pub use swtpm::{EkType, Swtpm};
pub use tls::TestCa;

/// Errors from starting a test service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A program the service needs is not installed: the test is skipped.
    #[error("{program} is not installed ({hint})")]
    Missing { program: String, hint: String },
    /// The service needs root (or another user) and we do not have it.
    #[error("needs root: {0}")]
    NeedsRoot(String),
    /// The service did not start or answer in time.
    #[error("{service} did not start: {detail}")]
    Start { service: String, detail: String },
    #[error(transparent)]
    Cmd(#[from] keel_cmd::CmdError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// True when the test should be skipped rather than failed.
    pub fn is_skip(&self) -> bool {
        matches!(self, Error::Missing { .. } | Error::NeedsRoot(_))
    }
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
    pub(crate) fn start(service: &str, detail: impl std::fmt::Display) -> Error {
        Error::Start {
            service: service.to_string(),
            detail: detail.to_string(),
        }
    }
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// The current test's name (libtest names each test thread after its test).
pub fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("unnamed-test")
        .to_string()
}

/// Prints `SKIP <test>: <reason>` to stderr.
pub fn skip(reason: impl std::fmt::Display) {
    report_skip(format_args!("{}: {reason}", test_name()));
}

/// Writes `SKIP <what>` straight to the process's stderr. `eprintln!` would be
/// captured by the test harness and dropped for a passing test, hiding the
/// skip from whoever reads the CI log; this line always shows.
///
/// With `KEEL_TEST_STRICT=1` (what `.ci/run` sets) a skip is a failure: a
/// test that cannot run there has lost a prerequisite the setup script
/// should have installed, and CI must not pass without it.
pub fn report_skip(what: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "SKIP {what}");
    if strict() {
        panic!("KEEL_TEST_STRICT=1: a skip is a failure here: {what}");
    }
}

/// Whether skips fail (`KEEL_TEST_STRICT=1`).
pub fn strict() -> bool {
    std::env::var("KEEL_TEST_STRICT").as_deref() == Ok("1")
}

/// Writes one line straight to the process's stderr, past libtest's
/// capture (like [`report_skip`]): for figures and evidence a passing test
/// must still show in the CI log. [`report!`] is the `eprintln!`-like form.
pub fn report(what: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{what}");
}

/// `eprintln!` for evidence that must reach the CI log even when the test
/// passes (libtest hides what a passing test prints): see [`report`].
#[macro_export]
macro_rules! report {
    ($($t:tt)*) => { $crate::report(format_args!($($t)*)) };
}

/// Writes `NOT SELECTED <what>` for a test left out on purpose (an opt-in
/// slow tier, e.g. `KEEL_TEST_STORE_NODE=1`): not a skip for want of a
/// prerequisite, so strict mode lets it be.
pub fn report_not_selected(what: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "NOT SELECTED {what}");
}

/// Returns [`Error::Missing`] unless every program is installed.
pub fn require(programs: &[&str]) -> Result<()> {
    for p in programs {
        if which(p).is_none() {
            return Err(Error::Missing {
                program: (*p).to_string(),
                hint: "./setup.sh installs it".to_string(),
            });
        }
    }
    Ok(())
}

/// True when running as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Prints a SKIP line and returns true when a program is missing.
/// Use as `if keel_testbed::skip_unless(&["swtpm"]) { return; }`.
pub fn skip_unless(programs: &[&str]) -> bool {
    match require(programs) {
        Ok(()) => false,
        Err(e) => {
            skip(e);
            true
        }
    }
}

/// Like [`skip_unless`], and also skips when not running as root.
pub fn skip_unless_root_and(programs: &[&str]) -> bool {
    if !is_root() {
        skip("needs root");
        return true;
    }
    skip_unless(programs)
}

/// Turns a starter's result into `Some(service)`, or prints a SKIP line and
/// returns `None` when the service cannot run here (missing program, not root).
/// Any other error is a real failure and panics with the full message.
#[allow(clippy::panic)]
pub fn or_skip<T>(r: Result<T>) -> Option<T> {
    match r {
        Ok(t) => Some(t),
        Err(e) if e.is_skip() => {
            skip(e);
            None
        }
        Err(e) => panic!("starting test service: {e}"),
    }
}
