//! Choosing between KVM and TCG by probing, never by assuming.
//!
//! `/dev/kvm` can exist while KVM cannot run a real guest (nested
//! virtualisation in a micro-VM is the usual case: the guest hangs as soon as
//! it leaves real mode). So Keel boots a tiny firmware of its own under
//! `-accel kvm`: it switches the CPU from real mode to protected mode and then
//! to 64-bit long mode with paging and SSE, as every kernel does first, and
//! reports success by writing to QEMU's `isa-debug-exit` port, which ends
//! QEMU with status 99. Anything else within [`PROBE_TIMEOUT`] means "KVM does
//! not work here" and Keel uses TCG (software emulation).
//!
//! The result is cached per host kernel and QEMU version in
//! `kvm-probe.json` under the cache directory ([`cache_dir`]); delete it to
//! probe again. `KEEL_ACCEL=kvm|tcg` or `--accel` skip the probe.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use keel_cmd::child::Supervised;
use keel_cmd::CommandRunExt;

use super::options::AccelChoice;
use super::qemu::{Accel, QEMU};

/// How long the probe guest may take under KVM (it needs well under a second).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// The status QEMU exits with when the probe firmware finished: (0x31 << 1) | 1.
const PROBE_OK_STATUS: i32 = 99;

/// The probe firmware's code, loaded at 0xF0000 (assembled from the
/// sequence described in the module docs; source in `testdata/kvm-probe.S`).
const PROBE_CODE: [u8; 205] = [
    0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x2e, 0x66, 0x0f, 0x01, 0x16, 0xc8, 0x00, 0x0f, 0x20, 0xc0, 0x66,
    0x83, 0xc8, 0x01, 0x0f, 0x22, 0xc0, 0x66, 0xea, 0x1e, 0x00, 0x0f, 0x00, 0x08, 0x00, 0x66, 0xb8,
    0x10, 0x00, 0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, 0xbc, 0x00, 0x80, 0x00, 0x00, 0xbf, 0x00, 0x10,
    0x00, 0x00, 0x31, 0xc0, 0xb9, 0x00, 0x0c, 0x00, 0x00, 0xf3, 0xab, 0xc7, 0x05, 0x00, 0x10, 0x00,
    0x00, 0x03, 0x20, 0x00, 0x00, 0xc7, 0x05, 0x00, 0x20, 0x00, 0x00, 0x03, 0x30, 0x00, 0x00, 0xc7,
    0x05, 0x00, 0x30, 0x00, 0x00, 0x83, 0x00, 0x00, 0x00, 0x0f, 0x20, 0xe0, 0x0d, 0x20, 0x06, 0x00,
    0x00, 0x0f, 0x22, 0xe0, 0xb8, 0x00, 0x10, 0x00, 0x00, 0x0f, 0x22, 0xd8, 0xb9, 0x80, 0x00, 0x00,
    0xc0, 0x0f, 0x32, 0x0d, 0x00, 0x01, 0x00, 0x00, 0x0f, 0x30, 0x0f, 0x20, 0xc0, 0x0d, 0x00, 0x00,
    0x00, 0x80, 0x0f, 0x22, 0xc0, 0xea, 0x8c, 0x00, 0x0f, 0x00, 0x18, 0x00, 0xb8, 0x01, 0x00, 0x00,
    0x00, 0x0f, 0xa2, 0x0f, 0x31, 0x66, 0x0f, 0xef, 0xc0, 0x48, 0xc7, 0xc0, 0x31, 0x00, 0x00, 0x00,
    0xe6, 0xf4, 0xf4, 0xeb, 0xfd, 0x8d, 0x74, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xcf, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x92, 0xcf, 0x00,
    0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xaf, 0x00, 0x1f, 0x00, 0xa8, 0x00, 0x0f,
];
/// At the reset vector (offset 0xFFF0): `ljmp $0xF000, $0`.
const RESET_JUMP: [u8; 5] = [0xea, 0x00, 0x00, 0x00, 0xf0];

/// The 64 KiB probe firmware image.
pub fn probe_firmware() -> Vec<u8> {
    let mut rom = vec![0u8; 0x10000];
    rom[..PROBE_CODE.len()].copy_from_slice(&PROBE_CODE);
    rom[0xFFF0..0xFFF0 + RESET_JUMP.len()].copy_from_slice(&RESET_JUMP);
    rom
}

/// A probe result, as cached.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ProbeRecord {
    /// Host kernel release the probe ran on.
    pub host_kernel: String,
    /// `qemu-system-x86_64 --version`, first line.
    pub qemu_version: String,
    /// The accelerator to use.
    pub accel: Accel,
    /// Why (shown to users).
    pub reason: String,
    /// When the probe ran (seconds since the epoch).
    pub probed_at: u64,
}

/// Picks the accelerator for `choice`: `KEEL_ACCEL` overrides `auto`; `auto`
/// uses the cached probe, probing when there is no valid cache entry.
pub fn resolve(choice: AccelChoice) -> anyhow::Result<Accel> {
    let choice = match (choice, std::env::var("KEEL_ACCEL")) {
        (AccelChoice::Auto, Ok(v)) if !v.is_empty() => v
            .parse()
            .with_context(|| format!("environment variable KEEL_ACCEL={v}"))?,
        (c, _) => c,
    };
    match choice {
        AccelChoice::Kvm => Ok(Accel::Kvm),
        AccelChoice::Tcg => Ok(Accel::Tcg),
        AccelChoice::Auto => Ok(probe_cached()?.accel),
    }
}

/// The cached probe result for this host, probing (and caching) when needed.
pub fn probe_cached() -> anyhow::Result<ProbeRecord> {
    let kernel = host_kernel();
    let qemu = qemu_version()?;
    let path = cache_dir().join("kvm-probe.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(rec) = serde_json::from_str::<ProbeRecord>(&text) {
            if rec.host_kernel == kernel && rec.qemu_version == qemu {
                tracing::debug!(accel = rec.accel.name(), reason = %rec.reason, "accelerator from {}", path.display());
                return Ok(rec);
            }
        }
    }
    let (accel, reason) = probe_kvm()?;
    let rec = ProbeRecord {
        host_kernel: kernel,
        qemu_version: qemu,
        accel,
        reason,
        probed_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    tracing::info!("accelerator {}: {}", rec.accel.name(), rec.reason);
    if let Err(e) = write_cache(&path, &rec) {
        tracing::warn!("could not cache the KVM probe in {}: {e:#}", path.display());
    }
    Ok(rec)
}

/// Runs the probe now (no cache): returns the accelerator and why.
pub fn probe_kvm() -> anyhow::Result<(Accel, String)> {
    let kvm = std::path::Path::new("/dev/kvm");
    if !kvm.exists() {
        return Ok((Accel::Tcg, "no /dev/kvm".into()));
    }
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open(kvm) {
        return Ok((Accel::Tcg, format!("/dev/kvm is not usable: {e}")));
    }
    let dir = tempfile::tempdir().context("creating a directory for the KVM probe")?;
    let rom = dir.path().join("kvm-probe.rom");
    std::fs::write(&rom, probe_firmware()).context("writing the KVM probe firmware")?;
    let mut cmd = Command::new(QEMU);
    cmd.args([
        "-machine",
        "q35,accel=kvm",
        "-cpu",
        "host",
        "-m",
        "16",
        "-nodefaults",
    ])
    .args(["-no-user-config", "-display", "none", "-bios"])
    .arg(&rom)
    .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(dir.path().join("stderr")).context("creating the probe's log")?);
    let started = Instant::now();
    let mut qemu = Supervised::spawn("qemu (KVM probe)", &mut cmd)?;
    let status = qemu.wait_timeout(PROBE_TIMEOUT)?;
    let secs = started.elapsed().as_secs_f64();
    Ok(match status {
        Some(s) if s.code() == Some(PROBE_OK_STATUS) => (
            Accel::Kvm,
            format!("KVM ran the probe guest to long mode in {secs:.2} s"),
        ),
        Some(s) => {
            let err = std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
            let first = err
                .lines()
                .find(|l| l.contains("error"))
                .or_else(|| err.lines().next());
            (
                Accel::Tcg,
                format!(
                    "KVM probe guest failed ({s}): {}",
                    first.unwrap_or("no message")
                ),
            )
        }
        None => {
            qemu.stop(Duration::from_secs(2))?;
            (
                Accel::Tcg,
                format!(
                    "KVM probe guest hung (no long mode within {} s): KVM does not work here",
                    PROBE_TIMEOUT.as_secs()
                ),
            )
        }
    })
}

/// Runs the probe firmware under TCG: checks the firmware itself (a test).
pub fn probe_tcg_selfcheck() -> anyhow::Result<bool> {
    let dir = tempfile::tempdir().context("tempdir")?;
    let rom = dir.path().join("kvm-probe.rom");
    std::fs::write(&rom, probe_firmware()).context("writing the probe firmware")?;
    let mut cmd = Command::new(QEMU);
    cmd.args([
        "-machine",
        "q35,accel=tcg",
        "-cpu",
        "max",
        "-m",
        "16",
        "-nodefaults",
    ])
    .args(["-no-user-config", "-display", "none", "-bios"])
    .arg(&rom)
    .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut qemu = Supervised::spawn("qemu (probe self-check)", &mut cmd)?;
    let status = qemu.wait_timeout(Duration::from_secs(30))?;
    Ok(status.and_then(|s| s.code()) == Some(PROBE_OK_STATUS))
}

/// Where Keel keeps host-specific caches: `KEEL_CACHE_DIR`, else
/// /var/cache/keel for root, else `$XDG_CACHE_HOME/keel` or ~/.cache/keel.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("KEEL_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/cache/keel");
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("keel");
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/keel"))
        .unwrap_or_else(|| std::env::temp_dir().join("keel-cache"))
}

fn host_kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn qemu_version() -> anyhow::Result<String> {
    let out = Command::new(QEMU)
        .arg("--version")
        .run_get_string()
        .context("asking QEMU for its version")?;
    Ok(out.lines().next().unwrap_or_default().trim().to_string())
}

fn write_cache(path: &std::path::Path, rec: &ProbeRecord) -> anyhow::Result<()> {
    keel_cmd::fs::write_atomic(path, serde_json::to_string_pretty(rec)?.as_bytes(), 0o600)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firmware_layout() {
        let rom = probe_firmware();
        assert_eq!(rom.len(), 0x10000);
        assert_eq!(rom[0], 0xfa, "starts with cli");
        assert_eq!(&rom[0xFFF0..0xFFF5], &RESET_JUMP);
    }

    #[test]
    fn cache_record_round_trips_and_rejects_unknown_keys() {
        let rec = ProbeRecord {
            host_kernel: "6.1.0".into(),
            qemu_version: "QEMU emulator version 10.0.2".into(),
            accel: Accel::Tcg,
            reason: "no /dev/kvm".into(),
            probed_at: 1,
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("sub/kvm-probe.json");
        write_cache(&p, &rec).expect("write");
        let back: ProbeRecord =
            serde_json::from_str(&std::fs::read_to_string(&p).expect("read")).expect("parse");
        assert_eq!(back, rec);
        let bad = r#"{"host-kernel":"x","qemu-version":"y","accel":"kvm","reason":"r","probed-at":1,"extra":1}"#;
        assert!(serde_json::from_str::<ProbeRecord>(bad).is_err());
    }
}
