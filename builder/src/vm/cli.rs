//! `keel vm run`: the command-line face of [`super::Vm`].
//!
//! Boots the image, shows or logs the console, and waits until the guest
//! powers off, `--timeout` passes, `--until` matches the console, or the user
//! presses Ctrl-C (SIGINT, SIGTERM and SIGHUP are caught). Every path out
//! stops QEMU and swtpm by PID.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use regex::Regex;

use super::options::{
    parse_ifname, AccelChoice, ConsoleMode, MacAddr, Network, PortForward, VmOptions, DEFAULT_CPUS,
    DEFAULT_DISK_GIB, DEFAULT_MEMORY_MIB,
};
use super::Vm;

/// `keel vm` subcommands.
#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Boot an image (raw or qcow2) under QEMU with UEFI firmware and a fresh software TPM.
    // Boxed: the run options are far bigger than the other variants.
    Run(Box<RunArgs>),
    /// Show whether KVM works here (probing if needed) and which accelerator `keel vm` uses.
    Accel(AccelArgs),
}

/// Options of `keel vm run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The disk image: IMAGE.raw or IMAGE.qcow2 from `keel build`.
    pub image: PathBuf,
    /// Discard the guest's disk writes so the image file stays untouched (the default).
    #[arg(long, overrides_with = "no_snapshot")]
    pub snapshot: bool,
    /// Let the guest write to the image file.
    #[arg(long)]
    pub no_snapshot: bool,
    /// Size of the guest's disk in GiB (room for the /var partition made at first boot).
    #[arg(long, value_name = "GIB", default_value_t = DEFAULT_DISK_GIB)]
    pub disk_size: u64,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = DEFAULT_MEMORY_MIB)]
    pub memory: u32,
    /// Guest CPUs.
    #[arg(long, default_value_t = DEFAULT_CPUS)]
    pub cpus: u32,
    /// Forward 127.0.0.1:HOSTPORT to the guest's GUESTPORT (TCP); repeatable, e.g. --forward 2222:22.
    #[arg(
        long = "forward",
        value_name = "HOSTPORT:GUESTPORT",
        conflicts_with = "tap"
    )]
    pub forwards: Vec<PortForward>,
    /// Put the NIC on tap device NAME instead of user networking (needs root). The
    /// tap must exist unless --bridge is given. Use `ip netns exec NS keel vm run ...`
    /// to run the VM and its tap inside a network namespace.
    #[arg(long, value_name = "NAME", value_parser = parse_ifname)]
    pub tap: Option<String>,
    /// Create the --tap device, attach it to bridge BRIDGE, and delete it when the VM stops.
    #[arg(long, value_name = "BRIDGE", requires = "tap", value_parser = parse_ifname)]
    pub bridge: Option<String>,
    /// The NIC's MAC address (default 52:54:00:12:34:56); guests on one bridge need different ones.
    #[arg(long, value_name = "MAC")]
    pub mac: Option<MacAddr>,
    /// Also write the serial console to FILE (with --json or no terminal: only there).
    #[arg(long, value_name = "FILE")]
    pub console_log: Option<PathBuf>,
    /// cloud-init NoCloud seed: a directory with user-data [meta-data network-config vendor-data], or a CIDATA ISO.
    #[arg(long, value_name = "DIR_OR_ISO")]
    pub seed: Option<PathBuf>,
    /// Stop the VM after this many seconds (exit status 124).
    #[arg(long, value_name = "S")]
    pub timeout: Option<u64>,
    /// Stop the VM with success once a console line matches this regex (e.g. 'login: $').
    #[arg(long, value_name = "REGEX")]
    pub until: Option<String>,
    /// Accelerator: auto (probe KVM, cached), kvm or tcg. KEEL_ACCEL sets the default.
    #[arg(long, default_value = "auto")]
    pub accel: AccelChoice,
    /// Extra kernel command-line argument (repeatable), passed to the image's UKI through SMBIOS.
    #[arg(long = "kernel-arg", value_name = "ARG")]
    pub kernel_args: Vec<String>,
    /// Print JSON events (started, stopped) on stdout; the console goes only to --console-log.
    #[arg(long)]
    pub json: bool,
}

/// Options of `keel vm accel`.
#[derive(Debug, Args)]
pub struct AccelArgs {
    /// Probe again even if a cached result exists.
    #[arg(long)]
    pub reprobe: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs a `keel vm` subcommand.
pub fn run(cmd: VmCommand) -> anyhow::Result<()> {
    match cmd {
        VmCommand::Run(args) => run_vm(*args),
        VmCommand::Accel(args) => show_accel(args),
    }
}

/// Why `keel vm run` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
enum Ending {
    GuestExited,
    UntilMatched,
    Timeout,
    Signal,
}

fn run_vm(args: RunArgs) -> anyhow::Result<()> {
    let interactive = !args.json && std::io::stdout().is_terminal();
    // --until needs a log to read; keep it beside the VM's state when the user gave none.
    let scratch = tempfile::Builder::new()
        .prefix("keel-vm-console-")
        .tempdir()?;
    let opts = vm_options(&args, interactive, &scratch);
    let until = args
        .until
        .as_deref()
        .map(|u| Regex::new(u).with_context(|| format!("--until pattern `{u}`")))
        .transpose()?;
    let stop = stop_on_signals()?;

    let started = Instant::now();
    let mut vm = Vm::start(opts).context("starting the VM")?;
    announce(&args, &vm, interactive);
    let deadline = args.timeout.map(|s| started + Duration::from_secs(s));
    let (ending, status) = watch(&mut vm, &stop, until.as_ref(), deadline)?;
    let errors = vm.qemu_errors();
    let status = match status {
        Some(s) => {
            vm.stop_in_place().context("stopping swtpm")?;
            s
        }
        None => vm.stop_in_place()?,
    };
    drop(vm);
    let secs = started.elapsed().as_secs_f64();
    if args.json {
        let ev = serde_json::json!({
            "event": "stopped",
            "reason": ending,
            "qemu-exit-code": status.code(),
            "seconds": (secs * 10.0).round() / 10.0,
            "console-log": args.console_log,
        });
        println!("{ev}");
    }
    match ending {
        Ending::GuestExited if status.success() => Ok(()),
        Ending::GuestExited => anyhow::bail!("QEMU exited with {status}\n{errors}"),
        Ending::UntilMatched => Ok(()),
        Ending::Signal => {
            tracing::info!("stopped on signal after {secs:.1} s");
            Ok(())
        }
        Ending::Timeout => Err(crate::exit::Error::Timeout(format!(
            "stopped the VM after the {} s --timeout",
            args.timeout.unwrap_or(0)
        ))
        .into()),
    }
}

/// The VM's options from the command line; the console goes to the
/// terminal when there is one (and to `--console-log`), else only to a log
/// (`--console-log`, or one in `scratch`).
fn vm_options(args: &RunArgs, interactive: bool, scratch: &tempfile::TempDir) -> VmOptions {
    let mut opts = VmOptions::new(&args.image, PathBuf::new());
    opts.snapshot = !args.no_snapshot;
    opts.disk_gib = args.disk_size;
    opts.memory_mib = args.memory;
    opts.cpus = args.cpus;
    opts.forwards = args.forwards.clone();
    opts.network = match &args.tap {
        Some(ifname) => Network::Tap {
            ifname: ifname.clone(),
            bridge: args.bridge.clone(),
        },
        None => Network::User,
    };
    opts.mac = args.mac;
    opts.seed = args.seed.clone();
    opts.accel = args.accel;
    opts.kernel_args = args.kernel_args.clone();
    let log = args.console_log.clone().or_else(|| {
        (args.until.is_some() || !interactive).then(|| scratch.path().join("console.log"))
    });
    opts.console = match log {
        Some(log) if !interactive => ConsoleMode::Log(log),
        log => ConsoleMode::Terminal { log },
    };
    opts
}

/// A flag set by SIGINT, SIGTERM or SIGHUP.
fn stop_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    Ok(stop)
}

/// Says the VM started: a JSON event, a line on stderr without a terminal,
/// and the port forwards in the log.
fn announce(args: &RunArgs, vm: &Vm, interactive: bool) {
    let console_path = vm.console_log_path().map(|p| p.display().to_string());
    if args.json {
        let ev = serde_json::json!({
            "event": "started",
            "image": args.image,
            "accel": vm.accel(),
            "qemu-pid": vm.qemu_pid(),
            "swtpm-pid": vm.swtpm_pid(),
            "forwards": vm.forwards(),
            "tap": args.tap,
            "mac": args.mac,
            "console-log": console_path,
            "snapshot": !args.no_snapshot,
        });
        println!("{ev}");
    } else if !interactive {
        eprintln!(
            "keel vm: booting {} ({}, console in {}); Ctrl-C stops it",
            args.image.display(),
            vm.accel().name(),
            console_path.as_deref().unwrap_or("-")
        );
    }
    for f in vm.forwards() {
        tracing::info!("port forward {f}");
    }
}

/// Waits until the guest exits, a signal arrives, the console matches
/// `until` or `deadline` passes; QEMU's exit status when it exited.
fn watch(
    vm: &mut Vm,
    stop: &AtomicBool,
    until: Option<&Regex>,
    deadline: Option<Instant>,
) -> anyhow::Result<(Ending, Option<std::process::ExitStatus>)> {
    let mut console = vm.console_log_path().map(super::ConsoleLog::new);
    loop {
        if let Some(s) = vm.try_wait()? {
            return Ok((Ending::GuestExited, Some(s)));
        }
        if stop.load(Ordering::Relaxed) {
            return Ok((Ending::Signal, None));
        }
        if let (Some(re), Some(c)) = (until, console.as_mut()) {
            if let Some(m) = c.find_next(re) {
                tracing::info!("console matched: {}", m.line);
                return Ok((Ending::UntilMatched, None));
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok((Ending::Timeout, None));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn show_accel(args: AccelArgs) -> anyhow::Result<()> {
    if args.reprobe {
        let _ = std::fs::remove_file(super::accel::cache_dir().join("kvm-probe.json"));
    }
    let rec = super::accel::probe_cached()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rec)?);
    } else {
        println!("{}: {}", rec.accel.name(), rec.reason);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(subcommand)]
        cmd: VmCommand,
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        T::command().debug_assert();
    }

    #[test]
    fn run_arguments_parse() {
        let t = T::try_parse_from([
            "vm",
            "run",
            "img.qcow2",
            "--no-snapshot",
            "--memory",
            "3072",
            "--forward",
            "2222:22",
            "--forward",
            "8443:443",
            "--timeout",
            "60",
            "--accel",
            "tcg",
        ])
        .expect("parses");
        let VmCommand::Run(r) = t.cmd else {
            panic!("not run")
        };
        assert!(r.no_snapshot);
        assert_eq!(r.memory, 3072);
        assert_eq!(
            r.forwards,
            [
                PortForward {
                    host: 2222,
                    guest: 22
                },
                PortForward {
                    host: 8443,
                    guest: 443
                }
            ]
        );
        assert_eq!(r.timeout, Some(60));
        assert_eq!(r.accel, AccelChoice::Tcg);
        assert!(T::try_parse_from(["vm", "run", "i", "--forward", "22"]).is_err());
    }

    #[test]
    fn tap_arguments_parse() {
        let t = T::try_parse_from([
            "vm",
            "run",
            "img.qcow2",
            "--tap",
            "keel-tap0",
            "--bridge",
            "br0",
            "--mac",
            "52:54:00:e7:07:01",
        ])
        .expect("parses");
        let VmCommand::Run(r) = t.cmd else {
            panic!("not run")
        };
        assert_eq!(r.tap.as_deref(), Some("keel-tap0"));
        assert_eq!(r.bridge.as_deref(), Some("br0"));
        assert_eq!(r.mac, Some(MacAddr([0x52, 0x54, 0, 0xe7, 7, 1])));
        // Forwards are a user-networking feature; a bridge needs a tap.
        assert!(
            T::try_parse_from(["vm", "run", "i", "--tap", "t", "--forward", "2222:22"]).is_err()
        );
        assert!(T::try_parse_from(["vm", "run", "i", "--bridge", "br0"]).is_err());
        assert!(T::try_parse_from(["vm", "run", "i", "--tap", "bad,name"]).is_err());
        assert!(T::try_parse_from(["vm", "run", "i", "--mac", "01:00:5e:00:00:01"]).is_err());
    }
}
