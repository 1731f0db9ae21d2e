//! The first-boot seed, cloud-init NoCloud compatible: `meta-data`,
//! `user-data` (`#cloud-config`) and optional `network-config`, read from a
//! CIDATA volume, /var/lib/cloud/seed/nocloud, or a directory/image given on
//! the command line ([`locate`]).
//!
//! Parsing is pure ([`Seed::parse`]); [`Seed::load_dir`] does the I/O.
//! Parsing also checks every value that applying the seed would use (file
//! modes, encodings, paths, user names, the host name), so that a seed that
//! parses cannot fail to apply because of its content, and
//! `keel-bootstrap seed check` ([`check`]) catches everything `run` would.

pub mod check;
pub mod files;
pub mod locate;
pub mod meta;
pub mod network;
pub mod user_data;
pub mod users;
mod yaml;

use std::path::{Path, PathBuf};

pub use meta::MetaData;
pub use network::NetworkConfig;
pub use user_data::{CloudConfig, DiskPolicy, KeelConfig};

/// Errors reading or parsing a seed.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// YAML that does not parse or does not fit the schema, with its position.
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        /// Seed file name.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// Content that parses but is not acceptable.
    #[error("{file}: {message}")]
    Invalid {
        /// Seed file name.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// user-data has no `keel:` section: the node cannot enroll.
    #[error(
        "user-data has no `keel:` section, so the node cannot enroll; add at least: \
         keel: {{enroll-url: https://enroll.example.com:8443, enroll-ca: <PEM CA certificate>, \
         store-id: <store>, token: <one-time token>}} (token may be left out if the TPM is allow-listed)"
    )]
    NoKeel,
    /// A required file is missing.
    #[error("{0}: missing (a NoCloud seed needs meta-data and user-data)")]
    Missing(PathBuf),
    /// I/O error reading a seed file.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No seed anywhere Keel looks.
    #[error("no seed found: attach a volume labelled CIDATA, put files in {0}, or pass --seed")]
    NotFound(PathBuf),
    /// Reading a seed image failed.
    #[error("reading seed image {path}: {source}")]
    Image {
        /// Image file or device.
        path: PathBuf,
        /// The tool's error.
        #[source]
        source: keel_cmd::CmdError,
    },
    /// The image is neither ISO 9660 nor FAT.
    #[error("{0}: not an ISO 9660 or FAT (vfat) image")]
    UnknownImage(PathBuf),
}

/// A parsed seed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Seed {
    /// meta-data.
    pub meta: MetaData,
    /// user-data (`#cloud-config`).
    pub user: CloudConfig,
    /// network-config, if present and version 2.
    pub network: Option<NetworkConfig>,
    /// Non-fatal findings (unknown keys, unsupported formats), one per line.
    pub warnings: Vec<String>,
}

impl Seed {
    /// Parses the three documents (`network` may be absent).
    pub fn parse(meta: &str, user: &str, network: Option<&str>) -> Result<Seed, SeedError> {
        let (meta, mut warnings) = meta::parse("meta-data", meta)?;
        let (user, w) = user_data::parse("user-data", user)?;
        warnings.extend(w);
        let network = match network {
            Some(n) => {
                let (n, w) = network::parse("network-config", n)?;
                warnings.extend(w);
                n
            }
            None => None,
        };
        let seed = Seed {
            meta,
            user,
            network,
            warnings,
        };
        if let Some(h) = seed.hostname() {
            if !valid_hostname(&h) {
                let file = if seed.user.hostname.is_some() || seed.meta.local_hostname.is_none() {
                    "user-data"
                } else {
                    "meta-data"
                };
                return Err(SeedError::Invalid {
                    file: file.into(),
                    message: format!(
                        "host name {h:?} is not valid (letters, digits and '-', at most 63, \
                         not starting or ending with '-')"
                    ),
                });
            }
        }
        Ok(seed)
    }

    /// The `keel:` section, with what enrollment needs: an https
    /// `enroll-url`, an `enroll-ca` holding a PEM certificate, a `store-id`.
    /// `run` and `seed check` both call this before anything is applied.
    pub fn keel(&self) -> Result<&KeelConfig, SeedError> {
        let k = self.user.keel.as_ref().ok_or(SeedError::NoKeel)?;
        let invalid = |message: String| SeedError::Invalid {
            file: "user-data".into(),
            message,
        };
        let missing = |key: &str, example: &str| {
            invalid(format!(
                "keel: has no `{key}:`; add e.g. `{key}: {example}`"
            ))
        };
        let url = k
            .enroll_url
            .as_deref()
            .ok_or_else(|| missing("enroll-url", "https://enroll.example.com:8443"))?;
        let parsed = reqwest::Url::parse(url).ok();
        if parsed.as_ref().map(reqwest::Url::scheme) != Some("https")
            || parsed.as_ref().and_then(reqwest::Url::host_str).is_none()
        {
            return Err(invalid(format!(
                "keel.enroll-url {url:?} is not an https:// URL"
            )));
        }
        let ca = k
            .enroll_ca
            .as_deref()
            .ok_or_else(|| missing("enroll-ca", "| <PEM certificate>"))?;
        match reqwest::Certificate::from_pem_bundle(ca.as_bytes()) {
            Ok(certs) if !certs.is_empty() => {}
            _ => {
                return Err(invalid(
                    "keel.enroll-ca holds no PEM certificate (-----BEGIN CERTIFICATE----- ...)"
                        .into(),
                ))
            }
        }
        if k.store_id.as_deref().is_none_or(|s| s.trim().is_empty()) {
            return Err(missing("store-id", "store-0042"));
        }
        Ok(k)
    }

    /// Reads a seed directory (the layout of a CIDATA volume).
    pub fn load_dir(dir: &Path) -> Result<Seed, SeedError> {
        let read = |name: &str, required: bool| -> Result<Option<String>, SeedError> {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(s) => Ok(Some(s)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(None),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(SeedError::Missing(path)),
                Err(source) => Err(SeedError::Io { path, source }),
            }
        };
        let meta = read("meta-data", true)?.unwrap_or_default();
        let user = read("user-data", true)?.unwrap_or_default();
        let net = read("network-config", false)?;
        Seed::parse(&meta, &user, net.as_deref())
    }

    /// The host name to set: user-data `hostname`, else meta-data
    /// `local-hostname`, else the short part of `fqdn`.
    pub fn hostname(&self) -> Option<String> {
        self.user
            .hostname
            .clone()
            .or_else(|| self.meta.local_hostname.clone())
            .or_else(|| {
                self.user
                    .fqdn
                    .as_deref()
                    .and_then(|f| f.split('.').next())
                    .map(str::to_string)
            })
            .map(|h| h.split('.').next().unwrap_or_default().to_string())
            .filter(|h| !h.is_empty())
    }
}

/// RFC 1123 host name label (the short name Keel sets).
fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 63
        && !h.starts_with('-')
        && !h.ends_with('-')
        && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

#[cfg(test)]
mod tests;
