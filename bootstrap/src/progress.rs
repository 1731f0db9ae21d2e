//! Telling people what the agent is doing: systemd's status line
//! (`sd_notify STATUS=`, shown by `systemctl status`), the log (journald
//! under systemd, else stderr) and one plain line on the console a field
//! technician is looking at (`--console /dev/console`, default stderr).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sd_notify::NotifyState;

/// Where console lines go.
#[derive(Debug)]
pub struct Progress {
    console: Mutex<Option<std::fs::File>>,
    console_path: Option<PathBuf>,
}

impl Progress {
    /// Console lines go to `console` if it opens, else stderr.
    pub fn new(console: Option<&Path>) -> Progress {
        let file = console.and_then(|p| std::fs::OpenOptions::new().append(true).open(p).ok());
        Progress {
            console: Mutex::new(file),
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
        let mut guard = match self.console.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let written = guard
            .as_mut()
            .map(|f| f.write_all(line.as_bytes()).is_ok())
            .unwrap_or(false);
        // Under systemd stderr is the journal, which already has the log line.
        if !written && self.console_path.is_none() && std::env::var_os("JOURNAL_STREAM").is_none() {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}
