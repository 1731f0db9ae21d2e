//! Test daemons (keel-cmd's supervisor with the test bed's errors), free
//! ports and TCP readiness waits.

use crate::{Error, Result};
use keel_cmd::child::{NotReady, SpawnOptions, Supervised};
use keel_cmd::CmdError;
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::Command;
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

/// A long-running program started by a test, supervised by keel-cmd
/// ([`Supervised`]): killed (SIGTERM, 5 s grace, then SIGKILL) when
/// dropped. Its stdout and stderr go to a log file whose tail is shown when
/// it fails to start.
#[derive(Debug)]
pub struct Daemon {
    child: Supervised,
}

/// How long a daemon gets after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);

impl Daemon {
    /// Spawns `cmd` with output appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Daemon> {
        let opts = SpawnOptions::default().log_to(log).stop_grace(STOP_GRACE);
        match Supervised::spawn_with(name, &mut cmd, &opts) {
            Ok(child) => Ok(Daemon { child }),
            Err(CmdError::Spawn { program, source })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Err(Error::Missing {
                    program,
                    hint: "./setup.sh installs it".into(),
                })
            }
            Err(e) => Err(Error::start(name, e)),
        }
    }

    /// The process id, until the process is seen to have ended (stopped).
    pub fn pid(&self) -> Option<u32> {
        self.child.status().is_none().then(|| self.child.pid())
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child.is_running()
    }

    /// The last lines of the log file.
    pub fn log_tail(&self) -> String {
        self.child.log_tail(30)
    }

    /// An error saying the daemon did not come up, with its log tail.
    pub fn start_error(&mut self, what: &str) -> Error {
        let state = if self.is_running() {
            "still running"
        } else {
            "exited"
        };
        let log = self
            .child
            .log_path()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        Error::start(
            self.child.name(),
            format!("{what} ({state}); log {log}:\n{}", self.log_tail()),
        )
    }

    /// Waits until `ready` returns true, failing early if the process exits.
    pub fn wait_ready(&mut self, timeout: Duration, ready: impl FnMut() -> bool) -> Result<()> {
        match self.child.wait_ready(timeout, ready) {
            Ok(()) => Ok(()),
            Err(NotReady::Exited(_)) => Err(self.start_error("exited before it was ready")),
            Err(NotReady::TimedOut(t)) => Err(self.start_error(&format!("not ready after {t:?}"))),
            Err(NotReady::Wait(e)) => Err(e.into()),
        }
    }

    /// Stops the process: SIGTERM, up to 5 s grace, then SIGKILL; reaps it.
    pub fn stop(&mut self) {
        let _ = self.child.stop(STOP_GRACE);
    }

    /// Leaves the process running after this value goes (a watchdog that
    /// must outlive the test process).
    pub fn detach(self) -> u32 {
        self.child.detach()
    }
}
