//! A DHCP server for a [`crate::TestNet`]: dnsmasq (DHCP only, no DNS) on the
//! namespace's bridge, handing each guest MAC its fixed address, as a store's
//! router would. A guest image then comes up with its stock "DHCP on every
//! wired interface" configuration and reaches network-online at once.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::netns::TestNet;
use crate::{Daemon, Error, Result};

/// A running dnsmasq; stopped on drop.
#[derive(Debug)]
pub struct Dhcp {
    daemon: Daemon,
    leases: PathBuf,
    _dir: tempfile::TempDir,
}

impl Dhcp {
    /// Starts dnsmasq inside `net` (through `ip netns exec`, so the calling
    /// thread may be anywhere) serving `hosts` (MAC, guest number: the
    /// address is [`TestNet::guest_addr`]).
    pub fn start(net: &TestNet, hosts: &[(String, u8)]) -> Result<Dhcp> {
        crate::require(&["dnsmasq"])?;
        let dir = tempfile::Builder::new()
            .prefix("keel-dhcp-")
            .tempdir()
            .map_err(Error::io("creating dnsmasq temp dir"))?;
        let leases = dir.path().join("leases");
        let first = net.guest_addr(100);
        let last = net.guest_addr(150);
        let mut cmd = Command::new("dnsmasq");
        cmd.args([
            "--keep-in-foreground",
            "--no-daemon",
            "--log-dhcp",
            "--port=0",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--except-interface=lo",
        ])
        .arg(format!("--interface={}", net.bridge()))
        .arg(format!("--dhcp-range={first},{last},255.255.255.0,1h"))
        .arg(format!("--dhcp-leasefile={}", leases.display()))
        .arg(format!("--pid-file={}", dir.path().join("pid").display()))
        // No router and no DNS server options: everything is on this subnet.
        .args(["--dhcp-option=3", "--dhcp-option=6"]);
        for (mac, n) in hosts {
            cmd.arg(format!("--dhcp-host={mac},{}", net.guest_addr(*n)));
        }
        let log = dir.path().join("dnsmasq.log");
        let mut daemon = Daemon::spawn("dnsmasq", net.exec(cmd), &log)?;
        // dnsmasq logs "DHCP, IP range ..." once it listens.
        daemon.wait_ready(Duration::from_secs(10), || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("DHCP, IP range"))
        })?;
        Ok(Dhcp {
            daemon,
            leases,
            _dir: dir,
        })
    }

    /// The lease file's lines (`expiry MAC IP name client-id`).
    pub fn leases(&self) -> Vec<String> {
        std::fs::read_to_string(&self.leases)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The end of dnsmasq's log.
    pub fn log_tail(&self) -> String {
        self.daemon.log_tail()
    }
}
