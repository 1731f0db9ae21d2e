//! A fresh software TPM 2.0 for each VM.
//!
//! `swtpm_setup` manufactures the TPM (EK, EK certificate and platform
//! certificate signed by swtpm's local test CA) in a state directory; then
//! `swtpm socket` serves it to QEMU over a unix control socket. All paths are
//! absolute: swtpm changes directory, and relative paths would break its
//! lock file. `--terminate` makes swtpm exit when QEMU disconnects, so it
//! never outlives its VM even if Keel is killed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use keel_cmd::Task;

use keel_cmd::child::{NotReady, Supervised};

/// A running swtpm with its state directory and control socket.
#[derive(Debug)]
pub struct Swtpm {
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    process: Supervised,
}

impl Swtpm {
    /// Manufactures a TPM in `dir/tpm` and starts swtpm on `dir/swtpm.sock`.
    /// `dir` must be absolute.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        anyhow::ensure!(
            dir.is_absolute(),
            "swtpm directory {} is not absolute",
            dir.display()
        );
        let state_dir = dir.join("tpm");
        std::fs::create_dir_all(&state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        let mut setup = Task::new(
            "Manufacturing a software TPM (EK and certificates)",
            "swtpm_setup",
        );
        setup
            .cmd()
            .args(["--tpm2", "--tpmstate"])
            .arg(&state_dir)
            .args([
                "--createek",
                "--create-ek-cert",
                "--create-platform-cert",
                "--pcr-banks",
                "sha256",
                "--overwrite",
            ]);
        setup.run().context("setting up the software TPM")?;

        let socket = dir.join("swtpm.sock");
        let log = dir.join("swtpm.log");
        let mut cmd = Command::new("swtpm");
        cmd.args(["socket", "--tpm2", "--terminate", "--tpmstate"])
            .arg(format!("dir={}", state_dir.display()))
            .arg("--ctrl")
            .arg(format!("type=unixio,path={}", socket.display()))
            .arg("--log")
            .arg(format!("file={},level=1", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut process = Supervised::spawn("swtpm", &mut cmd)?;
        wait_for_socket(&socket, &mut process, &log)?;
        Ok(Swtpm {
            socket,
            state_dir,
            process,
        })
    }

    /// swtpm's PID.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Stops swtpm (SIGTERM, then SIGKILL).
    pub fn stop(&mut self) -> anyhow::Result<()> {
        self.process.stop(Duration::from_secs(2))?;
        Ok(())
    }
}

fn wait_for_socket(socket: &Path, process: &mut Supervised, log: &Path) -> anyhow::Result<()> {
    match process.wait_ready(Duration::from_secs(10), || socket.exists()) {
        Ok(()) => Ok(()),
        Err(NotReady::Exited(status)) => {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            anyhow::bail!("swtpm exited ({status}) before opening its socket:\n{text}")
        }
        Err(NotReady::TimedOut(_)) => {
            anyhow::bail!("swtpm did not open {} within 10 s", socket.display())
        }
        Err(NotReady::Wait(e)) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_dir_is_refused() {
        let e = Swtpm::start(Path::new("relative/dir")).expect_err("must refuse");
        assert!(e.to_string().contains("not absolute"), "{e}");
    }
}
