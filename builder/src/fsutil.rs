//! Small file helpers: atomic writes (survive a power cut) and hashing.
use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Writes `data` to `path` via a temp file in the same directory, `sync_all`, rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(data)?;
    // NamedTempFile creates 0600; these are ordinary readable files.
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

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
    fn atomic_write_replaces_and_tree_hash_sees_changes() {
        let d = tempfile::tempdir().expect("tmp");
        let f = d.path().join("a");
        write_atomic(&f, b"one").expect("write");
        write_atomic(&f, b"two").expect("rewrite");
        assert_eq!(std::fs::read(&f).expect("read"), b"two");
        let h1 = sha256_tree(d.path()).expect("hash");
        std::fs::write(&f, b"three").expect("write");
        assert_ne!(h1, sha256_tree(d.path()).expect("hash"));
        assert_eq!(
            sha256(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
