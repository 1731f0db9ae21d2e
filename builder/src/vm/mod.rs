//! `keel vm`: boot a Keel image under QEMU the same way every time.
//!
//! A [`Vm`] is QEMU (q35, OVMF UEFI firmware with its own variable store) plus
//! a freshly manufactured software TPM (swtpm), all state in a private
//! temporary directory with absolute paths. The disk is attached with
//! `snapshot=on` by default so the image file is never changed. The serial
//! console goes to the terminal or to a log file that tests read through
//! [`Vm::wait_for_console`]. QEMU and swtpm are tracked by PID and stopped on
//! [`Vm::stop`], on drop, and (in the CLI) on Ctrl-C or SIGTERM.
//!
//! The NIC is on QEMU user networking (outbound NAT plus loopback port
//! forwards) by default, or on a tap device on a bridge ([`Network::Tap`]),
//! which end-to-end tests use inside a private network namespace so that
//! services can reach the guest too.
//!
//! KVM is used only when a probe shows it really runs a guest ([`accel`]);
//! otherwise QEMU emulates the CPU (TCG), slower but everywhere.

pub mod accel;
pub mod cli;
pub mod console;
pub mod disk;
pub mod options;
pub mod qemu;
pub mod seed;
pub mod swtpm;
pub mod tap;

mod machine;

pub use console::{ConsoleLog, ConsoleMatch};
pub use machine::Vm;
pub use options::{
    AccelChoice, ConsoleMode, ImageFormat, MacAddr, Network, PortForward, VmOptions, BOOT_FAILURES,
};
pub use qemu::Accel;

use std::path::Path;

/// Host programs and files a VM needs; returns what is missing, for a clear
/// error or a test's SKIP line.
pub fn missing_host_tools() -> Vec<String> {
    let mut missing: Vec<String> = [qemu::QEMU, "swtpm", "swtpm_setup"]
        .iter()
        .filter(|p| keel_cmd::which(p).is_none())
        .map(|p| (*p).to_string())
        .collect();
    for f in [qemu::OVMF_CODE, qemu::OVMF_VARS] {
        if !Path::new(f).exists() {
            missing.push(f.to_string());
        }
    }
    missing
}
