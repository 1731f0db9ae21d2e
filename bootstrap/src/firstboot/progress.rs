//! Telling people what the agent is doing: systemd's status line
//! (`sd_notify STATUS=`, shown by `systemctl status`), the log (journald
//! under systemd, else stderr) and one plain line on the console a field
//! technician is looking at (`--console /dev/console`, default stderr).
//!
//! `/dev/console` is only the *last* `console=` of the kernel command line
//! (a store node has a screen on tty0 and a serial line on ttyS0): the
//! agent writes to every active console the kernel lists, so the line shows
//! wherever somebody is looking. Each line opens the consoles anew: a getty
//! starting on a serial console hangs up every file already open on it
//! (seen on a real first boot: the lines after the first were lost).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sd_notify::NotifyState;

/// Where console lines go.
#[derive(Debug)]
pub struct Progress {
    console: Mutex<Vec<PathBuf>>,
    console_path: Option<PathBuf>,
}

/// The kernel's active consoles (`/sys/class/tty/console/active`, e.g.
/// `tty0 ttyS0`) as device paths.
pub fn active_consoles(active: &str) -> Vec<PathBuf> {
    active
        .split_whitespace()
        .filter(|n| n.chars().all(|c| c.is_ascii_alphanumeric()))
        .map(|n| Path::new("/dev").join(n))
        .collect()
}

fn open(p: &Path) -> Option<std::fs::File> {
    std::fs::OpenOptions::new().append(true).open(p).ok()
}

impl Progress {
    /// Console lines go to `console` if it opens (for `/dev/console`: every
    /// active console), else stderr.
    pub fn new(console: Option<&Path>) -> Progress {
        let mut paths = Vec::new();
        if let Some(p) = console {
            if p == Path::new("/dev/console") {
                let active =
                    std::fs::read_to_string("/sys/class/tty/console/active").unwrap_or_default();
                paths.extend(
                    active_consoles(&active)
                        .into_iter()
                        .filter(|d| open(d).is_some()),
                );
            }
            if paths.is_empty() && open(p).is_some() {
                paths.push(p.to_path_buf());
            }
        }
        Progress {
            console: Mutex::new(paths),
            console_path: console.map(Path::to_path_buf),
        }
    }

    /// Tells systemd the service is up (Type=notify).
    pub fn ready(&self) {
        let _ = sd_notify::notify(false, &[NotifyState::Ready]);
    }

    /// A progress line: status, log and console.
    pub fn status(&self, msg: &str) {
        tracing::info!("{msg}");
        let _ = sd_notify::notify(false, &[NotifyState::Status(msg)]);
        self.console_line(msg);
    }

    /// A problem the technician must act on: status, error log and console.
    pub fn problem(&self, msg: &str) {
        tracing::error!("{msg}");
        let _ = sd_notify::notify(false, &[NotifyState::Status(msg)]);
        self.console_line(msg);
    }

    fn console_line(&self, msg: &str) {
        let line = format!("keel-bootstrap: {msg}\n");
        let guard = match self.console.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mut written = false;
        for p in guard.iter() {
            if let Some(mut f) = open(p) {
                written |= f.write_all(line.as_bytes()).is_ok();
            }
        }
        // Under systemd stderr is the journal, which already has the log line.
        if !written && self.console_path.is_none() && std::env::var_os("JOURNAL_STREAM").is_none() {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_active_console_is_written() {
        assert_eq!(
            active_consoles("tty0 ttyS0\n"),
            [PathBuf::from("/dev/tty0"), PathBuf::from("/dev/ttyS0")]
        );
        assert!(active_consoles("").is_empty());
        assert!(
            active_consoles("../etc ttyS0").len() == 1,
            "only plain device names"
        );
    }
}
