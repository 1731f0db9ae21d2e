//! Which disks become OSDs: probing block devices (lsblk + a direct blkid
//! probe) and the pure, table-tested decision per device.
//!
//! Rules: a disk that holds data (a filesystem/RAID/LVM signature, a partition
//! table, or partitions) is never used unless the policy lists it explicitly
//! AND allows wiping. Mounted, read-only and non-disk devices are never used.
//! With an empty device list, only blank whole disks are used; automatic
//! selection never wipes anything.

use super::CephError;
use crate::seed::DiskPolicy;
use keel_cmd::{CmdError, CommandRunExt};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A block device as probed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockDev {
    /// `/dev/...`
    pub path: PathBuf,
    /// lsblk TYPE: `disk`, `part`, `loop`, `rom`, `lvm`, ...
    pub kind: String,
    /// Size in bytes.
    pub size: u64,
    /// Read-only.
    pub ro: bool,
    /// It or one of its children is mounted (or is swap).
    pub mounted: bool,
    /// It has children (partitions, LVM/dm holders).
    pub children: bool,
    /// What blkid found on it (filesystem type or partition table type).
    pub signature: Option<String>,
}

/// What to do with one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Blank and selected: make an OSD.
    Use(PathBuf),
    /// Holds data, listed explicitly and wiping is allowed: wipe, then make an OSD.
    Wipe(PathBuf),
    /// Already an OSD of this node (in the state file): finish/confirm it.
    Ours(PathBuf),
    /// Selected by the policy but must not be touched: an error for the operator.
    Refuse(PathBuf, String),
    /// Not selected (automatic mode): just logged.
    Skip(PathBuf, String),
}

/// Smallest disk automatic selection considers (1 GiB).
pub const MIN_AUTO_SIZE: u64 = 1 << 30;

fn has_glob(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// Shell-style glob match (`*`, `?`, `[a-z]`, `[!x]`) on whole strings.
pub fn glob_match(pat: &str, s: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let t: Vec<char> = s.chars().collect();
    fn class(p: &[char], c: char) -> Option<(bool, usize)> {
        // p starts after '['; returns (matched, chars consumed incl. ']').
        let mut i = 0;
        let neg = matches!(p.first(), Some('!') | Some('^'));
        if neg {
            i += 1;
        }
        let mut hit = false;
        let start = i;
        while i < p.len() && (p[i] != ']' || i == start) {
            if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
                hit |= p[i] <= c && c <= p[i + 2];
                i += 3;
            } else {
                hit |= p[i] == c;
                i += 1;
            }
        }
        (i < p.len()).then_some((hit != neg, i + 1))
    }
    fn go(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('*') => (0..=t.len()).any(|k| go(&p[1..], &t[k..])),
            Some('?') => !t.is_empty() && go(&p[1..], &t[1..]),
            Some('[') => match (t.first(), class(&p[1..], *t.first().unwrap_or(&'\0'))) {
                (Some(_), Some((true, n))) => go(&p[1 + n..], &t[1..]),
                _ => false,
            },
            Some(c) => t.first() == Some(c) && go(&p[1..], &t[1..]),
        }
    }
    go(&p, &t)
}

fn matches(pattern: &str, dev: &BlockDev) -> bool {
    if has_glob(pattern) {
        return glob_match(pattern, &dev.path.to_string_lossy());
    }
    let want = std::fs::canonicalize(pattern).unwrap_or_else(|_| PathBuf::from(pattern));
    want == dev.path || Path::new(pattern) == dev.path
}

fn judge(d: &BlockDev, allow_wipe: bool, explicit: bool) -> Decision {
    let p = d.path.clone();
    let not = |why: String| {
        if explicit {
            Decision::Refuse(p.clone(), why)
        } else {
            Decision::Skip(p.clone(), why)
        }
    };
    if !matches!(d.kind.as_str(), "disk" | "loop" | "part") || (!explicit && d.kind != "disk") {
        return not(format!("a {} device, not a disk", d.kind));
    }
    if d.mounted {
        return not("it (or a partition on it) is mounted".into());
    }
    if d.ro {
        return not("read-only".into());
    }
    let data = match (&d.signature, d.children) {
        (Some(s), _) => Some(format!("holds data ({s})")),
        (None, true) => Some("holds partitions or volumes".to_string()),
        (None, false) => None,
    };
    match data {
        Some(why) if explicit && allow_wipe => {
            tracing::warn!("{}: {why}; wiping it as the policy allows", p.display());
            Decision::Wipe(p)
        }
        Some(why) if explicit => Decision::Refuse(
            p,
            format!("{why}; list it and set keel.disks.allow-wipe: true to wipe it"),
        ),
        Some(why) => Decision::Skip(p, format!("{why}; automatic selection never wipes")),
        None if !explicit && d.size < MIN_AUTO_SIZE => not("smaller than 1 GiB".into()),
        None => Decision::Use(p),
    }
}

/// Decides, per device, what the join does. `ours` are devices already in
/// the state file (their OSD label looks like data but is ours to finish).
pub fn select(devs: &[BlockDev], policy: &DiskPolicy, ours: &[PathBuf]) -> Vec<Decision> {
    let mut out = Vec::new();
    if policy.devices.is_empty() {
        for d in devs {
            if ours.contains(&d.path) {
                out.push(Decision::Ours(d.path.clone()));
            } else {
                out.push(judge(d, false, false));
            }
        }
        return out;
    }
    for pat in &policy.devices {
        let hits: Vec<&BlockDev> = devs.iter().filter(|d| matches(pat, d)).collect();
        if hits.is_empty() && !has_glob(pat) {
            out.push(Decision::Refuse(
                PathBuf::from(pat),
                "no such block device".into(),
            ));
        }
        for d in hits {
            if out.iter().any(|x| decision_path(x) == d.path.as_path()) {
                continue;
            }
            if ours.contains(&d.path) {
                out.push(Decision::Ours(d.path.clone()));
            } else {
                out.push(judge(d, policy.allow_wipe, true));
            }
        }
    }
    out
}

fn decision_path(d: &Decision) -> &Path {
    match d {
        Decision::Use(p) | Decision::Wipe(p) | Decision::Ours(p) => p,
        Decision::Refuse(p, _) | Decision::Skip(p, _) => p,
    }
}

#[derive(Debug, Deserialize)]
struct Lsblk {
    blockdevices: Vec<LsblkDev>,
}

#[derive(Debug, Deserialize)]
struct LsblkDev {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    ro: bool,
    #[serde(default)]
    mountpoint: Option<String>,
    #[serde(default)]
    children: Vec<LsblkDev>,
}

fn any_mounted(d: &LsblkDev) -> bool {
    d.mountpoint.is_some() || d.children.iter().any(any_mounted)
}

/// Parses `lsblk -J -b -p -o NAME,TYPE,SIZE,RO,MOUNTPOINT` output (top level
/// and partitions; signatures are filled in by [`probe`]).
pub fn parse_lsblk(json: &str) -> Result<Vec<BlockDev>, serde_json::Error> {
    let l: Lsblk = serde_json::from_str(json)?;
    let mut out = Vec::new();
    fn walk(d: &LsblkDev, out: &mut Vec<BlockDev>) {
        out.push(BlockDev {
            path: PathBuf::from(&d.name),
            kind: d.kind.clone(),
            size: d.size.unwrap_or(0),
            ro: d.ro,
            mounted: any_mounted(d),
            children: !d.children.is_empty(),
            signature: None,
        });
        for c in &d.children {
            walk(c, out);
        }
    }
    for d in &l.blockdevices {
        walk(d, &mut out);
    }
    Ok(out)
}

/// What `blkid -p` finds on `dev` (None: nothing). A probe that fails for
/// another reason counts as data, so an unreadable disk is never wiped.
pub fn signature(dev: &Path) -> Option<String> {
    match Command::new("blkid")
        .args(["-p", "-o", "export"])
        .arg(dev)
        .run_get_string()
    {
        Ok(out) => {
            let kv = |k: &str| {
                out.lines()
                    .find_map(|l| l.strip_prefix(k))
                    .map(|v| v.trim().to_string())
            };
            Some(
                kv("TYPE=")
                    .or_else(|| kv("PTTYPE=").map(|t| format!("{t} partition table")))
                    .unwrap_or_else(|| "unknown signature".to_string()),
            )
        }
        Err(CmdError::Failed { status, .. }) if status.code() == Some(2) => None,
        Err(e) => Some(format!("unknown (blkid failed: {e})")),
    }
}

/// Lists block devices with their signatures.
pub fn probe() -> Result<Vec<BlockDev>, CephError> {
    let json = Command::new("lsblk")
        .args(["-J", "-b", "-p", "-o", "NAME,TYPE,SIZE,RO,MOUNTPOINT"])
        .run_get_string()
        .map_err(CephError::tool("listing block devices"))?;
    let mut devs = parse_lsblk(&json).map_err(|source| CephError::Parse {
        what: "parsing lsblk's device list".into(),
        source,
    })?;
    for d in &mut devs {
        if matches!(d.kind.as_str(), "disk" | "loop" | "part") {
            d.signature = signature(&d.path);
        }
    }
    Ok(devs)
}

#[cfg(test)]
#[path = "disk_tests.rs"]
mod tests;
