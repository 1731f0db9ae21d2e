//! The service under test runs as its own process (`keel-enroll serve`), so
//! its CPU time can be told apart from the load generator's even though both
//! share this machine's cores.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use keel_testbed::Daemon;

/// CPU time (user + system) of a process, all its threads included, in
/// seconds. /proc counts in USER_HZ, which Linux fixes at 100 for user space.
pub fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(f.get(i)
            .context("short /proc stat")?
            .parse::<u64>()
            .context("/proc stat field")? as f64)
    };
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// A `keel-enroll serve` child process.
pub struct ServerProcess {
    daemon: Daemon,
    pid: String,
}

impl ServerProcess {
    /// Starts `program serve --config CONFIG` and waits until `listen` accepts.
    pub fn start(program: &Path, config: &Path, listen: &str, log: &Path) -> anyhow::Result<Self> {
        let mut cmd = Command::new(program);
        cmd.arg("serve")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn");
        let mut daemon = Daemon::spawn("keel-enroll serve", cmd, log)?;
        let addr = listen.to_owned();
        daemon.wait_ready(Duration::from_secs(30), || {
            keel_testbed::wait_for_tcp(&addr, Duration::from_millis(100))
        })?;
        let pid = daemon
            .pid()
            .context("server process has no pid")?
            .to_string();
        Ok(ServerProcess { daemon, pid })
    }

    /// The server's CPU seconds so far.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        cpu_seconds(&self.pid)
    }

    /// Stops the server.
    pub fn stop(mut self) {
        self.daemon.stop();
    }
}
