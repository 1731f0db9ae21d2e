//! File writes that survive a power cut (temp file in the same directory,
//! fsync, rename, fsync the directory) and paths inside a target root.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Writes `data` to `path` atomically with permission bits `mode`.
/// The parent directory is created if missing.
pub fn atomic_write(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.keel-tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have narrowed `mode`; set it exactly.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// `abs` (an absolute path as the node sees it) under `root`. `..` and
/// other components that could leave the root are refused.
pub fn in_root(root: &Path, abs: &str) -> Option<PathBuf> {
    let p = Path::new(abs);
    if !p.is_absolute() {
        return None;
    }
    let mut out = root.to_path_buf();
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_root_refuses_escapes() {
        let r = Path::new("/r");
        assert_eq!(in_root(r, "/etc/x"), Some(PathBuf::from("/r/etc/x")));
        assert_eq!(in_root(r, "/etc/../../x"), None);
        assert_eq!(in_root(r, "etc/x"), None);
    }

    #[test]
    fn atomic_write_sets_mode_and_content() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("a/b");
        atomic_write(&p, b"one", 0o600).expect("write");
        atomic_write(&p, b"two", 0o600).expect("rewrite");
        assert_eq!(fs::read(&p).expect("read"), b"two");
        let mode = fs::metadata(&p).expect("stat").permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            fs::read_dir(p.parent().expect("dir")).expect("ls").count(),
            1
        );
    }
}
