//! The canonical bundle manifest an operator signs (format v1, specified in
//! docs/gitops-bundles.md; the node's checker is keel-bootstrap's
//! `gitops::manifest`, and both sides' tests pin the same example text).
//!
//! One line per file or symlink, `<sha256 hex> <mode> <path>`, sorted by
//! path bytewise, after the header `keel-bundle-manifest v1`. Modes are git's
//! (100644, 100755, 120000; a symlink's hash is over its target).
//! `.git`, `.keel/manifest` and `.keel/signature` are not listed.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

/// Header line of a v1 manifest.
pub const HEADER: &str = "keel-bundle-manifest v1";
/// Where the manifest lives inside a bundle.
pub const MANIFEST_PATH: &str = ".keel/manifest";
/// Where the signature lives inside a bundle.
pub const SIGNATURE_PATH: &str = ".keel/signature";

/// Walks `root` and renders its canonical manifest.
pub fn build(root: &Path) -> anyhow::Result<String> {
    let mut lines: Vec<(String, String)> = Vec::new();
    walk(root, root, &mut lines)?;
    lines.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut out = format!("{HEADER}\n");
    for (path, rest) in lines {
        let _ = writeln!(out, "{rest} {path}");
    }
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let rel = path
            .strip_prefix(root)?
            .to_str()
            .with_context(|| format!("{} is not UTF-8", path.display()))?
            .to_string();
        if rel.contains('\n') {
            bail!("path {rel:?} contains a newline");
        }
        if rel == ".git" || rel == MANIFEST_PATH || rel == SIGNATURE_PATH {
            continue;
        }
        let meta = fs::symlink_metadata(&path)?;
        let ft = meta.file_type();
        if ft.is_dir() {
            walk(root, &path, out)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&path)?;
            let h = hex::encode(Sha256::digest(target.as_os_str().as_encoded_bytes()));
            out.push((rel, format!("{h} 120000")));
        } else if ft.is_file() {
            let h = hex::encode(Sha256::digest(fs::read(&path)?));
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                "100755"
            } else {
                "100644"
            };
            out.push((rel, format!("{h} {mode}")));
        } else {
            bail!("{rel} is not a file, symlink or directory");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The canonical text for the example tree, pinned: keel-bootstrap's
    /// `gitops::manifest` test pins the same bytes, so signer and node agree.
    const GOLDEN: &str = "keel-bundle-manifest v1\n\
a8076d3d28d21e02012b20eaf7dbf75409a6277134439025f282e368e3305abf 100755 a.sh\n\
594e519ae499312b29433b7dd8a97ff068defcba9755b6d5d00e84c524d67b06 100644 b/c/z.txt\n\
36477ea265eafe923930d4967d718203c440cc57c29ff57ef0a7c5e76fcaf307 120000 link\n";

    /// The same tree as keel-bootstrap's manifest test.
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
        assert_eq!(m, GOLDEN);
    }
}
