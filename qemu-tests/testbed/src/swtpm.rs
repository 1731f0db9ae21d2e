//! A software TPM 2.0 (swtpm) manufactured with EK certificates, served over TCP.
//!
//! `swtpm_setup` creates the TPM state with an RSA-2048 EK and an ECC EK (swtpm
//! 0.7.1 always makes both; its ECC EK is NIST P-384, certificate at NV index
//! 0x01c00016) and their certificates, issued by a local CA that lives in this
//! instance's own temp dir (so tests running at once do not share CA state).
//! Verifier tests trust [`Swtpm::ca_root_pem`] (the self-signed root) with
//! [`Swtpm::ca_issuer_pem`] as the intermediate that signed the EK certificates.

use crate::{require, Daemon, Error, Result};
use keel_cmd::CommandRunExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// NV index of the RSA-2048 EK certificate (TCG EK credential profile, low range).
pub const NV_RSA_EK_CERT: u32 = 0x01c0_0002;
/// NV index of swtpm's ECC (NIST P-384) EK certificate (high range).
pub const NV_ECC_P384_EK_CERT: u32 = 0x01c0_0016;

/// Which EK a test means; both exist in every swtpm instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EkType {
    /// RSA-2048, certificate at [`NV_RSA_EK_CERT`].
    Rsa2048,
    /// NIST P-384 (swtpm_setup's ECC EK), certificate at [`NV_ECC_P384_EK_CERT`].
    EccP384,
}

impl EkType {
    /// The NV index holding this EK's certificate.
    pub fn cert_nv_index(self) -> u32 {
        match self {
            EkType::Rsa2048 => NV_RSA_EK_CERT,
            EkType::EccP384 => NV_ECC_P384_EK_CERT,
        }
    }
}

/// A running swtpm; killed and its state removed on drop.
#[derive(Debug)]
pub struct Swtpm {
    daemon: Daemon,
    port: u16,
    dir: tempfile::TempDir,
}

impl Swtpm {
    /// Manufactures a fresh TPM and starts it on a free port pair.
    pub fn start() -> Result<Swtpm> {
        require(&["swtpm", "swtpm_setup", "swtpm_localca"])?;
        let dir = tempfile::Builder::new()
            .prefix("keel-swtpm-")
            .tempdir()
            .map_err(Error::io("creating swtpm temp dir"))?;
        let d = dir.path();
        let state = d.join("state");
        let ca = d.join("localca");
        for p in [&state, &ca] {
            std::fs::create_dir_all(p).map_err(Error::io("creating swtpm dirs"))?;
        }
        let localca_conf = d.join("swtpm-localca.conf");
        write(
            &localca_conf,
            &format!(
                "statedir = {ca}\nsigningkey = {ca}/signkey.pem\nissuercert = {ca}/issuercert.pem\ncertserial = {ca}/certserial\n",
                ca = ca.display()
            ),
        )?;
        let localca_opts = d.join("swtpm-localca.options");
        write(
            &localca_opts,
            "--platform-manufacturer Keel\n--platform-version 2.1\n--platform-model swtpm\n",
        )?;
        let setup_conf = d.join("swtpm_setup.conf");
        write(
            &setup_conf,
            &format!(
                "create_certs_tool = swtpm_localca\ncreate_certs_tool_config = {}\ncreate_certs_tool_options = {}\nactive_pcr_banks = sha256\n",
                localca_conf.display(),
                localca_opts.display()
            ),
        )?;
        Command::new("swtpm_setup")
            .args(["--tpm2", "--tpmstate"])
            .arg(&state)
            .args([
                "--createek",
                "--create-ek-cert",
                "--create-platform-cert",
                "--pcr-banks",
                "sha256",
                "--config",
            ])
            .arg(&setup_conf)
            .run()?;
        let mut last = None;
        for _ in 0..3 {
            let port = crate::free_port_pair()?;
            let mut daemon = Daemon::spawn("swtpm", swtpm_cmd(&state, port), &d.join("swtpm.log"))?;
            let ctrl = format!("127.0.0.1:{}", port + 1);
            let srv = format!("127.0.0.1:{port}");
            match daemon.wait_ready(Duration::from_secs(10), || {
                crate::wait_for_tcp(&srv, Duration::from_millis(50))
                    && crate::wait_for_tcp(&ctrl, Duration::from_millis(50))
            }) {
                Ok(()) => return Ok(Swtpm { daemon, port, dir }),
                Err(e) => last = Some(e), // most likely a port race: try other ports
            }
        }
        Err(last.unwrap_or_else(|| Error::start("swtpm", "no attempt made")))
    }

    /// The TCTI string for tpm2-tss / tss-esapi: `swtpm:host=127.0.0.1,port=P`.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// The TPM command port (the control port is `port() + 1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id of swtpm.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    /// The self-signed root of swtpm's local CA (the trust anchor for EK certs).
    pub fn ca_root_path(&self) -> PathBuf {
        self.dir
            .path()
            .join("localca/swtpm-localca-rootca-cert.pem")
    }

    /// The intermediate CA certificate that signed the EK and platform certs.
    pub fn ca_issuer_path(&self) -> PathBuf {
        self.dir.path().join("localca/issuercert.pem")
    }

    /// PEM of [`Swtpm::ca_root_path`].
    pub fn ca_root_pem(&self) -> Result<String> {
        read(&self.ca_root_path())
    }

    /// PEM of [`Swtpm::ca_issuer_path`].
    pub fn ca_issuer_pem(&self) -> Result<String> {
        read(&self.ca_issuer_path())
    }

    /// The TPM state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Simulates a reboot: stops swtpm and starts it again on the same ports
    /// with the same state (PCRs reset, keys and NV kept).
    pub fn restart(&mut self) -> Result<()> {
        self.daemon.stop();
        let state = self.state_dir();
        let log = self.dir.path().join("swtpm.log");
        self.daemon = Daemon::spawn("swtpm", swtpm_cmd(&state, self.port), &log)?;
        let srv = format!("127.0.0.1:{}", self.port);
        let ctrl = format!("127.0.0.1:{}", self.port + 1);
        self.daemon.wait_ready(Duration::from_secs(10), || {
            crate::wait_for_tcp(&srv, Duration::from_millis(50))
                && crate::wait_for_tcp(&ctrl, Duration::from_millis(50))
        })
    }
}

fn swtpm_cmd(state: &Path, port: u16) -> Command {
    let mut c = Command::new("swtpm");
    c.args(["socket", "--tpm2", "--tpmstate"])
        .arg(format!("dir={}", state.display()))
        .args([
            "--server",
            &format!("type=tcp,port={port},bindaddr=127.0.0.1"),
        ])
        .args([
            "--ctrl",
            &format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1),
        ])
        .args(["--flags", "not-need-init,startup-clear"]);
    c
}

pub(crate) fn write(p: &Path, s: &str) -> Result<()> {
    std::fs::write(p, s).map_err(Error::io(format!("writing {}", p.display())))
}

pub(crate) fn read(p: &Path) -> Result<String> {
    std::fs::read_to_string(p).map_err(Error::io(format!("reading {}", p.display())))
}
