//! Keel's plumbing, in one small crate: the one way to run an external
//! program ([`CommandRunExt`], [`Task`]), to keep a long-running one
//! ([`child::Supervised`]), to find one ([`which()`]), to write a file that
//! survives a power cut ([`fs::write_atomic`]) and, with the `logging`
//! feature, to set up a binary's log output ([`logging::init`]).
//!
//! Keel drives real tools (mkosi, qemu-img, swtpm, ceph-volume, git, ...) rather
//! than reimplementing them. Every such call goes through [`CommandRunExt`] so
//! that the command line is logged, stdin is closed (nothing can hang waiting
//! for a prompt), and a failure carries the tail of the tool's own stderr: the
//! user sees mkosi's error text, not just "exit status 1".
//!
//! User-visible steps wrap the command in a [`Task`], which adds a description
//! ("Building image store-node") logged when the step starts.
//!
//! Signing passwords never reach a child: every command run here loses
//! [`SECRET_ENV`] from the environment it would inherit ([`scrub_secrets`]).
//! A caller that must hand one child a password (cosign in a test) sets it
//! on that command explicitly with `.env(..)`; that one is kept.

pub mod child;
mod error;
pub mod fs;
#[cfg(feature = "logging")]
pub mod logging;
mod run;
mod which;

pub use error::CmdError;
pub use run::{CommandRunExt, Task, TAIL_LINES};
pub use which::which;

use std::process::Command;

/// Environment variables holding key passwords, never inherited by a child.
pub const SECRET_ENV: &[&str] = &["KEEL_KEY_PASSWORD", "COSIGN_PASSWORD"];

/// Removes [`SECRET_ENV`] from what `cmd` inherits, keeping a value the
/// caller set on `cmd` itself. Called by every runner here, including
/// [`child::Supervised`] for long-running children (QEMU, swtpm, daemons).
pub fn scrub_secrets(cmd: &mut Command) {
    for name in SECRET_ENV {
        let explicit = cmd
            .get_envs()
            .any(|(k, v)| k == std::ffi::OsStr::new(name) && v.is_some());
        if !explicit {
            cmd.env_remove(name);
        }
    }
}

/// Renders a command line for logs and errors, quoting arguments with spaces.
pub fn cmdline(cmd: &Command) -> String {
    let mut parts = vec![quote(&cmd.get_program().to_string_lossy())];
    parts.extend(cmd.get_args().map(|a| quote(&a.to_string_lossy())));
    parts.join(" ")
}

fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_quotes_only_when_needed() {
        let mut c = Command::new("mkosi");
        c.args(["--directory", "/tmp/a b", "it's", "build"]);
        assert_eq!(cmdline(&c), r"mkosi --directory '/tmp/a b' 'it'\''s' build");
    }
}
