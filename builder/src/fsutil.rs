//! Hashing files and trees. (Atomic writes: `keel_cmd::fs`.)
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// sha256 of bytes, hex.
pub fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// sha256 over a directory tree: sorted relative paths, modes, symlink
/// targets and file contents. Used for the definition's extra trees.
pub fn sha256_tree(root: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut entries = Vec::new();
    collect(root, root, &mut entries)?;
    entries.sort();
    let mut h = Sha256::new();
    for rel in entries {
        let p = root.join(&rel);
        let md = std::fs::symlink_metadata(&p)?;
        h.update(rel.as_bytes());
        h.update(format!(" {:o}\n", md.permissions().mode()).as_bytes());
        if md.file_type().is_symlink() {
            h.update(std::fs::read_link(&p)?.to_string_lossy().as_bytes());
        } else if md.is_file() {
            h.update(sha256_file(&p)?.as_bytes());
        }
    }
    Ok(hex::encode(h.finalize()))
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let rel = p
            .strip_prefix(root)
            .unwrap_or(&p)
            .to_string_lossy()
            .into_owned();
        let md = std::fs::symlink_metadata(&p)?;
        out.push(rel);
        if md.is_dir() {
            collect(root, &p, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_hash_sees_changes() {
        let d = tempfile::tempdir().expect("tmp");
        let f = d.path().join("a");
        std::fs::write(&f, b"two").expect("write");
        let h1 = sha256_tree(d.path()).expect("hash");
        std::fs::write(&f, b"three").expect("write");
        assert_ne!(h1, sha256_tree(d.path()).expect("hash"));
        assert_eq!(
            sha256(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
