//! [`Vm`]: one running QEMU guest with its swtpm, firmware variables and
//! console, all owned and cleaned up together.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use keel_cmd::child::{NotReady, Supervised};
use regex::Regex;

use super::console::{ConsoleLog, ConsoleMatch};
use super::options::{
    ConsoleMode, ImageFormat, Network, PortForward, VmOptions, STOP_GRACE, TCG_KERNEL_ARGS,
};
use super::qemu::{qemu_args, Accel, NicPlan, QemuPlan, SerialPlan, OVMF_VARS, QEMU};
use super::swtpm::Swtpm;
use super::tap::TapDevice;
use super::{accel, disk, seed};

/// A running VM. Dropping it stops QEMU and swtpm and removes its state.
#[derive(Debug)]
pub struct Vm {
    // Field order is drop order: QEMU first, then its tap, swtpm, the directory.
    qemu: Supervised,
    tap: Option<TapDevice>,
    swtpm: Swtpm,
    console: Option<ConsoleLog>,
    console_socket: Option<PathBuf>,
    qemu_stderr: Option<PathBuf>,
    accel: Accel,
    forwards: Vec<PortForward>,
    started: Instant,
    dir: tempfile::TempDir,
}

/// The host tools a VM needs are there, and the options fit together.
fn check_host(opts: &VmOptions) -> anyhow::Result<()> {
    let mut missing = super::missing_host_tools();
    if matches!(
        opts.network,
        Network::Tap {
            bridge: Some(_),
            ..
        }
    ) && keel_cmd::which("ip").is_none()
    {
        missing.push("ip".to_string());
    }
    anyhow::ensure!(
        missing.is_empty(),
        "missing host tools for VMs: {} (./setup.sh installs them)",
        missing.join(", ")
    );
    anyhow::ensure!(
        opts.forwards.is_empty() || opts.network == Network::User,
        "port forwards work only with user networking, not on a tap device"
    );
    Ok(())
}

/// Where the serial console goes: QEMU's stdio (and a log), or a socket in
/// the VM directory `d` copied to a log. Returns the plan, the console log
/// to read and the socket.
fn serial_plan(
    mode: &ConsoleMode,
    d: &Path,
) -> anyhow::Result<(SerialPlan, Option<ConsoleLog>, Option<PathBuf>)> {
    Ok(match mode {
        ConsoleMode::Terminal { log } => {
            let log = log.as_deref().map(absolute).transpose()?;
            let console = log.as_ref().map(ConsoleLog::new);
            (SerialPlan::Stdio { log }, console, None)
        }
        ConsoleMode::Log(log) => {
            let log = absolute(log)?;
            let socket = d.join("console.sock");
            let serial = SerialPlan::Socket {
                socket: socket.clone(),
                log: log.clone(),
            };
            (serial, Some(ConsoleLog::new(log)), Some(socket))
        }
    })
}

/// The NIC: user networking with its forwards, or a tap device (created
/// and attached to the bridge when one is given).
fn nic_plan(opts: &VmOptions) -> anyhow::Result<(NicPlan, Option<TapDevice>)> {
    Ok(match &opts.network {
        Network::User => (
            NicPlan::User {
                forwards: opts.forwards.clone(),
            },
            None,
        ),
        Network::Tap { ifname, bridge } => {
            let tap = bridge
                .as_deref()
                .map(|b| TapDevice::create(ifname, b))
                .transpose()?;
            let nic = NicPlan::Tap {
                ifname: ifname.clone(),
            };
            (nic, tap)
        }
    })
}

/// QEMU without a terminal: no stdin, no stdout, stderr into
/// `d/qemu.stderr` (for the error message when it fails); returns that path.
fn capture_output(cmd: &mut Command, d: &Path) -> anyhow::Result<PathBuf> {
    let p = d.join("qemu.stderr");
    let f = File::create(&p).with_context(|| format!("creating {}", p.display()))?;
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(f);
    Ok(p)
}

impl Vm {
    /// Starts a VM: manufactures a TPM, copies the firmware variables,
    /// prepares the seed, picks the accelerator, sets up the tap device
    /// (with [`Network::Tap`]) and launches QEMU. QEMU, swtpm and the tap
    /// are in the calling thread's network namespace.
    pub fn start(opts: VmOptions) -> anyhow::Result<Vm> {
        check_host(&opts)?;
        let image = std::path::absolute(&opts.image)
            .with_context(|| format!("resolving {}", opts.image.display()))?;
        let format = detect_format(&image)?;
        let accel = accel::resolve(opts.accel)?;

        let dir = tempfile::Builder::new()
            .prefix("keel-vm-")
            .tempdir()
            .context("creating the VM's temporary directory")?;
        let d = std::path::absolute(dir.path()).context("resolving the VM directory")?;
        let ovmf_vars = d.join("OVMF_VARS.fd");
        std::fs::copy(OVMF_VARS, &ovmf_vars).with_context(|| format!("copying {OVMF_VARS}"))?;
        let seed_iso = match &opts.seed {
            Some(s) => Some(seed::prepare(s, &d)?),
            None => None,
        };
        let swtpm = Swtpm::start(&d.join("swtpm"))?;

        let (serial, console, console_socket) = serial_plan(&opts.console, &d)?;
        let (image, format, snapshot) = disk::prepare(&image, format, &opts, &d)?;
        let (nic, tap) = nic_plan(&opts)?;
        let pidfile = d.join("qemu.pid");
        let mut kernel_args = opts.kernel_args.clone();
        if accel == Accel::Tcg {
            kernel_args.extend(TCG_KERNEL_ARGS.iter().map(|a| a.to_string()));
        }
        let plan = QemuPlan {
            accel,
            memory_mib: opts.memory_mib,
            cpus: opts.cpus,
            image,
            format,
            snapshot,
            ovmf_vars,
            tpm_socket: swtpm.socket.clone(),
            nic,
            mac: opts.mac,
            serial,
            seed_iso,
            pidfile: pidfile.clone(),
            kernel_args,
        };
        let mut cmd = Command::new(QEMU);
        cmd.args(qemu_args(&plan));
        let qemu_stderr = if matches!(opts.console, ConsoleMode::Log(_)) {
            Some(capture_output(&mut cmd, &d)?)
        } else {
            None
        };
        tracing::info!(
            accel = accel.name(),
            memory_mib = opts.memory_mib,
            "Booting {}",
            opts.image.display()
        );
        let qemu = Supervised::spawn("qemu", &mut cmd)?;
        let mut vm = Vm {
            qemu,
            tap,
            swtpm,
            console,
            console_socket,
            qemu_stderr,
            accel,
            forwards: opts.forwards,
            started: Instant::now(),
            dir,
        };
        vm.wait_until_running(&pidfile)?;
        Ok(vm)
    }

    /// Waits for QEMU's pidfile (written once the machine is set up), failing
    /// with QEMU's own error text if it exits first.
    fn wait_until_running(&mut self, pidfile: &Path) -> anyhow::Result<()> {
        match self
            .qemu
            .wait_ready(Duration::from_secs(30), || pidfile.exists())
        {
            Ok(()) => Ok(()),
            Err(NotReady::Exited(status)) => {
                anyhow::bail!("QEMU exited at start ({status}):\n{}", self.qemu_errors())
            }
            Err(NotReady::TimedOut(_)) => anyhow::bail!("QEMU did not start within 30 s"),
            Err(NotReady::Wait(e)) => Err(e.into()),
        }
    }

    /// What QEMU printed on stderr (when it was captured).
    pub fn qemu_errors(&self) -> String {
        self.qemu_stderr
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// The accelerator this VM runs with.
    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// QEMU's PID.
    pub fn qemu_pid(&self) -> u32 {
        self.qemu.pid()
    }

    /// swtpm's PID.
    pub fn swtpm_pid(&self) -> u32 {
        self.swtpm.pid()
    }

    /// The TPM's state directory (holds the EK certificate swtpm_setup made).
    pub fn tpm_state_dir(&self) -> &Path {
        &self.swtpm.state_dir
    }

    /// The VM's private directory (firmware variables, sockets, TPM state).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The host port forwards.
    pub fn forwards(&self) -> &[PortForward] {
        &self.forwards
    }

    /// The tap device this VM created (with [`Network::Tap`] and a bridge).
    pub fn tap_name(&self) -> Option<&str> {
        self.tap.as_ref().map(TapDevice::name)
    }

    /// Time since QEMU was started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The console log file, if the console is logged.
    pub fn console_log_path(&self) -> Option<&Path> {
        self.console.as_ref().map(ConsoleLog::path)
    }

    /// Everything the guest printed on its serial console so far.
    pub fn console_log(&self) -> String {
        self.console
            .as_ref()
            .map(ConsoleLog::text)
            .unwrap_or_default()
    }

    /// Waits until a console line after the previous match matches `pattern`
    /// (a regex), and returns it. Fails when `timeout` passes or QEMU exits,
    /// with the console's last lines in the error.
    pub fn wait_for_console(
        &mut self,
        pattern: &str,
        timeout: Duration,
    ) -> anyhow::Result<ConsoleMatch> {
        self.wait_for_console_unless(pattern, &[], timeout)
    }

    /// Like [`Vm::wait_for_console`], but fails as soon as a line matches one
    /// of `failures` first (e.g. "emergency mode", "Kernel panic"), so a test
    /// does not wait out its whole timeout on a boot that already failed.
    pub fn wait_for_console_unless(
        &mut self,
        pattern: &str,
        failures: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<ConsoleMatch> {
        let mut res =
            vec![Regex::new(pattern).with_context(|| format!("console pattern `{pattern}`"))?];
        for f in failures {
            res.push(Regex::new(f).with_context(|| format!("console pattern `{f}`"))?);
        }
        let end = Instant::now() + timeout;
        loop {
            let console = self
                .console
                .as_mut()
                .context("this VM's console is not logged (give it a console log file)")?;
            match console.find_next_any(&res) {
                Some((0, m)) => return Ok(m),
                Some((_, m)) => {
                    // Let the guest print a little more context after the failure.
                    std::thread::sleep(Duration::from_secs(2));
                    anyhow::bail!(
                        "console showed `{}` while waiting for `{pattern}`; last console lines:\n{}",
                        m.line,
                        self.tail(60)
                    );
                }
                None => {}
            }
            if let Some(status) = self.qemu.try_wait()? {
                anyhow::bail!(
                    "QEMU exited ({status}) before the console showed `{pattern}`; last console lines:\n{}\n{}",
                    self.tail(40),
                    self.qemu_errors()
                );
            }
            if Instant::now() >= end {
                anyhow::bail!(
                    "console did not show `{pattern}` within {} s (accel {}); last console lines:\n{}",
                    timeout.as_secs(),
                    self.accel.name(),
                    self.tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn tail(&self, n: usize) -> String {
        self.console.as_ref().map(|c| c.tail(n)).unwrap_or_default()
    }

    /// Types `text` on the serial console (log-mode consoles only).
    pub fn send_console(&self, text: &str) -> anyhow::Result<()> {
        let sock = self
            .console_socket
            .as_ref()
            .context("this VM's console is on a terminal, not a socket")?;
        let mut s = std::os::unix::net::UnixStream::connect(sock)
            .with_context(|| format!("connecting to {}", sock.display()))?;
        s.write_all(text.as_bytes())
            .context("writing to the console")?;
        // Let QEMU read it before we hang up; drain what it echoes meanwhile.
        s.set_read_timeout(Some(Duration::from_millis(300)))?;
        let mut sink = [0u8; 4096];
        let _ = s.read(&mut sink);
        Ok(())
    }

    /// QEMU's exit status if it has ended (guest powered off or QEMU quit).
    pub fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        Ok(self.qemu.try_wait()?)
    }

    /// Waits up to `timeout` for QEMU to end by itself.
    pub fn wait_timeout(&mut self, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
        Ok(self.qemu.wait_timeout(timeout)?)
    }

    /// Stops QEMU (SIGTERM, then SIGKILL) and swtpm; returns QEMU's status.
    pub fn stop(mut self) -> anyhow::Result<ExitStatus> {
        self.stop_in_place()
    }

    /// Like [`Vm::stop`], for callers that keep the value (e.g. to read the log after).
    pub fn stop_in_place(&mut self) -> anyhow::Result<ExitStatus> {
        let status = self.qemu.stop(STOP_GRACE).context("stopping QEMU")?;
        // Deleting the tap needs QEMU gone (it holds the device open).
        drop(self.tap.take());
        self.swtpm.stop().context("stopping swtpm")?;
        Ok(status)
    }
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))
}

fn detect_format(image: &Path) -> anyhow::Result<ImageFormat> {
    let mut f = File::open(image).with_context(|| format!("opening image {}", image.display()))?;
    let mut head = [0u8; 4];
    let n = f
        .read(&mut head)
        .with_context(|| format!("reading {}", image.display()))?;
    Ok(ImageFormat::detect(&head[..n]))
}
