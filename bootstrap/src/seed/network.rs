//! `network-config`: the netplan/cloud-init v2 subset Keel supports
//! (`ethernets` with match, dhcp, static addresses, gateway, routes, DNS),
//! rendered as systemd-networkd `.network` files.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;

use super::{yaml, SeedError};

/// A v2 network config (also accepted wrapped in a top-level `network:` key).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct NetworkConfig {
    /// Must be 2.
    pub version: u32,
    /// Accepted and ignored (`networkd` is the only renderer).
    pub renderer: Option<String>,
    /// Ethernet interfaces by config id.
    pub ethernets: BTreeMap<String, Ethernet>,
}

/// One `ethernets:` entry.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct Ethernet {
    /// Which links this applies to; without it the id is the interface name.
    #[serde(rename = "match")]
    pub matches: Option<Match>,
    /// Rename the matched link (needs a .link file; Keel warns and skips).
    pub set_name: Option<String>,
    /// DHCPv4.
    pub dhcp4: bool,
    /// DHCPv6.
    pub dhcp6: bool,
    /// Static addresses in CIDR form.
    pub addresses: Vec<String>,
    /// Default IPv4 gateway (deprecated in netplan but common in seeds).
    pub gateway4: Option<String>,
    /// Default IPv6 gateway.
    pub gateway6: Option<String>,
    /// Extra routes.
    pub routes: Vec<Route>,
    /// DNS servers and search domains.
    pub nameservers: Option<Nameservers>,
    /// Link MTU.
    pub mtu: Option<u32>,
}

/// Link match criteria.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Match {
    /// Interface name or glob.
    pub name: Option<String>,
    /// MAC address.
    pub macaddress: Option<String>,
    /// Kernel driver name.
    pub driver: Option<String>,
}

/// A static route.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Route {
    /// Destination in CIDR form, or `default`.
    pub to: String,
    /// Next hop.
    pub via: Option<String>,
    /// Route metric.
    pub metric: Option<u32>,
}

/// DNS settings.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Nameservers {
    /// Server addresses.
    pub addresses: Vec<String>,
    /// Search domains.
    pub search: Vec<String>,
}

/// Parses network-config; v1 configs are reported as unsupported (warning)
/// and yield `None`.
pub fn parse(file: &str, text: &str) -> Result<(Option<NetworkConfig>, Vec<String>), SeedError> {
    if text.trim().is_empty() {
        return Ok((None, Vec::new()));
    }
    let value: serde_yaml_ng::Value = yaml::from_str::<serde_yaml_ng::Value>(file, text)?.0;
    let (inner, at) = match value.get("network") {
        Some(n) => (n.clone(), "network"),
        None => (value, ""),
    };
    let version = inner.get("version").and_then(serde_yaml_ng::Value::as_u64);
    match version {
        Some(2) => {}
        Some(1) => {
            return Ok((
                None,
                vec![format!("{file}: network-config version 1 is not supported (use version 2); network left unconfigured")],
            ))
        }
        _ => {
            return Err(SeedError::Invalid {
                file: file.to_string(),
                message: "network-config needs `version: 2`".into(),
            })
        }
    }
    let (cfg, mut warnings): (NetworkConfig, _) = yaml::from_value(file, at, inner)?;
    for (id, eth) in &cfg.ethernets {
        if eth.set_name.is_some() {
            warnings.push(format!(
                "{file}: ethernets.{id}.set-name is not supported; link keeps its name"
            ));
        }
    }
    Ok((Some(cfg), warnings))
}

impl NetworkConfig {
    /// The `.network` files to write: (file name, content).
    pub fn render_networkd(&self) -> Vec<(String, String)> {
        self.ethernets
            .iter()
            .map(|(id, e)| (format!("10-keel-{id}.network"), e.render(id)))
            .collect()
    }
}

impl Ethernet {
    fn render(&self, id: &str) -> String {
        let mut s =
            String::from("# Written by keel-bootstrap from the seed's network-config.\n[Match]\n");
        match &self.matches {
            Some(m) => {
                if let Some(n) = &m.name {
                    let _ = writeln!(s, "Name={n}");
                }
                if let Some(mac) = &m.macaddress {
                    let _ = writeln!(s, "MACAddress={mac}");
                }
                if let Some(d) = &m.driver {
                    let _ = writeln!(s, "Driver={d}");
                }
            }
            None => {
                let _ = writeln!(s, "Name={id}");
            }
        }
        if let Some(mtu) = self.mtu {
            let _ = write!(s, "\n[Link]\nMTUBytes={mtu}\n");
        }
        s.push_str("\n[Network]\n");
        let dhcp = match (self.dhcp4, self.dhcp6) {
            (true, true) => Some("yes"),
            (true, false) => Some("ipv4"),
            (false, true) => Some("ipv6"),
            (false, false) => None,
        };
        if let Some(d) = dhcp {
            let _ = writeln!(s, "DHCP={d}");
        }
        for a in &self.addresses {
            let _ = writeln!(s, "Address={a}");
        }
        for g in self.gateway4.iter().chain(&self.gateway6) {
            let _ = writeln!(s, "Gateway={g}");
        }
        if let Some(ns) = &self.nameservers {
            for a in &ns.addresses {
                let _ = writeln!(s, "DNS={a}");
            }
            if !ns.search.is_empty() {
                let _ = writeln!(s, "Domains={}", ns.search.join(" "));
            }
        }
        for r in &self.routes {
            s.push_str("\n[Route]\n");
            let to = if r.to == "default" {
                "0.0.0.0/0"
            } else {
                r.to.as_str()
            };
            let _ = writeln!(s, "Destination={to}");
            if let Some(v) = &r.via {
                let _ = writeln!(s, "Gateway={v}");
            }
            if let Some(m) = r.metric {
                let _ = writeln!(s, "Metric={m}");
            }
        }
        s
    }
}
