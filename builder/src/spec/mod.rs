//! The image definition format: `images/<name>/image.toml`.
//!
//! An image definition is data, not code: which distribution and release,
//! which packages, which extra files, users and groups, the kernel command
//! line, the outputs, and how the disk is laid out and protected. Keel turns
//! it into an mkosi configuration ([`crate::render`]). The format is strict
//! (unknown keys are errors) so a typo never silently builds a different
//! image; every error names the file, the key and what is allowed.
//!
//! [`parse`] is pure (text in, definition or error out); [`load`] reads the
//! file. Semantic checks live in [`validate`].

pub mod mirror;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use validate::validate;

/// The file name of an image definition inside its directory.
pub const FILE_NAME: &str = "image.toml";

/// A bad image definition: the file, the key, and what went wrong / what is allowed.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("reading {file}: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: key `{key}`: {message}")]
    Invalid {
        file: PathBuf,
        key: String,
        message: String,
    },
}

/// A whole image definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImageSpec {
    pub image: ImageMeta,
    pub distribution: Distribution,
    #[serde(default)]
    pub packages: Packages,
    #[serde(default)]
    pub files: Files,
    #[serde(default, rename = "user")]
    pub users: Vec<User>,
    #[serde(default, rename = "group")]
    pub groups: Vec<Group>,
    #[serde(default)]
    pub kernel: Kernel,
    #[serde(default)]
    pub services: Services,
    #[serde(default)]
    pub output: Output,
    #[serde(default)]
    pub partitions: Partitions,
    #[serde(default)]
    pub keel: KeelOptions,
}

/// `[image]`: identity and reproducibility inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImageMeta {
    /// Image name: output file names (`NAME.raw`); letters, digits, `-`.
    pub name: String,
    /// Image version, e.g. `1.4.0`.
    pub version: String,
    /// Timestamp used for every file and file system (reproducible builds).
    /// Defaults to the package lock's archive date when a lock exists.
    pub source_date_epoch: Option<i64>,
    /// Seed (a UUID) for partition UUIDs and file system identifiers.
    pub seed: Option<String>,
    /// Host name baked into the image.
    pub hostname: Option<String>,
}

/// `[distribution]`: what the image is built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Distribution {
    /// Distribution name; only `debian` today.
    pub name: String,
    /// Release code name; for Debian only `bookworm` today.
    pub release: String,
    /// Architecture in mkosi spelling; only `x86-64` today.
    #[serde(default = "default_arch")]
    pub architecture: String,
    /// Archive mirror; default: the URI this machine's apt uses for the
    /// release (see [`mirror`]).
    pub mirror: Option<String>,
    /// Security archive mirror; default: the URI this machine's apt uses for
    /// `RELEASE-security`.
    pub security_mirror: Option<String>,
    /// Archive components.
    #[serde(default = "default_components")]
    pub components: Vec<String>,
}

fn default_arch() -> String {
    "x86-64".into()
}
fn default_components() -> Vec<String> {
    vec!["main".into()]
}

/// `[packages]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Packages {
    /// Packages to install (dependencies follow; recommends do not).
    #[serde(default)]
    pub install: Vec<String>,
    /// Extra packages for the initrd (on top of mkosi's minimal initrd set).
    #[serde(default)]
    pub initrd: Vec<String>,
    /// Also install recommended packages.
    #[serde(default)]
    pub with_recommends: bool,
    /// Keep /usr/share/doc and man pages.
    #[serde(default)]
    pub with_docs: bool,
}

/// `[files]`: extra content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Files {
    /// Directories (relative to the definition) copied over the image root.
    #[serde(default)]
    pub trees: Vec<PathBuf>,
    /// Single files, by absolute path in the image.
    #[serde(default, rename = "file")]
    pub files: Vec<ExtraFile>,
    /// Globs of paths removed from the image after installation.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// One `[[files.file]]`: either inline `content` or a `source` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ExtraFile {
    /// Absolute path inside the image.
    pub path: String,
    /// Inline content.
    pub content: Option<String>,
    /// File relative to the definition directory.
    pub source: Option<PathBuf>,
    /// Octal mode, e.g. "0644".
    #[serde(default = "default_mode")]
    pub mode: String,
}

fn default_mode() -> String {
    "0644".into()
}

/// One `[[user]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct User {
    pub name: String,
    pub uid: u32,
    /// Primary group; defaults to a group named like the user with gid = uid.
    pub group: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default = "default_shell")]
    pub shell: String,
    pub home: Option<String>,
    /// SSH public keys written to ~/.ssh/authorized_keys.
    #[serde(default)]
    pub ssh_authorized_keys: Vec<String>,
}

fn default_shell() -> String {
    "/bin/bash".into()
}

/// One `[[group]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Group {
    pub name: String,
    pub gid: u32,
}

/// `[kernel]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Kernel {
    /// Kernel command line (the verity root hash is added by the build).
    #[serde(default)]
    pub command_line: Vec<String>,
    /// Regexes of kernel modules put in the initrd; empty = mkosi's default (all).
    #[serde(default)]
    pub initrd_modules: Vec<String>,
}

/// `[services]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Services {
    /// systemd units enabled in the image.
    #[serde(default)]
    pub enable: Vec<String>,
    /// systemd units disabled in the image.
    #[serde(default)]
    pub disable: Vec<String>,
    /// Start a root login shell (no password) on the serial console ttyS0: test images only.
    #[serde(default)]
    pub serial_autologin: bool,
}

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Raw,
    Qcow2,
}

/// `[output]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Output {
    /// Which disk image files to write; `raw` is always built.
    #[serde(default = "default_formats")]
    pub formats: Vec<Format>,
}

fn default_formats() -> Vec<Format> {
    vec![Format::Raw, Format::Qcow2]
}

impl Default for Output {
    fn default() -> Self {
        Output {
            formats: default_formats(),
        }
    }
}

/// Read-only root file system type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RootFs {
    Erofs,
    Ext4,
    Squashfs,
}

impl RootFs {
    /// The name systemd-repart's `Format=` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            RootFs::Erofs => "erofs",
            RootFs::Ext4 => "ext4",
            RootFs::Squashfs => "squashfs",
        }
    }
}

/// `[partitions]`: disk layout and immutability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Partitions {
    /// File system of the read-only root.
    #[serde(default = "default_rootfs")]
    pub root_filesystem: RootFs,
    /// Protect the root with dm-verity (root hash on the UKI's command line).
    #[serde(default = "yes")]
    pub verity: bool,
    /// EFI system partition size, e.g. "256M".
    #[serde(default = "default_esp_size")]
    pub esp_size: String,
    /// Minimum size of the writable /var partition created on first boot, e.g. "1G".
    #[serde(default = "default_var_size")]
    pub var_size: String,
}

fn default_rootfs() -> RootFs {
    RootFs::Erofs
}
fn yes() -> bool {
    true
}
fn default_esp_size() -> String {
    "256M".into()
}
fn default_var_size() -> String {
    "1G".into()
}

impl Default for Partitions {
    fn default() -> Self {
        Partitions {
            root_filesystem: default_rootfs(),
            verity: true,
            esp_size: default_esp_size(),
            var_size: default_var_size(),
        }
    }
}

/// `[keel]`: Keel's own content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KeelOptions {
    /// Install keel-bootstrap (from beside the running `keel`) and its systemd units.
    #[serde(default)]
    pub agent: bool,
}

/// Parses and validates a definition; `file` is only used in error messages.
pub fn parse(text: &str, file: &Path) -> Result<ImageSpec, SpecError> {
    let de = toml::Deserializer::new(text);
    let spec: ImageSpec = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        SpecError::Invalid {
            file: file.to_path_buf(),
            key: if key == "." {
                "(top level)".into()
            } else {
                key
            },
            message: describe_toml_error(&inner, text),
        }
    })?;
    validate(&spec).map_err(|(key, message)| SpecError::Invalid {
        file: file.to_path_buf(),
        key,
        message,
    })?;
    Ok(spec)
}

fn describe_toml_error(e: &toml::de::Error, text: &str) -> String {
    let msg = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].lines().count().max(1);
            format!("{msg} (line {line})")
        }
        None => msg,
    }
}

/// Reads `DIR/image.toml`.
pub fn load(image_dir: &Path) -> Result<ImageSpec, SpecError> {
    let file = image_dir.join(FILE_NAME);
    let text = std::fs::read_to_string(&file).map_err(|source| SpecError::Read {
        file: file.clone(),
        source,
    })?;
    parse(&text, &file)
}

impl ImageSpec {
    /// Debian's name for the architecture (`amd64`), used by apt and SBOMs.
    pub fn debian_arch(&self) -> &'static str {
        match self.distribution.architecture.as_str() {
            "arm64" => "arm64",
            _ => "amd64",
        }
    }

    /// Every user-visible package list, for the lock.
    pub fn all_packages(&self) -> BTreeMap<&'static str, &[String]> {
        BTreeMap::from([
            ("image", self.packages.install.as_slice()),
            ("initrd", self.packages.initrd.as_slice()),
        ])
    }
}

#[cfg(test)]
mod tests;
