//! Long-running children, the one supervisor in Keel: QEMU and swtpm for
//! `keel vm`, the Ceph OSDs `keel-bootstrap --spawn-osds` starts, and every
//! service the test bed runs.
//!
//! A [`Supervised`] child is spawned like keel-cmd runs any program (command
//! line logged, key passwords scrubbed from its environment), optionally with
//! stdin closed and stdout and stderr going to a log file whose tail explains
//! a failed start ([`SpawnOptions::log_to`]). [`Supervised::wait_ready`]
//! polls a readiness check and fails early when the child exits. Stopping
//! sends SIGTERM, waits a grace period, then SIGKILLs and reaps it; dropping
//! a [`Supervised`] stops it, so a panicking test leaves nothing behind.
//! [`Supervised::detach`] leaves a daemon running instead (it outlives us).
//!
//! By default the child stays in the caller's process group: a terminal's
//! Ctrl-C reaches it, and QEMU on a terminal console stays in the foreground
//! group (a background group reading the terminal would be stopped).
//! [`SpawnOptions::own_process_group`] makes it lead its own group instead;
//! stopping then signals the whole group, so helpers it forked go with it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::{cmdline, scrub_secrets, CmdError};

/// How often waits poll the child and the readiness check.
const POLL: Duration = Duration::from_millis(20);

/// How to start a [`Supervised`] child.
#[derive(Debug, Clone)]
pub struct SpawnOptions {
    log: Option<PathBuf>,
    truncate_log: bool,
    own_group: bool,
    grace: Duration,
}

impl Default for SpawnOptions {
    /// The command's own stdio, the caller's process group, 2 s grace.
    fn default() -> Self {
        SpawnOptions {
            log: None,
            truncate_log: false,
            own_group: false,
            grace: Duration::from_secs(2),
        }
    }
}

impl SpawnOptions {
    /// Closes stdin and appends stdout and stderr to `path`.
    pub fn log_to(mut self, path: &Path) -> Self {
        self.log = Some(path.to_path_buf());
        self
    }

    /// With [`SpawnOptions::log_to`]: starts the log afresh instead of appending.
    pub fn fresh_log(mut self) -> Self {
        self.truncate_log = true;
        self
    }

    /// The child leads a new process group; stop signals the whole group.
    pub fn own_process_group(mut self) -> Self {
        self.own_group = true;
        self
    }

    /// How long the child gets after SIGTERM when dropped, before SIGKILL.
    pub fn stop_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }
}

/// Why [`Supervised::wait_ready`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    /// The child ended before the check passed.
    #[error("exited ({0}) before it was ready")]
    Exited(ExitStatus),
    /// The check did not pass in time; the child still runs.
    #[error("not ready after {0:?}")]
    TimedOut(Duration),
    /// Asking about the child failed.
    #[error(transparent)]
    Wait(#[from] CmdError),
}

/// A long-running child process, stopped when dropped (unless detached).
#[derive(Debug)]
pub struct Supervised {
    name: String,
    child: Child,
    status: Option<ExitStatus>,
    log: Option<PathBuf>,
    own_group: bool,
    grace: Duration,
    detached: bool,
}

impl Supervised {
    /// Spawns `cmd` with [`SpawnOptions::default`], naming it `name` in logs.
    pub fn spawn(name: &str, cmd: &mut Command) -> Result<Self, CmdError> {
        Self::spawn_with(name, cmd, &SpawnOptions::default())
    }

    /// Spawns `cmd` as `opts` say, naming it `name` in logs.
    pub fn spawn_with(
        name: &str,
        cmd: &mut Command,
        opts: &SpawnOptions,
    ) -> Result<Self, CmdError> {
        tracing::debug!(command = %cmdline(cmd), "starting {name}");
        scrub_secrets(cmd);
        if let Some(path) = &opts.log {
            let log_err = |source| CmdError::Log {
                program: cmd.get_program().to_string_lossy().into_owned(),
                path: path.clone(),
                source,
            };
            let out = std::fs::OpenOptions::new()
                .create(true)
                .append(!opts.truncate_log)
                .write(true)
                .truncate(opts.truncate_log)
                .open(path)
                .map_err(log_err)?;
            let err = out.try_clone().map_err(log_err)?;
            cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        }
        if opts.own_group {
            std::os::unix::process::CommandExt::process_group(cmd, 0);
        }
        let child = cmd.spawn().map_err(|source| CmdError::Spawn {
            program: cmd.get_program().to_string_lossy().into_owned(),
            source,
        })?;
        tracing::debug!(pid = child.id(), "{name} started");
        Ok(Supervised {
            name: name.to_string(),
            child,
            status: None,
            log: opts.log.clone(),
            own_group: opts.own_group,
            grace: opts.grace,
            detached: false,
        })
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file, with [`SpawnOptions::log_to`].
    pub fn log_path(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// The last `lines` lines of the log file (empty without one).
    pub fn log_tail(&self, lines: usize) -> String {
        self.log
            .as_deref()
            .map(|p| log_tail(p, lines))
            .unwrap_or_default()
    }

    /// The exit status if the process has ended (it is reaped then).
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, CmdError> {
        if self.status.is_none() {
            self.status = self.child.try_wait().map_err(|source| CmdError::Child {
                what: "checking on",
                name: self.name.clone(),
                source,
            })?;
        }
        Ok(self.status)
    }

    /// The exit status, if the process was already seen to end (no check).
    pub fn status(&self) -> Option<ExitStatus> {
        self.status
    }

    /// True while the process runs (false also when asking fails).
    pub fn is_running(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the process to end by itself.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, CmdError> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(Some(s));
            }
            if Instant::now() >= end {
                return Ok(None);
            }
            std::thread::sleep(POLL);
        }
    }

    /// Polls `ready` until it returns true; fails as soon as the process
    /// exits, or when `timeout` has passed.
    pub fn wait_ready(
        &mut self,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), NotReady> {
        let end = Instant::now() + timeout;
        loop {
            if ready() {
                return Ok(());
            }
            if let Some(status) = self.try_wait()? {
                return Err(NotReady::Exited(status));
            }
            if Instant::now() >= end {
                return Err(NotReady::TimedOut(timeout));
            }
            std::thread::sleep(POLL);
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; always reaps. Returns the exit
    /// status. A process that already ended is only reaped.
    pub fn stop(&mut self, grace: Duration) -> Result<ExitStatus, CmdError> {
        if let Some(s) = self.try_wait()? {
            return Ok(s);
        }
        tracing::debug!(pid = self.pid(), "stopping {} (SIGTERM)", self.name);
        // ESRCH means it is already gone (a zombie we reap below).
        self.signal(Signal::SIGTERM);
        let ended = self.wait_timeout(grace)?;
        if ended.is_none() {
            tracing::warn!(
                pid = self.pid(),
                "{} ignored SIGTERM; killing it",
                self.name
            );
        }
        if ended.is_none() || self.own_group {
            // With its own group: also whatever it forked and left behind.
            self.signal(Signal::SIGKILL);
        }
        if let Some(s) = ended {
            return Ok(s);
        }
        let s = self.child.wait().map_err(|source| CmdError::Child {
            what: "reaping",
            name: self.name.clone(),
            source,
        })?;
        self.status = Some(s);
        Ok(s)
    }

    /// Leaves the process running when this value goes (a daemon that
    /// outlives the caller); returns its PID. It is not reaped by us.
    pub fn detach(mut self) -> u32 {
        self.detached = true;
        self.pid()
    }

    fn signal(&self, sig: Signal) {
        let Ok(pid) = i32::try_from(self.pid()) else {
            return;
        };
        let pid = Pid::from_raw(pid);
        let _ = if self.own_group {
            killpg(pid, sig)
        } else {
            kill(pid, sig)
        };
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        if let Err(e) = self.stop(self.grace) {
            tracing::warn!("stopping {}: {e}", self.name);
        }
    }
}

/// The last `lines` lines of the file at `path` (empty when unreadable).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests;
