//! `user-data`: the `#cloud-config` document, parsed into the standard keys a
//! field technician expects (hostname, users, SSH keys, write_files, timezone,
//! ntp) plus Keel's own `keel:` section.
//!
//! Cloud-init's own keys keep cloud-init's snake_case spelling; the `keel:`
//! section is Keel's config and uses kebab-case. Keys Keel does not know are
//! reported as warnings (cloud-init has hundreds of modules; a seed written
//! for a generic image must not brick a node), never as errors.

use serde::Deserialize;

use super::{yaml, SeedError};

/// The parsed `#cloud-config` document.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct CloudConfig {
    /// Short host name (overrides meta-data's `local-hostname`).
    pub hostname: Option<String>,
    /// Fully qualified name, written to /etc/hosts.
    pub fqdn: Option<String>,
    /// Accounts to create. cloud-init's `default` entry is accepted and ignored
    /// (Keel images have no distribution default user).
    #[serde(skip)]
    pub users: Vec<User>,
    /// `users:` as written; [`parse`] turns it into [`CloudConfig::users`].
    #[serde(rename = "users")]
    raw_users: Vec<serde_yaml_ng::Value>,
    /// Keys for root's authorized_keys (there is no default user).
    pub ssh_authorized_keys: Vec<String>,
    /// Files to write.
    pub write_files: Vec<WriteFile>,
    /// Time zone name, e.g. `Europe/Berlin`.
    pub timezone: Option<String>,
    /// Time servers.
    pub ntp: Option<Ntp>,
    /// Keel's own settings.
    pub keel: Option<KeelConfig>,
}

/// One `users:` entry.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct User {
    /// Login name (required).
    pub name: String,
    /// Full name / comment.
    pub gecos: Option<String>,
    /// Supplementary groups (list or comma-separated string); created if missing.
    #[serde(deserialize_with = "string_or_list")]
    pub groups: Vec<String>,
    /// sudoers rules, e.g. `ALL=(ALL) NOPASSWD:ALL`; `false` means none.
    #[serde(deserialize_with = "sudo")]
    pub sudo: Vec<String>,
    /// Login shell.
    pub shell: Option<String>,
    /// Home directory (default /home/NAME).
    pub homedir: Option<String>,
    /// Public keys for this user's authorized_keys.
    pub ssh_authorized_keys: Vec<String>,
    /// Lock the password (default true, as in cloud-init).
    pub lock_passwd: Option<bool>,
    /// A crypt(3) password hash.
    pub passwd: Option<String>,
    /// Create as a system account.
    pub system: bool,
}

/// One `write_files:` entry.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct WriteFile {
    /// Absolute path (inside the target root).
    pub path: String,
    /// Content, encoded as `encoding` says.
    pub content: String,
    /// `text/plain` (default), `b64`/`base64`, `gz`/`gzip`, `gz+b64`/`gzip+base64`.
    pub encoding: Option<String>,
    /// Octal mode as a string (`'0644'`), default 0644.
    #[serde(deserialize_with = "permissions")]
    pub permissions: Option<u32>,
    /// `user:group`, default `root:root`.
    pub owner: Option<String>,
    /// Append instead of replacing.
    pub append: bool,
    /// Accepted for compatibility; Keel writes every file in one stage.
    pub defer: bool,
}

/// The `ntp:` section.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Ntp {
    /// `false` disables writing any time configuration.
    pub enabled: Option<bool>,
    /// Individual servers.
    pub servers: Vec<String>,
    /// Server pools.
    pub pools: Vec<String>,
    /// `auto` (default), `chrony` or `systemd-timesyncd`.
    pub ntp_client: Option<String>,
}

/// Keel's settings: the `keel:` section of user-data.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct KeelConfig {
    /// Base URL of keel-enroll, e.g. `https://enroll.example.com:8443`.
    pub enroll_url: Option<String>,
    /// PEM CA bundle that keel-enroll's TLS certificate chains to (inline).
    pub enroll_ca: Option<String>,
    /// One-time enrollment token for this store.
    pub token: Option<String>,
    /// The store this node belongs to.
    pub store_id: Option<String>,
    /// Which disks Ceph may use.
    pub disks: DiskPolicy,
    /// Overrides the GitOps bundle source from the join material.
    pub bundle: Option<BundleSource>,
    /// TPM TCTI (default `device:/dev/tpmrm0`; the command line wins).
    pub tcti: Option<String>,
}

/// Which disks become Ceph OSDs.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct DiskPolicy {
    /// Device paths (e.g. `/dev/disk/by-path/...`) or globs (`/dev/sd[b-z]`).
    /// Empty: every disk that is not the boot disk and holds no data.
    pub devices: Vec<String>,
    /// Allow wiping a selected disk that holds data (partitions, signatures).
    pub allow_wipe: bool,
    /// For hosts without a spare disk (tests): a file-backed OSD of this many GiB.
    pub file_backed_gib: Option<u64>,
}

/// Where the GitOps bundle comes from, overriding the join material.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct BundleSource {
    /// Git URL (HTTPS).
    pub url: String,
    /// Branch or tag.
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
}

/// Parses a user-data document. `file` names it in errors and warnings.
/// Returns the config and the warnings (unknown keys, unsupported formats).
pub fn parse(file: &str, text: &str) -> Result<(CloudConfig, Vec<String>), SeedError> {
    let first = text.lines().next().unwrap_or_default().trim_end();
    if text.trim().is_empty() {
        return Ok((CloudConfig::default(), Vec::new()));
    }
    if first != "#cloud-config" {
        let kind = if first.starts_with("#!") {
            "a shell script"
        } else if first.starts_with("Content-Type:") || first.starts_with("MIME-Version:") {
            "a MIME multi-part archive"
        } else {
            "not #cloud-config"
        };
        return Ok((
            CloudConfig::default(),
            vec![format!(
                "{file}: user-data is {kind}; Keel only reads #cloud-config, ignored"
            )],
        ));
    }
    let (mut cfg, mut warnings): (CloudConfig, _) = yaml::from_str(file, text)?;
    for (i, v) in std::mem::take(&mut cfg.raw_users).into_iter().enumerate() {
        if v.as_str() == Some("default") {
            continue;
        }
        let at = format!("users[{i}]");
        let (user, w): (User, _) = yaml::from_value(file, &at, v)?;
        if user.name.is_empty() {
            return Err(SeedError::Invalid {
                file: file.to_string(),
                message: format!("{at}: a user needs `name:`"),
            });
        }
        warnings.extend(w);
        cfg.users.push(user);
    }
    Ok((cfg, warnings))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => s
            .split(',')
            .map(|g| g.trim().to_string())
            .filter(|g| !g.is_empty())
            .collect(),
        Some(OneOrMany::Many(v)) => v,
    })
}

fn sudo<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Sudo {
        Off(bool),
        One(String),
        Many(Vec<String>),
    }
    match Option::<Sudo>::deserialize(d)? {
        None | Some(Sudo::Off(false)) => Ok(Vec::new()),
        Some(Sudo::Off(true)) => Err(serde::de::Error::custom(
            "sudo: true is not a rule; write e.g. \"ALL=(ALL) NOPASSWD:ALL\"",
        )),
        Some(Sudo::One(s)) => Ok(vec![s]),
        Some(Sudo::Many(v)) => Ok(v),
    }
}

fn permissions<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Mode {
        Text(String),
        // YAML 1.1 reads an unquoted 0644 as octal 420, YAML 1.2 as decimal
        // 644; cloud-init documents the quoted form. An integer is taken as
        // the octal digits written.
        Int(u32),
    }
    let parse = |s: &str| {
        let t = s.trim().trim_start_matches("0o");
        u32::from_str_radix(t, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "permissions {s:?} is not an octal mode like '0644'"
                ))
            })
    };
    match Option::<Mode>::deserialize(d)? {
        None => Ok(None),
        Some(Mode::Text(s)) => parse(&s).map(Some),
        Some(Mode::Int(i)) => parse(&i.to_string()).map(Some),
    }
}
