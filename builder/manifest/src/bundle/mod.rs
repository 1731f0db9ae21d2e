//! The canonical GitOps bundle manifest: the exact bytes an operator signs
//! (`keel bundle sign`) and a node checks its checkout against (keel-bootstrap).
//! One implementation for both sides, so they cannot drift; format v2 is
//! specified in docs/gitops-bundles.md.
//!
//! ```text
//! keel-bundle-manifest v2
//! store <store id>
//! ref <git ref>
//! serial <decimal, at least 1>
//! <sha256 hex> <mode> <path>
//! ...
//! ```
//!
//! The three header lines ([`Header`]) are inside the signed bytes: a node
//! refuses a bundle signed for another store or another ref, and one whose
//! serial is not above the serial it applied last (rollback, replay).
//!
//! Then one line per file or symlink in the bundle tree, sorted by path
//! (bytewise), paths relative with `/`, each line ending in `\n`. `mode` is
//! git's: `100644` (file), `100755` (executable), `120000` (symlink; the hash
//! is over the link target). Directories are implied. `.keel/manifest` and
//! `.keel/signature` themselves and `.git` are not listed; nothing else is
//! skipped, so an added, removed, changed or re-moded file makes the tree
//! disagree with the signed manifest.
//!
//! Format v1 (no header lines) is refused by [`parse`]: it cannot say which
//! store, ref and serial it was signed for.

mod header;

pub use header::{parse, Header, SignedManifest};

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};

/// Why a manifest could not be built or read.
#[derive(Debug, thiserror::Error)]
pub enum BundleManifestError {
    /// Reading the tree failed.
    #[error("reading bundle {path}: {source}")]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A path the format cannot carry (not UTF-8, a newline) or an entry that
    /// is not a file, symlink or directory.
    #[error("unusable path in bundle: {0}")]
    BadPath(String),
    /// The manifest text is not a well-formed v2 manifest.
    #[error("bundle manifest malformed: {0}")]
    Malformed(String),
    /// A header value (store, ref, serial) the format cannot carry.
    #[error("bundle header: {0}")]
    BadHeader(String),
}

/// First line of a v2 manifest.
pub const HEADER: &str = "keel-bundle-manifest v2";
/// First line of the old v1 format (no store, ref, serial), refused.
pub const HEADER_V1: &str = "keel-bundle-manifest v1";
/// Where the manifest lives inside a bundle.
pub const MANIFEST_PATH: &str = ".keel/manifest";
/// Where the signature lives inside a bundle.
pub const SIGNATURE_PATH: &str = ".keel/signature";

/// One manifest entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub sha256: String,
    pub mode: &'static str,
    pub path: String,
}

/// Walks `root` and returns its entries, sorted by path.
pub fn entries(root: &Path) -> Result<Vec<Entry>, BundleManifestError> {
    let mut entries = Vec::new();
    walk(root, root, &mut entries)?;
    entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    Ok(entries)
}

/// Walks `root` and renders its canonical manifest text with `header`.
pub fn build(root: &Path, header: &Header) -> Result<String, BundleManifestError> {
    Ok(render(header, &entries(root)?))
}

/// Renders the header and entries (already sorted) as manifest text.
pub fn render(header: &Header, entries: &[Entry]) -> String {
    let mut out = format!(
        "{HEADER}\nstore {}\nref {}\nserial {}\n",
        header.store, header.reference, header.serial
    );
    for e in entries {
        let _ = writeln!(out, "{} {} {}", e.sha256, e.mode, e.path);
    }
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<Entry>) -> Result<(), BundleManifestError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| BundleManifestError::Io { path: p, source }
    };
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .ok()
            .and_then(|r| r.to_str())
            .ok_or_else(|| BundleManifestError::BadPath(path.display().to_string()))?
            .to_string();
        if rel.contains('\n') {
            return Err(BundleManifestError::BadPath(rel));
        }
        if rel == ".git" || rel == MANIFEST_PATH || rel == SIGNATURE_PATH {
            continue;
        }
        let meta = fs::symlink_metadata(&path).map_err(io(&path))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            walk(root, &path, out)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(io(&path))?;
            let bytes = target.as_os_str().as_encoded_bytes();
            out.push(Entry {
                sha256: hex::encode(Sha256::digest(bytes)),
                mode: "120000",
                path: rel,
            });
        } else if ft.is_file() {
            let data = fs::read(&path).map_err(io(&path))?;
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                "100755"
            } else {
                "100644"
            };
            out.push(Entry {
                sha256: hex::encode(Sha256::digest(&data)),
                mode,
                path: rel,
            });
        } else {
            return Err(BundleManifestError::BadPath(format!(
                "{rel} is not a file, symlink or directory"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
