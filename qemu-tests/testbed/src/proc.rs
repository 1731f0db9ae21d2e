//! Child processes tracked by PID, free ports and readiness waits.

use crate::{Error, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound to port 0, then released).
pub fn free_port() -> Result<u16> {
    free_port_on(Ipv4Addr::LOCALHOST.into())
}

/// A free TCP port on `addr` (bound to port 0, then released). Fails when
/// `addr` is not an address of the calling thread's network namespace, e.g.
/// a [`crate::TestNet`] address used from outside the namespace: starters call
/// this first, so such a mistake fails at once instead of sending traffic
/// towards the host's default route.
pub fn free_port_on(addr: IpAddr) -> Result<u16> {
    let l = TcpListener::bind((addr, 0)).map_err(Error::io(format!(
        "binding a free port on {addr} (is it an address of this thread's network namespace?)"
    )))?;
    Ok(l.local_addr().map_err(Error::io("reading port"))?.port())
}

/// Two consecutive free ports P and P+1 (swtpm's server and control ports).
pub fn free_port_pair() -> Result<u16> {
    for _ in 0..50 {
        let p = free_port()?;
        if p < u16::MAX && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return Ok(p);
        }
    }
    Err(Error::Other("no two consecutive free ports".into()))
}

/// Waits until a TCP connection to `addr` succeeds.
pub fn wait_for_tcp(addr: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(mut addrs) = addr.to_socket_addrs() {
            if let Some(a) = addrs.next() {
                if TcpStream::connect_timeout(&a, Duration::from_millis(200)).is_ok() {
                    return true;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// A long-running program started by a test: killed (SIGTERM, then SIGKILL)
/// when dropped. Its stdout and stderr go to a log file whose tail is shown
/// when it fails to start.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    /// Spawns `cmd` with output to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Daemon> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(Error::io(format!("opening {}", log.display())))?;
        let f2 = f.try_clone().map_err(Error::io("cloning log handle"))?;
        tracing::debug!(command = %keel_cmd::cmdline(&cmd), "starting {name}");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(f2)
            .spawn()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Error::Missing {
                        program: cmd.get_program().to_string_lossy().into_owned(),
                        hint: "./setup.sh installs it".into(),
                    }
                } else {
                    Error::start(name, e)
                }
            })?;
        Ok(Daemon {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The last lines of the log file.
    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// An error saying the daemon did not come up, with its log tail.
    pub fn start_error(&mut self, what: &str) -> Error {
        let state = if self.is_running() {
            "still running".to_string()
        } else {
            "exited".to_string()
        };
        Error::start(
            &self.name,
            format!(
                "{what} ({state}); log {}:\n{}",
                self.log.display(),
                self.log_tail()
            ),
        )
    }

    /// Waits until `ready` returns true, failing early if the process exits.
    pub fn wait_ready(&mut self, timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if ready() {
                return Ok(());
            }
            if !self.is_running() {
                return Err(self.start_error("exited before it was ready"));
            }
            if Instant::now() > deadline {
                return Err(self.start_error(&format!("not ready after {timeout:?}")));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Stops the process: SIGTERM, up to 5 s grace, then SIGKILL; reaps it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}
