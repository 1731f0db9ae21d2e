//! `user-data`: the `#cloud-config` document, parsed into the standard keys a
//! field technician expects (hostname, users, SSH keys, write_files, timezone,
//! ntp) plus Keel's own `keel:` section.
//!
//! Cloud-init's own keys keep cloud-init's snake_case spelling; the `keel:`
//! section is Keel's config and uses kebab-case. Keys Keel does not know are
//! reported as warnings (cloud-init has hundreds of modules; a seed written
//! for a generic image must not brick a node), never as errors.

use serde::Deserialize;

use super::files::RawWriteFile;
pub use super::files::{Owner, WriteFile};
pub use super::users::User;
use super::{users, yaml, SeedError};

/// The parsed `#cloud-config` document.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct CloudConfig {
    /// Short host name (overrides meta-data's `local-hostname`).
    pub hostname: Option<String>,
    /// Fully qualified name, written to /etc/hosts.
    pub fqdn: Option<String>,
    /// Accounts to create (see [`super::users`] for the accepted forms).
    /// cloud-init's `default` entry is accepted and ignored (Keel images
    /// have no distribution default user).
    #[serde(skip)]
    pub users: Vec<User>,
    /// `users:` as written; [`parse`] turns it into [`CloudConfig::users`].
    #[serde(rename = "users")]
    raw_users: serde_yaml_ng::Value,
    /// Keys for root's authorized_keys (there is no default user).
    pub ssh_authorized_keys: Vec<String>,
    /// Files to write, checked and decoded (see [`super::files`]).
    #[serde(skip)]
    pub write_files: Vec<WriteFile>,
    /// `write_files:` as written; [`parse`] checks it into
    /// [`CloudConfig::write_files`].
    #[serde(rename = "write_files")]
    raw_files: Vec<RawWriteFile>,
    /// Time zone name, e.g. `Europe/Berlin`.
    pub timezone: Option<String>,
    /// Time servers.
    pub ntp: Option<Ntp>,
    /// Keel's own settings.
    pub keel: Option<KeelConfig>,
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
    let invalid = |message: String| SeedError::Invalid {
        file: file.to_string(),
        message,
    };
    let (users, w) = users::normalize(file, std::mem::take(&mut cfg.raw_users)).map_err(invalid)?;
    cfg.users = users;
    warnings.extend(w);
    for (i, f) in std::mem::take(&mut cfg.raw_files).into_iter().enumerate() {
        let f = f
            .check()
            .map_err(|e| invalid(format!("write_files[{i}]: {e}")))?;
        cfg.write_files.push(f);
    }
    users::check_keys(&cfg.ssh_authorized_keys)
        .map_err(|e| invalid(format!("ssh_authorized_keys: {e}")))?;
    if let Some(ntp) = &cfg.ntp {
        let client = ntp.ntp_client.as_deref().unwrap_or("auto");
        if !["auto", "chrony", "systemd-timesyncd"].contains(&client) {
            return Err(invalid(format!(
                "ntp.ntp_client {client:?} is not supported (auto, chrony or systemd-timesyncd)"
            )));
        }
    }
    Ok((cfg, warnings))
}
