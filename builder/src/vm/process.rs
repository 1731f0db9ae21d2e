//! Long-running children (QEMU, swtpm) tracked by PID and stopped for sure.
//!
//! Short commands go through keel-cmd; these two run for the whole life of a
//! VM, so they are spawned here and each kept as a [`Tracked`] child: stopping
//! sends SIGTERM to its PID, waits a grace period, then SIGKILLs and reaps it.
//! Dropping a [`Tracked`] stops it, so a panicking test leaves nothing behind.

use std::process::{Child, Command, ExitStatus};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A child process that is stopped when this value is dropped.
#[derive(Debug)]
pub struct Tracked {
    name: &'static str,
    child: Child,
    status: Option<ExitStatus>,
}

impl Tracked {
    /// Spawns `cmd` (logged like keel-cmd does), naming it `name` in logs.
    pub fn spawn(name: &'static str, cmd: &mut Command) -> anyhow::Result<Self> {
        tracing::debug!(command = %keel_cmd::cmdline(cmd), "starting {name}");
        keel_cmd::scrub_secrets(cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name} (`{}`)", keel_cmd::cmdline(cmd)))?;
        tracing::debug!(pid = child.id(), "{name} started");
        Ok(Tracked {
            name,
            child,
            status: None,
        })
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has ended (it is reaped then).
    pub fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .with_context(|| format!("checking on {}", self.name))?;
        }
        Ok(self.status)
    }

    /// Waits up to `timeout` for the process to end by itself.
    pub fn wait_timeout(&mut self, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(Some(s));
            }
            if Instant::now() >= end {
                return Ok(None);
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; always reaps. Returns the exit status.
    pub fn stop(&mut self, grace: Duration) -> anyhow::Result<ExitStatus> {
        if let Some(s) = self.try_wait()? {
            return Ok(s);
        }
        let pid = Pid::from_raw(i32::try_from(self.pid()).context("pid out of range")?);
        tracing::debug!(pid = self.pid(), "stopping {} (SIGTERM)", self.name);
        // ESRCH means it is already gone (a zombie we reap below).
        let _ = kill(pid, Signal::SIGTERM);
        if let Some(s) = self.wait_timeout(grace)? {
            return Ok(s);
        }
        tracing::warn!(
            pid = self.pid(),
            "{} ignored SIGTERM; killing it",
            self.name
        );
        let _ = self.child.kill();
        let s = self
            .child
            .wait()
            .with_context(|| format!("reaping {}", self.name))?;
        self.status = Some(s);
        Ok(s)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Err(e) = self.stop(Duration::from_secs(2)) {
            tracing::warn!("stopping {}: {e:#}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(pid: u32) -> bool {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    }

    #[test]
    fn stop_terminates_and_reaps() {
        let mut t = Tracked::spawn("sleep", Command::new("sleep").arg("600")).expect("spawn");
        let pid = t.pid();
        assert!(alive(pid));
        let s = t.stop(Duration::from_secs(5)).expect("stop");
        assert!(!s.success());
        assert!(!alive(pid), "process {pid} still exists (not reaped?)");
    }

    #[test]
    fn sigterm_ignored_means_sigkill() {
        let mut t = Tracked::spawn(
            "stubborn",
            Command::new("sh").args(["-c", "trap '' TERM; while :; do sleep 0.1; done"]),
        )
        .expect("spawn");
        // Give the shell time to install its trap.
        sleep(Duration::from_millis(300));
        let pid = t.pid();
        t.stop(Duration::from_millis(300)).expect("stop");
        assert!(!alive(pid));
    }

    #[test]
    fn drop_stops_the_child() {
        let t = Tracked::spawn("sleep", Command::new("sleep").arg("600")).expect("spawn");
        let pid = t.pid();
        drop(t);
        assert!(!alive(pid));
    }

    #[test]
    fn exit_status_of_a_finished_child() {
        let mut t = Tracked::spawn("sh", Command::new("sh").args(["-c", "exit 7"])).expect("spawn");
        let s = t
            .wait_timeout(Duration::from_secs(10))
            .expect("wait")
            .expect("ended");
        assert_eq!(s.code(), Some(7));
    }
}
