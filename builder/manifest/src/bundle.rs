//! The canonical GitOps bundle manifest: the exact bytes an operator signs
//! (`keel bundle sign`) and a node checks its checkout against (keel-bootstrap).
//! One implementation for both sides, so they cannot drift; format v1 is
//! specified in docs/gitops-bundles.md.
//!
//! ```text
//! keel-bundle-manifest v1
//! <sha256 hex> <mode> <path>
//! ...
//! ```
//!
//! One line per file or symlink in the bundle tree, sorted by path (bytewise),
//! paths relative with `/`, each line ending in `\n`. `mode` is git's:
//! `100644` (file), `100755` (executable), `120000` (symlink; the hash is over
//! the link target). Directories are implied. `.keel/manifest` and
//! `.keel/signature` themselves and `.git` are not listed; nothing else is skipped, so an
//! added, removed, changed or re-moded file makes the tree disagree with the
//! signed manifest.

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
    /// The manifest text is not a well-formed v1 manifest.
    #[error("bundle manifest malformed: {0}")]
    Malformed(String),
}

/// Header line of a v1 manifest.
pub const HEADER: &str = "keel-bundle-manifest v1";
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

/// Walks `root` and renders its canonical manifest text.
pub fn build(root: &Path) -> Result<String, BundleManifestError> {
    let mut entries = Vec::new();
    walk(root, root, &mut entries)?;
    entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    Ok(render(&entries))
}

/// Renders entries (already sorted) as manifest text.
pub fn render(entries: &[Entry]) -> String {
    let mut out = format!("{HEADER}\n");
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

/// Checks that `text` is a well-formed v1 manifest (header, sorted, unique,
/// valid fields). The node compares bytes, so this is for clear errors.
pub fn parse(text: &str) -> Result<Vec<Entry>, BundleManifestError> {
    let bad =
        |line: usize, why: &str| BundleManifestError::Malformed(format!("line {line}: {why}"));
    let mut lines = text.split_inclusive('\n');
    if lines.next() != Some(&format!("{HEADER}\n")) {
        return Err(bad(1, "missing `keel-bundle-manifest v1` header"));
    }
    let mut entries: Vec<Entry> = Vec::new();
    for (i, line) in lines.enumerate() {
        let n = i + 2;
        let line = line
            .strip_suffix('\n')
            .ok_or_else(|| bad(n, "no final newline"))?;
        let mut f = line.splitn(3, ' ');
        let (Some(hash), Some(mode), Some(path)) = (f.next(), f.next(), f.next()) else {
            return Err(bad(n, "expected `<sha256> <mode> <path>`"));
        };
        if hash.len() != 64
            || !hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad(n, "hash is not 64 lowercase hex digits"));
        }
        let mode = match mode {
            "100644" => "100644",
            "100755" => "100755",
            "120000" => "120000",
            _ => return Err(bad(n, "mode is not 100644, 100755 or 120000")),
        };
        if path.is_empty()
            || path.starts_with('/')
            || path
                .split('/')
                .any(|c| c.is_empty() || c == ".." || c == ".")
        {
            return Err(bad(n, "path is not a clean relative path"));
        }
        if let Some(prev) = entries.last() {
            if prev.path.as_bytes() >= path.as_bytes() {
                return Err(bad(n, "paths are not sorted and unique"));
            }
        }
        entries.push(Entry {
            sha256: hash.to_string(),
            mode,
            path: path.to_string(),
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_is_canonical_and_skips_signature_files() {
        let d = tempfile::tempdir().expect("tempdir");
        let r = d.path();
        fs::create_dir_all(r.join("b/c")).expect("mkdir");
        fs::create_dir_all(r.join(".keel")).expect("mkdir");
        fs::create_dir_all(r.join(".git")).expect("mkdir");
        fs::write(r.join(".git/HEAD"), "ref").expect("write");
        fs::write(r.join("b/c/z.txt"), "z").expect("write");
        fs::write(r.join("a.sh"), "#!/bin/sh\n").expect("write");
        fs::set_permissions(r.join("a.sh"), fs::Permissions::from_mode(0o755)).expect("chmod");
        std::os::unix::fs::symlink("a.sh", r.join("link")).expect("symlink");
        fs::write(r.join(MANIFEST_PATH), "x").expect("write");
        fs::write(r.join(SIGNATURE_PATH), "y").expect("write");
        let m = build(r).expect("manifest");
        // Pinned bytes: a change here changes every signed bundle.
        let golden = "keel-bundle-manifest v1\n\
a8076d3d28d21e02012b20eaf7dbf75409a6277134439025f282e368e3305abf 100755 a.sh\n\
594e519ae499312b29433b7dd8a97ff068defcba9755b6d5d00e84c524d67b06 100644 b/c/z.txt\n\
36477ea265eafe923930d4967d718203c440cc57c29ff57ef0a7c5e76fcaf307 120000 link\n";
        assert_eq!(m, golden);
        let sha = |b: &[u8]| hex::encode(Sha256::digest(b));
        let want = format!(
            "{HEADER}\n{} 100755 a.sh\n{} 100644 b/c/z.txt\n{} 120000 link\n",
            sha(b"#!/bin/sh\n"),
            sha(b"z"),
            sha(b"a.sh")
        );
        assert_eq!(m, want);
        assert_eq!(parse(&m).expect("parses").len(), 3);
    }

    #[test]
    fn parse_table() {
        let h = "0".repeat(64);
        let cases = [
            (format!("{HEADER}\n"), Ok(0)),
            (format!("{HEADER}\n{h} 100644 a b\n"), Ok(1)),
            ("nope\n".to_string(), Err("header")),
            (format!("{HEADER}\n{h} 100644 a"), Err("final newline")),
            (format!("{HEADER}\n{h} 100600 a\n"), Err("mode")),
            (format!("{HEADER}\nabc 100644 a\n"), Err("hash")),
            (
                format!("{HEADER}\n{h} 100644 ../a\n"),
                Err("clean relative"),
            ),
            (
                format!("{HEADER}\n{h} 100644 b\n{h} 100644 a\n"),
                Err("sorted"),
            ),
            (
                format!("{HEADER}\n{h} 100644 a\n{h} 100644 a\n"),
                Err("sorted"),
            ),
        ];
        for (text, want) in cases {
            match (parse(&text), want) {
                (Ok(e), Ok(n)) => assert_eq!(e.len(), n, "{text:?}"),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{e} vs {w}"),
                (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
            }
        }
    }
}
