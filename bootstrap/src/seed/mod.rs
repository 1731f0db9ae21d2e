//! The first-boot seed, cloud-init NoCloud compatible: `meta-data`,
//! `user-data` (`#cloud-config`) and optional `network-config`, read from a
//! CIDATA volume, /var/lib/cloud/seed/nocloud, or a directory/image given on
//! the command line ([`locate`]).
//!
//! Parsing is pure ([`Seed::parse`]); [`Seed::load_dir`] does the I/O.

pub mod locate;
pub mod meta;
pub mod network;
pub mod user_data;
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
        Ok(Seed {
            meta,
            user,
            network,
            warnings,
        })
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

#[cfg(test)]
mod tests;
