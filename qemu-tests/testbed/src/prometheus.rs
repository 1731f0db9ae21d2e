//! A real Prometheus server scraping one HTTPS target, for tests of a
//! service's `/metrics`: if Prometheus ingests the scrape, the exposition
//! is valid by the only parser that matters. Also `promtool check metrics`,
//! the official linter of the text format.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{Daemon, Error, Result};

/// A running Prometheus with its HTTP API on 127.0.0.1.
#[derive(Debug)]
pub struct Prometheus {
    _daemon: Daemon,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `https://<target>/metrics` every second,
    /// trusting `ca_pem` for the target's certificate.
    pub fn scrape_https(target: &str, ca_pem: &str) -> Result<Prometheus> {
        crate::require(&["prometheus"])?;
        let dir = tempfile::Builder::new()
            .prefix("keel-prometheus-")
            .tempdir()
            .map_err(Error::io("creating prometheus temp dir"))?;
        let ca = dir.path().join("ca.pem");
        crate::swtpm::write(&ca, ca_pem)?;
        let config = dir.path().join("prometheus.yml");
        crate::swtpm::write(
            &config,
            &format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: keel-enroll\n    \
                 scheme: https\n    tls_config:\n      ca_file: {}\n    static_configs:\n      - targets: ['{target}']\n",
                ca.display()
            ),
        )?;
        let port = crate::free_port()?;
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let mut daemon = Daemon::spawn("prometheus", cmd, &dir.path().join("prometheus.log"))?;
        if !crate::wait_for_tcp(&format!("127.0.0.1:{port}"), Duration::from_secs(30)) {
            return Err(daemon.start_error("prometheus API port"));
        }
        Ok(Prometheus {
            _daemon: daemon,
            port,
            _dir: dir,
        })
    }

    /// `http://127.0.0.1:PORT`, the HTTP API (`/api/v1/query?query=...`).
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Runs `promtool check metrics` on an exposition text; `Ok(lint output)`
/// when it passes, `Err` with promtool's complaints when it does not.
pub fn promtool_check(text: &str) -> Result<String> {
    crate::require(&["promtool"])?;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::start("promtool", e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(Error::io("writing to promtool"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(Error::io("waiting for promtool"))?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(said)
    } else {
        Err(Error::Other(format!(
            "promtool check metrics failed: {said}"
        )))
    }
}
