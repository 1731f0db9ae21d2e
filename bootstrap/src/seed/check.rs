//! `keel-bootstrap seed check`: what a seed would do, without doing it.
//!
//! The check is the same parse and validation `run` does before it applies
//! anything ([`super::Seed::parse`] and [`super::Seed::keel`]); this module
//! only turns the result into a report, as text for a person or JSON for a
//! machine. Building and rendering the report are pure.

use serde::Serialize;

use super::{Seed, SeedError};

/// The outcome of checking a seed (the `--json` document).
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Report {
    /// Whether `run` would accept the seed.
    pub valid: bool,
    /// Where the seed was read from.
    pub source: String,
    /// Why the seed is refused (one line), when it is.
    pub error: Option<String>,
    /// Non-fatal findings (unknown keys, ignored parts).
    pub warnings: Vec<String>,
    /// What applying the seed would do; absent when it does not parse.
    pub summary: Option<Summary>,
}

/// What applying a seed would do.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Summary {
    /// meta-data `instance-id`.
    pub instance_id: String,
    /// The host name that would be set.
    pub hostname: Option<String>,
    /// The FQDN for /etc/hosts.
    pub fqdn: Option<String>,
    /// Accounts.
    pub users: Vec<UserSummary>,
    /// Number of keys for root's authorized_keys.
    pub root_ssh_keys: usize,
    /// Files to write.
    pub files: Vec<FileSummary>,
    /// Time zone.
    pub timezone: Option<String>,
    /// Time servers and pools.
    pub ntp: Vec<String>,
    /// Interfaces from network-config.
    pub network: Vec<String>,
    /// Enrollment, when the `keel:` section is there.
    pub keel: Option<KeelSummary>,
}

/// One account.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct UserSummary {
    /// Login name.
    pub name: String,
    /// Supplementary groups.
    pub groups: Vec<String>,
    /// Has sudo rules.
    pub sudo: bool,
    /// Number of SSH keys.
    pub ssh_keys: usize,
}

/// One file.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct FileSummary {
    /// Path on the node.
    pub path: String,
    /// Mode, octal (`0644`).
    pub mode: String,
    /// `user[:group]`.
    pub owner: String,
    /// Decoded size.
    pub bytes: usize,
    /// Appends instead of replacing.
    pub append: bool,
}

/// The enrollment settings.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct KeelSummary {
    /// keel-enroll's URL.
    pub enroll_url: Option<String>,
    /// The store.
    pub store_id: Option<String>,
    /// Whether a token is given (never printed).
    pub token: bool,
    /// Ceph disks: listed devices, or empty for "every empty non-boot disk".
    pub disks: Vec<String>,
    /// Whether disks holding data may be wiped.
    pub allow_wipe: bool,
    /// GitOps bundle override.
    pub bundle: Option<String>,
}

/// Builds the report for a seed that was read (`Ok`) or not (`Err`).
pub fn report(source: &str, seed: Result<&Seed, &SeedError>) -> Report {
    let seed = match seed {
        Ok(s) => s,
        Err(e) => {
            return Report {
                valid: false,
                source: source.to_string(),
                error: Some(e.to_string()),
                warnings: Vec::new(),
                summary: None,
            }
        }
    };
    let error = seed.keel().err().map(|e| e.to_string());
    Report {
        valid: error.is_none(),
        source: source.to_string(),
        error,
        warnings: seed.warnings.clone(),
        summary: Some(summary(seed)),
    }
}

fn summary(s: &Seed) -> Summary {
    let u = &s.user;
    Summary {
        instance_id: s.meta.instance_id.clone(),
        hostname: s.hostname(),
        fqdn: u.fqdn.clone(),
        users: u
            .users
            .iter()
            .map(|u| UserSummary {
                name: u.name.clone(),
                groups: u.groups.clone(),
                sudo: !u.sudo.is_empty(),
                ssh_keys: u.ssh_authorized_keys.len(),
            })
            .collect(),
        root_ssh_keys: u.ssh_authorized_keys.len(),
        files: u
            .write_files
            .iter()
            .map(|f| FileSummary {
                path: f.path.clone(),
                mode: format!("{:04o}", f.mode),
                owner: f.owner.to_string(),
                bytes: f.data.len(),
                append: f.append,
            })
            .collect(),
        timezone: u.timezone.clone(),
        ntp: u
            .ntp
            .as_ref()
            .filter(|n| n.enabled != Some(false))
            .map(|n| n.servers.iter().chain(&n.pools).cloned().collect())
            .unwrap_or_default(),
        network: s
            .network
            .as_ref()
            .map(|n| {
                n.render_networkd()
                    .into_iter()
                    .map(|(name, _)| name)
                    .collect()
            })
            .unwrap_or_default(),
        keel: u.keel.as_ref().map(|k| KeelSummary {
            enroll_url: k.enroll_url.clone(),
            store_id: k.store_id.clone(),
            token: k.token.is_some(),
            disks: k.disks.devices.clone(),
            allow_wipe: k.disks.allow_wipe,
            bundle: k.bundle.as_ref().map(|b| match &b.git_ref {
                Some(r) => format!("{} ({r})", b.url),
                None => b.url.clone(),
            }),
        }),
    }
}

/// The report for a person: a verdict line, warnings, then what would be done.
pub fn render_text(r: &Report) -> String {
    let mut out = String::new();
    let verdict = if r.valid { "valid" } else { "INVALID" };
    out += &format!("seed {}: {verdict}\n", r.source);
    if let Some(e) = &r.error {
        out += &format!("error: {e}\n");
    }
    for w in &r.warnings {
        out += &format!("warning: {w}\n");
    }
    if let Some(s) = &r.summary {
        for (k, v) in summary_lines(s) {
            out += &format!("  {k:<10} {v}\n");
        }
    }
    out
}

/// `items` joined by `sep`, or `empty` when there are none.
fn joined(items: &[String], sep: &str, empty: &str) -> String {
    if items.is_empty() {
        empty.to_string()
    } else {
        items.join(sep)
    }
}

/// The summary as (label, value) lines, in the order a person reads them.
fn summary_lines(s: &Summary) -> Vec<(&'static str, String)> {
    let hostname = match (&s.hostname, &s.fqdn) {
        (Some(h), Some(f)) => format!("{h} ({f})"),
        (Some(h), None) => h.clone(),
        _ => "(unchanged)".into(),
    };
    let users: Vec<String> = s.users.iter().map(user_text).collect();
    let mut v = vec![
        ("instance", s.instance_id.clone()),
        ("hostname", hostname),
        ("users", joined(&users, "; ", "-")),
        ("root keys", s.root_ssh_keys.to_string()),
    ];
    for (i, f) in s.files.iter().enumerate() {
        let append = if f.append { " (append)" } else { "" };
        let text = format!(
            "{} {} {} {} bytes{append}",
            f.path, f.mode, f.owner, f.bytes
        );
        v.push((if i == 0 { "files" } else { "" }, text));
    }
    if s.files.is_empty() {
        v.push(("files", "-".into()));
    }
    v.push(("timezone", s.timezone.clone().unwrap_or_else(|| "-".into())));
    v.push(("ntp", joined(&s.ntp, " ", "-")));
    v.push(("network", joined(&s.network, " ", "(image default)")));
    if let Some(k) = &s.keel {
        v.extend(keel_lines(k));
    }
    v
}

fn user_text(u: &UserSummary) -> String {
    let mut d = u.name.clone();
    if !u.groups.is_empty() {
        d += &format!(" [{}]", u.groups.join(","));
    }
    if u.sudo {
        d += " sudo";
    }
    if u.ssh_keys > 0 {
        d += &format!(" {} key(s)", u.ssh_keys);
    }
    d
}

fn keel_lines(k: &KeelSummary) -> Vec<(&'static str, String)> {
    let enroll = format!(
        "{} store {} token {}",
        k.enroll_url.as_deref().unwrap_or("(no enroll-url)"),
        k.store_id.as_deref().unwrap_or("(no store-id)"),
        if k.token { "given" } else { "none" }
    );
    let disks = format!(
        "{}{}",
        joined(&k.disks, " ", "every empty non-boot disk"),
        if k.allow_wipe { " (may wipe)" } else { "" }
    );
    let mut v = vec![("enroll", enroll), ("disks", disks)];
    if let Some(b) = &k.bundle {
        v.push(("bundle", b.clone()));
    }
    v
}
