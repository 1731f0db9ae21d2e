//! The QEMU command line for a Keel VM, built by a pure function from a
//! [`QemuPlan`] so that it can be checked in unit tests without starting
//! anything.
//!
//! The machine is always the same: q35 with OVMF (UEFI) firmware, the disk on
//! virtio-scsi (its driver is in every mkosi initrd), a TPM 2.0 (tpm-tis)
//! backed by swtpm, a virtio NIC on user networking with host forwards on
//! 127.0.0.1 only (or on a tap device, see [`NicPlan::Tap`]), and a virtio
//! RNG so the guest does not wait for entropy.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::options::{ImageFormat, MacAddr, PortForward};

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";
/// OVMF firmware code (read-only).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// OVMF variable store template; each VM boots from its own copy.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Accelerator QEMU runs with (the result of probing or the user's choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// The name QEMU uses.
    pub fn name(&self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// The serial console's back end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialPlan {
    /// Stdio, multiplexed with the QEMU monitor (Ctrl-A C, Ctrl-A X quits),
    /// optionally copied to a log file.
    Stdio { log: Option<PathBuf> },
    /// A unix socket server (for sending input) whose output is logged to a file.
    Socket { socket: PathBuf, log: PathBuf },
}

/// The guest NIC's back end on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NicPlan {
    /// `-netdev user` with these forwards (bound to 127.0.0.1).
    User { forwards: Vec<PortForward> },
    /// `-netdev tap` on an existing tap device; QEMU runs no ifup scripts.
    Tap { ifname: String },
}

/// Everything the QEMU command line is made from; all paths absolute.
#[derive(Debug, Clone)]
pub struct QemuPlan {
    pub accel: Accel,
    pub memory_mib: u32,
    pub cpus: u32,
    pub image: PathBuf,
    pub format: ImageFormat,
    pub snapshot: bool,
    /// This VM's writable copy of the OVMF variables.
    pub ovmf_vars: PathBuf,
    /// swtpm's control socket.
    pub tpm_socket: PathBuf,
    pub nic: NicPlan,
    /// The NIC's MAC; QEMU's default when `None`.
    pub mac: Option<MacAddr>,
    pub serial: SerialPlan,
    /// A CIDATA ISO to attach as a CD-ROM.
    pub seed_iso: Option<PathBuf>,
    /// QEMU writes its PID here.
    pub pidfile: PathBuf,
    /// Extra kernel arguments for systemd-stub, through SMBIOS type 11.
    pub kernel_args: Vec<String>,
}

/// Escapes a value for QEMU's `key=value,...` option syntax (commas doubled).
fn opt_path(p: &Path) -> String {
    p.to_string_lossy().replace(',', ",,")
}

/// The QEMU arguments (without the program name) for `plan`.
pub fn qemu_args(plan: &QemuPlan) -> Vec<OsString> {
    let mut a: Vec<String> = Vec::new();
    machine_args(plan, &mut a);
    disk_args(plan, &mut a);
    device_args(plan, &mut a);
    serial_args(&plan.serial, &mut a);
    a.into_iter().map(OsString::from).collect()
}

fn push(a: &mut Vec<String>, items: &[&str]) {
    a.extend(items.iter().map(|s| s.to_string()));
}

/// Machine, CPU, memory, no defaults, the pidfile and the UEFI firmware.
fn machine_args(plan: &QemuPlan, a: &mut Vec<String>) {
    let machine = format!("q35,accel={}", plan.accel.name());
    let cpu = match plan.accel {
        Accel::Kvm => "host",
        Accel::Tcg => "max",
    };
    push(a, &["-machine", &machine, "-cpu", cpu]);
    push(
        a,
        &[
            "-m",
            &plan.memory_mib.to_string(),
            "-smp",
            &plan.cpus.to_string(),
        ],
    );
    push(a, &["-nodefaults", "-no-user-config", "-display", "none"]);
    push(a, &["-pidfile", &opt_path(&plan.pidfile)]);

    // UEFI firmware: shared read-only code, per-VM variables.
    let code = format!(
        "if=pflash,format=raw,unit=0,readonly=on,file={}",
        opt_path(Path::new(OVMF_CODE))
    );
    let vars = format!(
        "if=pflash,format=raw,unit=1,file={}",
        opt_path(&plan.ovmf_vars)
    );
    push(a, &["-drive", &code, "-drive", &vars]);
}

/// The disk on virtio-scsi, and the seed ISO as a CD-ROM beside it.
fn disk_args(plan: &QemuPlan, a: &mut Vec<String>) {
    let snapshot = if plan.snapshot { "on" } else { "off" };
    let disk = format!(
        "if=none,id=disk0,file={},format={},snapshot={snapshot},discard=unmap",
        opt_path(&plan.image),
        plan.format.qemu_name(),
    );
    push(a, &["-device", "virtio-scsi-pci,id=scsi0"]);
    push(
        a,
        &[
            "-drive",
            &disk,
            "-device",
            "scsi-hd,bus=scsi0.0,drive=disk0,bootindex=1",
        ],
    );

    if let Some(iso) = &plan.seed_iso {
        let seed = format!(
            "if=none,id=seed0,file={},format=raw,readonly=on,media=cdrom",
            opt_path(iso)
        );
        push(
            a,
            &[
                "-drive",
                &seed,
                "-device",
                "scsi-cd,bus=scsi0.0,drive=seed0",
            ],
        );
    }
}

/// The TPM, the NIC, the RNG and the extra kernel arguments.
fn device_args(plan: &QemuPlan, a: &mut Vec<String>) {
    // TPM 2.0 through swtpm.
    let chr = format!("socket,id=chrtpm,path={}", opt_path(&plan.tpm_socket));
    push(
        a,
        &[
            "-chardev",
            &chr,
            "-tpmdev",
            "emulator,id=tpm0,chardev=chrtpm",
        ],
    );
    push(a, &["-device", "tpm-tis,tpmdev=tpm0"]);

    // Network: user mode with forwards bound to loopback only, or a tap
    // device set up beforehand (no scripts: QEMU must not run programs).
    let netdev = match &plan.nic {
        NicPlan::User { forwards } => {
            let mut n = "user,id=net0".to_string();
            for f in forwards {
                n.push(',');
                n.push_str(&f.hostfwd());
            }
            n
        }
        NicPlan::Tap { ifname } => {
            format!("tap,id=net0,ifname={ifname},script=no,downscript=no")
        }
    };
    let mut nic = "virtio-net-pci,netdev=net0".to_string();
    if let Some(mac) = plan.mac {
        nic.push_str(&format!(",mac={mac}"));
    }
    push(a, &["-netdev", &netdev, "-device", &nic]);
    push(a, &["-device", "virtio-rng-pci"]);

    // Extra kernel arguments through SMBIOS type 11 strings: systemd-stub
    // appends the first to a UKI's built-in command line, systemd-boot the
    // second to a type 1 boot entry's (both 254+, and only with Secure Boot off).
    if !plan.kernel_args.is_empty() {
        let args = plan.kernel_args.join(" ").replace(',', ",,");
        for key in [
            "io.systemd.stub.kernel-cmdline-extra",
            "io.systemd.boot.kernel-cmdline-extra",
        ] {
            push(a, &["-smbios", &format!("type=11,value={key}={args}")]);
        }
    }
}

/// The serial console: stdio multiplexed with the monitor, or a socket;
/// either copied to a log.
fn serial_args(serial: &SerialPlan, a: &mut Vec<String>) {
    let chardev = match serial {
        SerialPlan::Stdio { log } => {
            let mut c = "stdio,id=con0,mux=on,signal=on".to_string();
            if let Some(log) = log {
                c.push_str(&format!(",logfile={},logappend=off", opt_path(log)));
            }
            c
        }
        SerialPlan::Socket { socket, log } => format!(
            "socket,id=con0,path={},server=on,wait=off,logfile={},logappend=off",
            opt_path(socket),
            opt_path(log)
        ),
    };
    push(a, &["-chardev", &chardev, "-serial", "chardev:con0"]);
    if matches!(serial, SerialPlan::Stdio { .. }) {
        push(a, &["-mon", "chardev=con0,mode=readline"]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> QemuPlan {
        QemuPlan {
            accel: Accel::Tcg,
            memory_mib: 2048,
            cpus: 2,
            image: "/img/test,tiny.qcow2".into(),
            format: ImageFormat::Qcow2,
            snapshot: true,
            ovmf_vars: "/run/vm/OVMF_VARS.fd".into(),
            tpm_socket: "/run/vm/swtpm.sock".into(),
            nic: NicPlan::User {
                forwards: vec![
                    PortForward {
                        host: 2222,
                        guest: 22,
                    },
                    PortForward {
                        host: 8080,
                        guest: 80,
                    },
                ],
            },
            mac: None,
            serial: SerialPlan::Socket {
                socket: "/run/vm/console.sock".into(),
                log: "/run/vm/console.log".into(),
            },
            seed_iso: Some("/run/vm/seed.iso".into()),
            pidfile: "/run/vm/qemu.pid".into(),
            kernel_args: vec![
                "systemd.default_timeout_start_sec=900".into(),
                "a=b,c".into(),
            ],
        }
    }

    fn render(plan: &QemuPlan) -> String {
        qemu_args(plan)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn full_command_line_matches_golden() {
        let want = include_str!("testdata/qemu-args.golden");
        assert_eq!(render(&plan()), want.trim_end());
    }

    /// The same machine on a tap device with a fixed MAC: only the two
    /// network arguments differ from the user-networking golden file.
    #[test]
    fn tap_command_line_matches_golden() {
        let mut p = plan();
        p.nic = NicPlan::Tap {
            ifname: "keel-tap0".into(),
        };
        p.mac = Some(MacAddr([0x52, 0x54, 0x00, 0xe7, 0x07, 0x01]));
        let want = include_str!("testdata/qemu-args-tap.golden");
        assert_eq!(render(&p), want.trim_end());
        let user = render(&plan());
        let tap = render(&p);
        let differ: Vec<(&str, &str)> = user
            .lines()
            .zip(tap.lines())
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(
            differ,
            [
                (
                    "user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=tcp:127.0.0.1:8080-:80",
                    "tap,id=net0,ifname=keel-tap0,script=no,downscript=no"
                ),
                (
                    "virtio-net-pci,netdev=net0",
                    "virtio-net-pci,netdev=net0,mac=52:54:00:e7:07:01"
                )
            ]
        );
    }

    #[test]
    fn no_snapshot_and_kvm() {
        let mut p = plan();
        p.snapshot = false;
        p.accel = Accel::Kvm;
        let s = render(&p);
        assert!(s.contains("snapshot=off"), "{s}");
        assert!(s.contains("q35,accel=kvm\n-cpu\nhost"), "{s}");
    }

    #[test]
    fn terminal_console_is_muxed_with_monitor_and_logged() {
        let mut p = plan();
        p.serial = SerialPlan::Stdio {
            log: Some("/tmp/c.log".into()),
        };
        let s = render(&p);
        assert!(
            s.contains("stdio,id=con0,mux=on,signal=on,logfile=/tmp/c.log,logappend=off"),
            "{s}"
        );
        assert!(s.contains("-mon\nchardev=con0,mode=readline"), "{s}");
    }

    #[test]
    fn forwards_never_bind_beyond_loopback() {
        let s = render(&plan());
        for line in s.lines().filter(|l| l.contains("hostfwd")) {
            for part in line.split(',').filter(|p| p.starts_with("hostfwd=")) {
                assert!(part.starts_with("hostfwd=tcp:127.0.0.1:"), "{part}");
            }
        }
    }
}
