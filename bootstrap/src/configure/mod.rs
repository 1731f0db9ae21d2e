//! Configuring the target root (`/` on a node, a temp dir in tests) from
//! the seed's standard cloud-config keys: hostname, users and SSH keys,
//! write_files, timezone, NTP and systemd-networkd files.
//!
//! Everything is idempotent except `write_files` with `append: true`, which
//! the state machine guards by applying a seed once per instance-id.

mod files;
mod users;

use std::path::Path;

use anyhow::{Context, Result};

use crate::fsutil::in_root;
use crate::seed::user_data::Ntp;
use crate::seed::Seed;
use keel_cmd::fs::write_atomic;

pub use files::write_files;
pub use users::apply_users;

/// Applies everything; warnings (e.g. unknown time zone) are logged. The
/// seed's content was checked when it was parsed; what can still fail here
/// is I/O, and an owner naming an account the image lacks (a [`SeedError`]).
///
/// [`SeedError`]: crate::seed::SeedError
pub fn apply_seed(seed: &Seed, root: &Path) -> Result<()> {
    for w in &seed.warnings {
        tracing::warn!("{w}");
    }
    if let Some(h) = seed.hostname() {
        hostname(root, &h, seed.user.fqdn.as_deref()).context("setting hostname")?;
    }
    apply_users(root, &seed.user).context("creating users")?;
    write_files(root, &seed.user.write_files).context("writing write_files")?;
    if let Some(tz) = &seed.user.timezone {
        timezone(root, tz).context("setting timezone")?;
    }
    if let Some(ntp) = &seed.user.ntp {
        self::ntp(root, ntp).context("configuring ntp")?;
    }
    let mut network_written = false;
    if let Some(net) = &seed.network {
        for (name, content) in net.render_networkd() {
            let p = root.join("etc/systemd/network").join(name);
            write_atomic(&p, content.as_bytes(), 0o644)
                .with_context(|| format!("writing {}", p.display()))?;
            network_written = true;
        }
    }
    if root == Path::new("/") {
        take_effect(seed, network_written);
    }
    Ok(())
}

/// On the node itself (root `/`), makes the running system follow what was
/// just written: the host name now (not only after a reboot), and
/// systemd-networkd re-reads its files. Failures are logged, not fatal: the
/// files are in place and hold from the next boot on.
fn take_effect(seed: &Seed, network_written: bool) {
    use keel_cmd::CommandRunExt as _;
    if let Some(h) = seed.hostname() {
        if let Err(e) = std::process::Command::new("hostname").arg(&h).run() {
            tracing::warn!("setting the running host name to {h}: {e}");
        }
    }
    if network_written {
        if let Err(e) = std::process::Command::new("networkctl").arg("reload").run() {
            tracing::warn!("asking systemd-networkd to reload its configuration: {e}");
        }
    }
}

/// Writes /etc/hostname and an /etc/hosts entry for the name (and FQDN).
pub fn hostname(root: &Path, name: &str, fqdn: Option<&str>) -> Result<()> {
    if name.is_empty()
        || name.len() > 63
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        anyhow::bail!("{name:?} is not a valid host name (letters, digits, '-', at most 63)");
    }
    write_atomic(
        &root.join("etc/hostname"),
        format!("{name}\n").as_bytes(),
        0o644,
    )?;
    let hosts_path = root.join("etc/hosts");
    let old =
        std::fs::read_to_string(&hosts_path).unwrap_or_else(|_| "127.0.0.1\tlocalhost\n".into());
    let entry = match fqdn {
        Some(f) => format!("127.0.1.1\t{f} {name}"),
        None => format!("127.0.1.1\t{name}"),
    };
    let mut lines: Vec<String> = old
        .lines()
        .filter(|l| !l.starts_with("127.0.1.1"))
        .map(str::to_string)
        .collect();
    lines.push(entry);
    write_atomic(&hosts_path, (lines.join("\n") + "\n").as_bytes(), 0o644)?;
    Ok(())
}

/// Points /etc/localtime at the zone and writes /etc/timezone. An unknown
/// zone is a warning: a typo must not stop the node from enrolling.
pub fn timezone(root: &Path, tz: &str) -> Result<()> {
    let Some(zone) = in_root(root, &format!("/usr/share/zoneinfo/{tz}")) else {
        tracing::warn!("timezone {tz:?} is not a zone name; left unchanged");
        return Ok(());
    };
    if !zone.is_file() {
        tracing::warn!(
            "timezone {tz:?} is not installed ({}); left unchanged",
            zone.display()
        );
        return Ok(());
    }
    keel_cmd::fs::replace_symlink(
        &root.join("etc/localtime"),
        Path::new(&format!("../usr/share/zoneinfo/{tz}")),
    )?;
    write_atomic(
        &root.join("etc/timezone"),
        format!("{tz}\n").as_bytes(),
        0o644,
    )?;
    Ok(())
}

/// Writes the time servers for chrony (if the root has /etc/chrony) or
/// systemd-timesyncd, as `ntp_client` says.
pub fn ntp(root: &Path, ntp: &Ntp) -> Result<()> {
    if ntp.enabled == Some(false) || (ntp.servers.is_empty() && ntp.pools.is_empty()) {
        return Ok(());
    }
    let client = match ntp.ntp_client.as_deref().unwrap_or("auto") {
        "auto" if root.join("etc/chrony").is_dir() => "chrony",
        "auto" => "systemd-timesyncd",
        other => other,
    };
    match client {
        "chrony" => {
            let mut s = String::from("# Written by keel-bootstrap from the seed.\n");
            for srv in &ntp.servers {
                s += &format!("server {srv} iburst\n");
            }
            for p in &ntp.pools {
                s += &format!("pool {p} iburst\n");
            }
            write_atomic(
                &root.join("etc/chrony/conf.d/keel.conf"),
                s.as_bytes(),
                0o644,
            )?;
        }
        "systemd-timesyncd" => {
            let all: Vec<&str> = ntp
                .servers
                .iter()
                .chain(&ntp.pools)
                .map(String::as_str)
                .collect();
            let s = format!(
                "# Written by keel-bootstrap from the seed.\n[Time]\nNTP={}\n",
                all.join(" ")
            );
            write_atomic(
                &root.join("etc/systemd/timesyncd.conf.d/keel.conf"),
                s.as_bytes(),
                0o644,
            )?;
        }
        other => {
            // Refused when the seed is parsed.
            anyhow::bail!("ntp_client {other:?} is not supported (chrony or systemd-timesyncd)")
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
