//! Software bills of materials for an image: SPDX 2.3 and CycloneDX 1.5
//! JSON documents built from the image's own package database ([`dpkg`])
//! plus the Keel binaries placed into the image, and the private-key scan
//! ([`keyscan`]) that refuses to seal a tree holding key material.
//!
//! The build calls [`finalize_tree`] on the image root after packages are
//! installed and before the image is sealed; the hidden `keel sbom` ([`cli`])
//! does the same for any Debian tree.
//!
//! The documents ([`spdx()`], [`cyclonedx()`]) are written with serde from
//! the types below rather than through an SBOM crate: the output must be
//! byte-for-byte reproducible (timestamps from SOURCE_DATE_EPOCH, serial
//! number and namespace derived from the content), and both are validated
//! against the official JSON schemas (CycloneDX) and the official SPDX
//! validator in the tests.

pub mod cli;
mod cyclonedx;
pub mod dpkg;
pub mod keyscan;
mod spdx;
mod tree;

pub use cyclonedx::cyclonedx;
pub use spdx::spdx;
pub use tree::{
    distro_qualifier, finalize_tree, finalize_tree_at, inventory, keel_binaries, TreeContext,
    APT_LISTS_ENV,
};

use sha2::{Digest, Sha256};

use dpkg::Package;

/// File names of the SBOMs, inside the image under [`SBOM_DIR`] and beside it.
pub const SPDX_FILE: &str = "sbom.spdx.json";
/// See [`SPDX_FILE`].
pub const CYCLONEDX_FILE: &str = "sbom.cdx.json";
/// Where the SBOMs live inside the image.
pub const SBOM_DIR: &str = "usr/share/keel/sbom";

/// A Keel binary found in the image tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binary {
    /// Path inside the image, absolute (`/usr/bin/keel-bootstrap`).
    pub path: String,
    pub sha256: String,
}

/// Everything an SBOM describes.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub image_name: String,
    pub image_version: String,
    /// `debian-12` style distro qualifier for purls.
    pub distro: String,
    pub packages: Vec<Package>,
    pub binaries: Vec<Binary>,
    /// Document creation time (RFC 3339, UTC, seconds).
    pub created: String,
    pub tool_version: String,
}

/// `pkg:deb/debian/NAME@VERSION?arch=ARCH&distro=DISTRO` (purl-spec deb type).
pub fn purl(p: &Package, distro: &str) -> String {
    let enc = |s: &str| {
        s.chars()
            .map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' | '~' => c.to_string(),
                _ => format!("%{:02X}", c as u32),
            })
            .collect::<String>()
    };
    format!(
        "pkg:deb/debian/{}@{}?arch={}&distro={}",
        enc(&p.name),
        enc(&p.version),
        enc(&p.architecture),
        enc(distro)
    )
}

/// Formats a UNIX time as RFC 3339 UTC (`1970-01-01T00:00:00Z`).
pub fn rfc3339(epoch: i64) -> String {
    let days = epoch.div_euclid(86400);
    let secs = epoch.rem_euclid(86400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Splits `Name <mail>` into its parts.
/// `s` with every character SPDX does not allow in an identifier
/// (letters, digits, `.`, `-`) replaced by `-`: for `SPDXRef-...` and
/// `LicenseRef-...`.
fn spdx_idstring(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn split_maintainer(m: &str) -> (String, Option<String>) {
    match m.split_once('<') {
        Some((n, rest)) => (
            n.trim().to_string(),
            Some(rest.trim_end_matches('>').trim().to_string()),
        ),
        None => (m.trim().to_string(), None),
    }
}

fn content_digest(inv: &Inventory) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(inv.image_name.as_bytes());
    h.update([0]);
    h.update(inv.image_version.as_bytes());
    for p in &inv.packages {
        h.update(format!("\0{}\0{}\0{}", p.name, p.version, p.architecture));
    }
    for b in &inv.binaries {
        h.update(format!("\0{}\0{}", b.path, b.sha256));
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests;
