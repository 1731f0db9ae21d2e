//! Resolving packages with the real apt against the real archive, in a
//! private apt state directory (own sources list, package lists, empty dpkg
//! status), so nothing of the host's apt configuration leaks in and nothing
//! of the host changes.
//!
//! Why apt's simulation and not a scratch root: `apt-get install -s` from an
//! empty dpkg status computes exactly the transaction mkosi's own apt run
//! will perform (same solver, same archive, same Essential set, recommends
//! off), in seconds and without downloading a single .deb.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use keel_cmd::{CmdError, CommandRunExt};

use super::{Lock, LockedPackage, Snapshot};
use crate::render::MKOSI_INITRD_PACKAGES;
use crate::spec::mirror::Mirrors;
use crate::spec::ImageSpec;

/// What mkosi installs first into every Debian image (see its debian.py).
const BASE: &[&str] = &["?essential", "?exact-name(usr-is-merged)", "base-files"];

/// A private apt state directory with the image's sources.
#[derive(Debug)]
pub struct PrivateApt {
    _dir: Option<tempfile::TempDir>,
    lists: PathBuf,
    opts: Vec<String>,
}

impl PrivateApt {
    /// Sets up the state directory and downloads the package lists; in
    /// `state` when given (kept between builds: apt then fetches only what
    /// changed), else in a fresh temporary directory.
    pub fn new(spec: &ImageSpec, mirrors: &Mirrors, state: Option<&Path>) -> anyhow::Result<Self> {
        let (dir, p) = match state {
            Some(s) => (None, s.to_path_buf()),
            None => {
                let d = tempfile::Builder::new().prefix("keel-apt-").tempdir()?;
                let p = d.path().to_path_buf();
                (Some(d), p)
            }
        };
        let p = p.as_path();
        for d in ["lists/partial", "cache/archives/partial", "parts", "prefs"] {
            std::fs::create_dir_all(p.join(d))?;
        }
        std::fs::write(p.join("status"), "")?;
        std::fs::write(p.join("sources.list"), one_line_sources(spec, mirrors))?;
        let arch = spec.debian_arch();
        let opt = |k: &str, v: &Path| format!("-oDir::{k}={}", v.display());
        let opts = vec![
            opt("Etc::SourceList", &p.join("sources.list")),
            opt("Etc::SourceParts", &p.join("parts")),
            opt("Etc::PreferencesParts", &p.join("prefs")),
            opt("Etc::Preferences", &p.join("prefs/none")),
            opt("State::Lists", &p.join("lists")),
            opt("State::Status", &p.join("status")),
            opt("Cache", &p.join("cache")),
            format!("-oAPT::Architecture={arch}"),
            format!("-oAPT::Architectures={arch}"),
            format!(
                "-oAPT::Install-Recommends={}",
                spec.packages.with_recommends
            ),
            "-oAcquire::Languages=none".into(),
            "-oAcquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".into(),
            "-oDebug::NoLocking=1".into(),
            "-oAPT::Sandbox::User=root".into(),
        ];
        let apt = PrivateApt {
            lists: p.join("lists"),
            _dir: dir,
            opts,
        };
        apt.cmd("Downloading package lists", &["update"])
            .run()
            .context("apt-get update")?;
        Ok(apt)
    }

    fn cmd(&self, what: &str, args: &[&str]) -> Command {
        tracing::info!("{what}");
        let mut c = Command::new("apt-get");
        c.args(&self.opts).args(["-q", "-y"]).args(args);
        c.env("LC_ALL", "C");
        c
    }

    /// The full install transaction for `packages` on an empty system.
    /// (The packages' `sha256` is left empty: [`resolve_with`] fills it in.)
    pub fn simulate(&self, packages: &[String]) -> Result<Vec<LockedPackage>, CmdError> {
        let mut args = vec!["install", "-s"];
        args.extend(packages.iter().map(String::as_str));
        let out = self.cmd("Resolving dependencies", &args).run_get_string()?;
        Ok(parse_simulation(&out))
    }

    /// Downloads the .debs of `pins` into `dest` (`apt-get download`).
    pub fn download(&self, pins: &[String], dest: &Path) -> Result<(), CmdError> {
        let mut args = vec!["download"];
        args.extend(pins.iter().map(String::as_str));
        let mut c = self.cmd("Downloading packages", &args);
        c.current_dir(dest);
        c.run()
    }

    /// What the archive's package index says of each `name=version` pin:
    /// pin → sha256 of its .deb. Pins the archive lacks are absent. One
    /// lookup (`apt-cache show`), no dependency solving.
    pub fn index(
        &self,
        pins: &[String],
    ) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
        let mut c = Command::new("apt-cache");
        c.args(&self.opts)
            .args(["-q", "show", "--no-all-versions"])
            .args(pins)
            .env("LC_ALL", "C");
        // apt-cache prints a stanza for each version it has and, depending on
        // its version and -q, may exit 0 and say nothing about a pin it lacks,
        // or fail naming it: both come out as an absent pin.
        let out = match c.run_get_string() {
            Ok(out) => out,
            Err(e) => {
                let missing = parse_missing_versions(&e.to_string());
                if missing.is_empty() {
                    return Err(e).context("looking up package versions in the archive");
                }
                let rest: Vec<String> = pins
                    .iter()
                    .filter(|p| !missing.contains(p))
                    .cloned()
                    .collect();
                return if rest.is_empty() {
                    Ok(Default::default())
                } else {
                    self.index(&rest)
                };
            }
        };
        Ok(parse_show(&out))
    }

    /// Checks every locked package against the archive: which versions it
    /// no longer offers, and which it offers with another digest than the
    /// lock's (refused outright: same name and version, different bytes).
    pub fn check(&self, lock: &Lock) -> anyhow::Result<ArchiveCheck> {
        let pkgs = lock.all_packages();
        tracing::info!(
            "Checking {} locked package versions against the archive",
            pkgs.len()
        );
        let pins: Vec<String> = pkgs.iter().map(|p| p.pin()).collect();
        let index = self.index(&pins)?;
        let mut check = ArchiveCheck::default();
        for p in pkgs {
            match index.get(&p.pin()) {
                None => check.missing.push(p.clone()),
                Some(sha) if *sha != p.sha256 => {
                    check.mismatched.push((p.clone(), sha.clone()));
                }
                Some(_) => {}
            }
        }
        if !check.mismatched.is_empty() {
            let list: Vec<String> = check
                .mismatched
                .iter()
                .map(|(p, got)| format!("{} (lock {}, archive {got})", p.pin(), p.sha256))
                .collect();
            anyhow::bail!(
                "the archive offers these locked package versions with other contents than the lock records: {}; \
                 refusing to build (check the mirror, then `keel lock --update` if the change is legitimate)",
                list.join(", ")
            );
        }
        Ok(check)
    }

    /// The snapshot of each suite: Release date and InRelease hash.
    pub fn snapshots(&self) -> anyhow::Result<Vec<Snapshot>> {
        let mut v = Vec::new();
        for e in std::fs::read_dir(&self.lists)? {
            let path = e?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let Some(stem) = name.strip_suffix("_InRelease") else {
                continue;
            };
            let bytes = std::fs::read(&path)?;
            let text = String::from_utf8_lossy(&bytes);
            let date = text
                .lines()
                .find_map(|l| l.strip_prefix("Date: "))
                .with_context(|| format!("{} has no Date:", path.display()))?
                .trim()
                .to_string();
            let suite = stem.split_once("_dists_").map_or("", |(_, s)| s);
            use sha2::Digest as _;
            v.push(Snapshot {
                suite: suite.replace('_', "/"),
                date_epoch: parse_release_date(&date)
                    .with_context(|| format!("parsing Date: {date}"))?,
                date,
                inrelease_sha256: hex::encode(sha2::Sha256::digest(&bytes)),
            });
        }
        v.sort_by(|a, b| a.suite.cmp(&b.suite));
        Ok(v)
    }
}

/// The result of [`PrivateApt::check`].
#[derive(Debug, Default)]
pub struct ArchiveCheck {
    /// Locked packages the archive no longer offers at their version.
    pub missing: Vec<LockedPackage>,
    /// Offered, but with another digest (name=version, archive's sha256).
    pub mismatched: Vec<(LockedPackage, String)>,
}

impl ArchiveCheck {
    /// `name=version` of every missing package.
    pub fn gone(&self) -> Vec<String> {
        self.missing.iter().map(LockedPackage::pin).collect()
    }
}

fn one_line_sources(spec: &ImageSpec, mirrors: &Mirrors) -> String {
    let d = &spec.distribution;
    let comps = d.components.join(" ");
    format!(
        "deb {m} {r} {comps}\ndeb {m} {r}-updates {comps}\ndeb {s} {r}-security {comps}\n",
        m = mirrors.main,
        s = mirrors.security,
        r = d.release
    )
}

/// Parses `apt-get install -s` output: `Inst NAME (VERSION SUITES [ARCH])`.
pub fn parse_simulation(out: &str) -> Vec<LockedPackage> {
    let mut v: Vec<LockedPackage> = out
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("Inst ")?;
            let (name, rest) = rest.split_once(' ')?;
            // `(VERSION SUITES [ARCH])`, possibly followed by ` []` (packages
            // apt would break and repair): only what is inside the parentheses.
            let inner = rest.strip_prefix('(')?;
            let inner = inner.split_once(')').map_or(inner, |(i, _)| i);
            let version = inner.split_whitespace().next()?;
            let arch = inner
                .rsplit_once('[')
                .and_then(|(_, a)| a.split_once(']'))
                .map(|(a, _)| a)
                .unwrap_or("all");
            Some(LockedPackage {
                name: name.to_string(),
                version: version.to_string(),
                architecture: arch.to_string(),
                sha256: String::new(),
            })
        })
        .collect();
    v.sort();
    v
}

/// Parses `apt-cache show` output (deb822 stanzas): `name=version` → the
/// `SHA256:` of its .deb.
pub fn parse_show(show: &str) -> std::collections::BTreeMap<String, String> {
    let mut have = std::collections::BTreeMap::new();
    for stanza in show.split("\n\n") {
        let field = |key: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(str::trim)
        };
        if let (Some(name), Some(version), Some(sha)) =
            (field("Package:"), field("Version:"), field("SHA256:"))
        {
            have.insert(format!("{name}={version}"), sha.to_string());
        }
    }
    have
}

/// Extracts `name=version` from apt's "Version 'V' for 'N' was not found" errors.
pub fn parse_missing_versions(msg: &str) -> Vec<String> {
    msg.lines()
        .filter_map(|l| {
            let rest = l.split("Version '").nth(1)?;
            let (ver, rest) = rest.split_once("' for '")?;
            let (name, _) = rest.split_once('\'')?;
            Some(format!("{name}={ver}"))
        })
        .collect()
}

/// Parses a Release `Date:` ("Sat, 10 May 2025 09:03:48 UTC") to seconds since 1970.
pub fn parse_release_date(s: &str) -> Option<i64> {
    let f: Vec<&str> = s.split_whitespace().collect();
    let [_, day, mon, year, hms, tz] = f.as_slice() else {
        return None;
    };
    if !matches!(*tz, "UTC" | "GMT" | "+0000") {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = MONTHS.iter().position(|x| x == mon)? as i64 + 1;
    let d: i64 = day.parse().ok()?;
    let y: i64 = year.parse().ok()?;
    let t: Vec<i64> = hms
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let [h, mi, se] = t.as_slice() else {
        return None;
    };
    // Days from civil (proleptic Gregorian), Howard Hinnant's algorithm.
    let (y2, m2) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + se)
}

/// Resolves the image's and its initrd's full package sets, with the
/// archive index's digest of every .deb.
pub fn resolve_with(apt: &PrivateApt, spec: &ImageSpec) -> anyhow::Result<Lock> {
    let base: Vec<String> = BASE.iter().map(|s| s.to_string()).collect();
    let image: Vec<String> = base.iter().chain(&spec.packages.install).cloned().collect();
    let initrd: Vec<String> = base
        .iter()
        .cloned()
        .chain(MKOSI_INITRD_PACKAGES.iter().map(|s| s.to_string()))
        .chain(spec.packages.initrd.iter().cloned())
        .collect();
    let mut packages = apt
        .simulate(&image)
        .context("resolving the image's packages")?;
    let mut initrd_packages = apt
        .simulate(&initrd)
        .context("resolving the initrd's packages")?;
    let pins: Vec<String> = packages
        .iter()
        .chain(&initrd_packages)
        .map(LockedPackage::pin)
        .collect();
    let index = apt.index(&pins)?;
    for p in packages.iter_mut().chain(initrd_packages.iter_mut()) {
        p.sha256 = index
            .get(&p.pin())
            .with_context(|| format!("the archive index has no entry for {}", p.pin()))?
            .clone();
    }
    Ok(Lock {
        version: super::FORMAT,
        snapshots: apt.snapshots()?,
        packages,
        initrd_packages,
    })
}
