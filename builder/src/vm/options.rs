//! What a VM is started with: [`VmOptions`] and the small values it is made
//! of (port forwards, network back ends, MAC addresses, image formats,
//! accelerators), each parsed by a pure function so the CLI and the tests
//! share one grammar.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Errors in a VM option given by a user.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionError {
    #[error("port forward `{0}` is not HOSTPORT:GUESTPORT (e.g. 2222:22)")]
    ForwardSyntax(String),
    #[error("port `{0}` is not a number from 1 to 65535")]
    Port(String),
    #[error("accelerator `{0}` is not one of auto, kvm, tcg")]
    Accel(String),
    #[error("MAC address `{0}` is not six hex bytes like 52:54:00:12:34:56 (unicast)")]
    Mac(String),
    #[error("interface name `{0}` is not 1 to 15 characters of letters, digits, `-`, `_` or `.`")]
    Ifname(String),
}

/// A TCP port on 127.0.0.1 of the host forwarded to a port of the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PortForward {
    /// Port on the host (bound on 127.0.0.1 only).
    pub host: u16,
    /// Port in the guest.
    pub guest: u16,
}

impl PortForward {
    /// Parses `HOSTPORT:GUESTPORT`.
    pub fn parse(s: &str) -> Result<Self, OptionError> {
        let (h, g) = s
            .split_once(':')
            .ok_or_else(|| OptionError::ForwardSyntax(s.to_string()))?;
        Ok(PortForward {
            host: parse_port(h)?,
            guest: parse_port(g)?,
        })
    }

    /// The `hostfwd=` value of QEMU's user networking for this forward.
    pub fn hostfwd(&self) -> String {
        format!("hostfwd=tcp:127.0.0.1:{}-:{}", self.host, self.guest)
    }
}

impl FromStr for PortForward {
    type Err = OptionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PortForward::parse(s)
    }
}

impl fmt::Display for PortForward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "127.0.0.1:{} -> guest:{}", self.host, self.guest)
    }
}

fn parse_port(s: &str) -> Result<u16, OptionError> {
    match s.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(OptionError::Port(s.to_string())),
    }
}

/// The guest NIC's back end.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Network {
    /// QEMU user-mode networking (NAT): the guest can open connections out,
    /// the host reaches in only through [`VmOptions::forwards`].
    #[default]
    User,
    /// A tap device `ifname` (real two-way IP with whatever is on the other
    /// side). QEMU opens it with `script=no`: with `bridge`, `keel vm`
    /// creates the tap, enslaves it to that bridge and deletes it when the VM
    /// stops; without, the tap must already exist and be wired up. The tap
    /// lives in the network namespace of the thread that starts the VM, and
    /// so does QEMU (run `keel vm` under `ip netns exec NS` to use a namespace).
    Tap {
        ifname: String,
        bridge: Option<String>,
    },
}

/// Checks a Linux interface name: 1-15 characters (IFNAMSIZ - 1), letters,
/// digits, `-`, `_`, `.`: nothing QEMU's option syntax or `ip` could misread.
pub fn parse_ifname(s: &str) -> Result<String, OptionError> {
    let ok = (1..=15).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && s != "."
        && s != "..";
    if ok {
        Ok(s.to_string())
    } else {
        Err(OptionError::Ifname(s.to_string()))
    }
}

/// A guest NIC's MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Parses `aa:bb:cc:dd:ee:ff` (hex, either case); multicast addresses
    /// (lowest bit of the first byte set) cannot be a NIC's.
    pub fn parse(s: &str) -> Result<Self, OptionError> {
        let err = || OptionError::Mac(s.to_string());
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(err());
        }
        let mut b = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            if p.len() != 2 {
                return Err(err());
            }
            b[i] = u8::from_str_radix(p, 16).map_err(|_| err())?;
        }
        if b[0] & 1 == 1 {
            return Err(err());
        }
        Ok(MacAddr(b))
    }
}

impl FromStr for MacAddr {
    type Err = OptionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MacAddr::parse(s)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The disk image formats `keel vm` boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Raw,
    Qcow2,
}

impl ImageFormat {
    /// Tells the format from the first bytes of the file: qcow2 starts with
    /// the magic `QFI\xfb`; anything else is booted as raw.
    pub fn detect(head: &[u8]) -> Self {
        if head.starts_with(b"QFI\xfb") {
            ImageFormat::Qcow2
        } else {
            ImageFormat::Raw
        }
    }

    /// The name QEMU uses in `format=`.
    pub fn qemu_name(&self) -> &'static str {
        match self {
            ImageFormat::Raw => "raw",
            ImageFormat::Qcow2 => "qcow2",
        }
    }
}

/// Which QEMU accelerator to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccelChoice {
    /// KVM when the (cached) probe says it works, else TCG.
    #[default]
    Auto,
    /// KVM, without probing.
    Kvm,
    /// Software emulation.
    Tcg,
}

impl FromStr for AccelChoice {
    type Err = OptionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(AccelChoice::Auto),
            "kvm" => Ok(AccelChoice::Kvm),
            "tcg" => Ok(AccelChoice::Tcg),
            _ => Err(OptionError::Accel(s.to_string())),
        }
    }
}

/// Where the guest's serial console goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleMode {
    /// On this terminal (stdin/stdout of `keel`), also copied to the log file
    /// when one is given. Ctrl-A X quits QEMU, Ctrl-C stops everything.
    Terminal { log: Option<PathBuf> },
    /// Only to a log file (tests, `--json`); input can be sent through a
    /// socket, see [`super::Vm::send_console`].
    Log(PathBuf),
}

/// Everything needed to start a VM.
#[derive(Debug, Clone)]
pub struct VmOptions {
    /// The disk image (raw or qcow2).
    pub image: PathBuf,
    /// Discard guest writes (QEMU `snapshot=on`), leaving the image untouched.
    pub snapshot: bool,
    /// The disk the guest sees, in GiB: at least this big, so that the
    /// first boot's systemd-repart has room for the /var partition (an image
    /// from `keel build` is exactly as big as its partitions). With
    /// `snapshot`, a temporary qcow2 overlay of this size sits on the image;
    /// without, the image file itself is grown when smaller.
    pub disk_gib: u64,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Guest CPUs.
    pub cpus: u32,
    /// Host-to-guest TCP port forwards on 127.0.0.1 (user networking only).
    pub forwards: Vec<PortForward>,
    /// The NIC's back end: user networking (default) or a tap device.
    pub network: Network,
    /// The NIC's MAC address; QEMU's default (52:54:00:12:34:56) when unset.
    /// Guests sharing a bridge need different ones.
    pub mac: Option<MacAddr>,
    /// Where the serial console goes.
    pub console: ConsoleMode,
    /// A cloud-init NoCloud seed: a directory (user-data, meta-data,
    /// optional network-config) made into a CIDATA ISO, or a ready ISO.
    pub seed: Option<PathBuf>,
    /// KVM, TCG or probe.
    pub accel: AccelChoice,
    /// Extra kernel command-line arguments, passed through SMBIOS to
    /// systemd-stub (UKIs with systemd-stub 254 or newer, Secure Boot off).
    pub kernel_args: Vec<String>,
}

impl VmOptions {
    /// Options with Keel's defaults: snapshot on, 2048 MiB, 2 CPUs, user
    /// networking without forwards, console to `console_log`, accelerator probed.
    pub fn new(image: impl Into<PathBuf>, console_log: impl Into<PathBuf>) -> Self {
        VmOptions {
            image: image.into(),
            snapshot: true,
            disk_gib: DEFAULT_DISK_GIB,
            memory_mib: DEFAULT_MEMORY_MIB,
            cpus: DEFAULT_CPUS,
            forwards: Vec::new(),
            network: Network::User,
            mac: None,
            console: ConsoleMode::Log(console_log.into()),
            seed: None,
            accel: AccelChoice::Auto,
            kernel_args: Vec::new(),
        }
    }
}

/// Default size of the guest's disk (see [`VmOptions::disk_gib`]).
pub const DEFAULT_DISK_GIB: u64 = 8;

/// Default guest memory: enough for a Debian UKI's initrd to unpack.
pub const DEFAULT_MEMORY_MIB: u32 = 2048;
/// Default guest CPU count.
pub const DEFAULT_CPUS: u32 = 2;
/// Added to the kernel command line under TCG: device and service start
/// jobs get 15 minutes instead of systemd's 90 s, which an emulated boot on a
/// busy machine can need just to find its root disk.
pub const TCG_KERNEL_ARGS: &[&str] = &["systemd.default_timeout_start_sec=900"];

/// Console lines that mean a boot has failed (for
/// [`super::Vm::wait_for_console_unless`]).
pub const BOOT_FAILURES: &[&str] = &[
    "You are in emergency mode",
    "Kernel panic - not syncing",
    "Failed to start .*initrd-switch-root",
];

/// How long [`super::Vm::stop`] waits after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_forwards_parse() {
        let table: &[(&str, Result<PortForward, OptionError>)] = &[
            (
                "2222:22",
                Ok(PortForward {
                    host: 2222,
                    guest: 22,
                }),
            ),
            (
                "8443:443",
                Ok(PortForward {
                    host: 8443,
                    guest: 443,
                }),
            ),
            ("22", Err(OptionError::ForwardSyntax("22".into()))),
            ("0:22", Err(OptionError::Port("0".into()))),
            ("70000:22", Err(OptionError::Port("70000".into()))),
            ("a:22", Err(OptionError::Port("a".into()))),
            ("22:", Err(OptionError::Port("".into()))),
        ];
        for (input, want) in table {
            assert_eq!(&PortForward::parse(input), want, "{input}");
        }
    }

    #[test]
    fn hostfwd_binds_loopback_only() {
        let f = PortForward {
            host: 2222,
            guest: 22,
        };
        assert_eq!(f.hostfwd(), "hostfwd=tcp:127.0.0.1:2222-:22");
    }

    #[test]
    fn mac_addresses_parse() {
        let table: &[(&str, Result<MacAddr, OptionError>)] = &[
            (
                "52:54:00:12:34:56",
                Ok(MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56])),
            ),
            (
                "52:54:00:E7:0A:FF",
                Ok(MacAddr([0x52, 0x54, 0, 0xe7, 0x0a, 0xff])),
            ),
            (
                "52:54:00:12:34",
                Err(OptionError::Mac("52:54:00:12:34".into())),
            ),
            (
                "52:54:00:12:34:5",
                Err(OptionError::Mac("52:54:00:12:34:5".into())),
            ),
            (
                "52-54-00-12-34-56",
                Err(OptionError::Mac("52-54-00-12-34-56".into())),
            ),
            (
                "01:00:5e:00:00:01",
                Err(OptionError::Mac("01:00:5e:00:00:01".into())),
            ),
            (
                "52:54:00:12:34:zz",
                Err(OptionError::Mac("52:54:00:12:34:zz".into())),
            ),
        ];
        for (input, want) in table {
            assert_eq!(&MacAddr::parse(input), want, "{input}");
        }
        assert_eq!(
            MacAddr([0x52, 0x54, 0, 0xe7, 0x0a, 0xff]).to_string(),
            "52:54:00:e7:0a:ff"
        );
    }

    #[test]
    fn interface_names() {
        for ok in ["tap0", "keel-tap.1", "a", "tap_123456789ab"] {
            assert_eq!(parse_ifname(ok), Ok(ok.to_string()), "{ok}");
        }
        for bad in [
            "",
            "tap0123456789abc",
            "tap,0",
            "tap 0",
            "a/b",
            ".",
            "..",
            "tap=1",
        ] {
            assert_eq!(
                parse_ifname(bad),
                Err(OptionError::Ifname(bad.to_string())),
                "{bad}"
            );
        }
    }

    #[test]
    fn image_format_from_magic() {
        assert_eq!(
            ImageFormat::detect(b"QFI\xfb\0\0\0\x03"),
            ImageFormat::Qcow2
        );
        assert_eq!(ImageFormat::detect(&[0u8; 512]), ImageFormat::Raw);
        assert_eq!(ImageFormat::detect(b""), ImageFormat::Raw);
    }

    #[test]
    fn accel_choice_parses() {
        assert_eq!("auto".parse(), Ok(AccelChoice::Auto));
        assert_eq!("kvm".parse(), Ok(AccelChoice::Kvm));
        assert_eq!("tcg".parse(), Ok(AccelChoice::Tcg));
        assert_eq!(
            "hvf".parse::<AccelChoice>(),
            Err(OptionError::Accel("hvf".into()))
        );
    }
}
