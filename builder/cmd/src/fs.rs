//! File writes that survive a power cut, the one implementation in Keel.
//!
//! A reader (or the next boot) sees the old file or the new one, never a
//! half-written one: the content goes to a temp file in the same directory,
//! which gets its final mode, is fsynced and renamed over the target, and
//! then the directory is fsynced so the rename itself is durable. The temp
//! file is created with the final mode (narrowed by the umask), so a secret
//! (0600) is never readable by others, not even while it is being written.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `data` to `path` atomically with permission bits `mode` (set
/// exactly, whatever the umask). Missing parent directories are created.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    write_atomic_with(path, mode, |f| f.write_all(data))
}

/// [`write_atomic`] for streamed content: `write` fills the temp file
/// (e.g. `io::copy` from another file). On any error the temp file is
/// removed and `path` is untouched.
pub fn write_atomic_with<F>(path: &Path, mode: u32, write: F) -> io::Result<()>
where
    F: FnOnce(&mut File) -> io::Result<()>,
{
    let dir = parent_dir(path);
    fs::create_dir_all(dir)?;
    let tmp = temp_path(dir, path);
    let result = (|| {
        // A leftover of the same name is from an earlier boot (PIDs repeat).
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        write(&mut f)?;
        f.flush()?;
        finish(&f, &tmp, path, mode)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Puts a finished file in place atomically: `tmp` (written by someone
/// else, e.g. a program, in the same file system as `path`) gets `mode`, is
/// fsynced and renamed to `path`, and the directory is fsynced.
pub fn persist(tmp: &Path, path: &Path, mode: u32) -> io::Result<()> {
    let f = File::open(tmp)?;
    finish(&f, tmp, path, mode)
}

fn finish(f: &File, tmp: &Path, path: &Path, mode: u32) -> io::Result<()> {
    // After the content: a write by a process without CAP_FSETID would
    // clear set-user-ID bits set earlier.
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    f.sync_all()?;
    fs::rename(tmp, path)?;
    sync_dir(parent_dir(path))
}

/// Points the symlink `link` at `target` atomically: a new link beside it,
/// renamed over it, the directory fsynced. Readers see the old target or
/// the new one.
pub fn replace_symlink(link: &Path, target: &Path) -> io::Result<()> {
    let dir = parent_dir(link);
    let tmp = temp_path(dir, link);
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    if let Err(e) = fs::rename(&tmp, link) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// fsyncs a directory, so a rename or a new entry in it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// `.<name>.keel-tmp.<pid>.<n>` beside the target: unique among the live
/// writers (the PID) and among this process's threads (the counter).
fn temp_path(dir: &Path, path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.keel-tmp.{}.{n}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).expect("stat").permissions().mode() & 0o7777
    }

    fn entries(d: &Path) -> usize {
        fs::read_dir(d).expect("ls").count()
    }

    #[test]
    fn replaces_content_sets_mode_and_leaves_no_temp_file() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("a/b");
        write_atomic(&p, b"one", 0o600).expect("write");
        assert_eq!(mode_of(&p), 0o600);
        write_atomic(&p, b"two", 0o644).expect("rewrite");
        assert_eq!(fs::read(&p).expect("read"), b"two");
        assert_eq!(mode_of(&p), 0o644);
        assert_eq!(entries(&d.path().join("a")), 1);
    }

    #[test]
    fn mode_is_exact_whatever_the_umask() {
        // The umask (022 or 077 here) would narrow 0o666; set_permissions
        // gives exactly what was asked, special bits included.
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("f");
        write_atomic(&p, b"x", 0o666).expect("write");
        assert_eq!(mode_of(&p), 0o666);
        write_atomic(&p, b"x", 0o2750).expect("write");
        assert_eq!(mode_of(&p), 0o2750);
    }

    #[test]
    fn failed_writer_leaves_the_old_file() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("f");
        write_atomic(&p, b"old", 0o644).expect("write");
        let e = write_atomic_with(&p, 0o644, |f| {
            f.write_all(b"half")?;
            Err(io::Error::other("source went away"))
        })
        .expect_err("writer fails");
        assert_eq!(e.to_string(), "source went away");
        assert_eq!(fs::read(&p).expect("read"), b"old");
        assert_eq!(entries(d.path()), 1, "temp file removed");
    }

    #[test]
    fn streamed_content_and_persist() {
        let d = tempfile::tempdir().expect("tempdir");
        let src = d.path().join("src");
        fs::write(&src, b"streamed").expect("src");
        let dest = d.path().join("dest");
        write_atomic_with(&dest, 0o640, |f| {
            io::copy(&mut File::open(&src)?, f).map(drop)
        })
        .expect("copy");
        assert_eq!(fs::read(&dest).expect("read"), b"streamed");
        assert_eq!(mode_of(&dest), 0o640);

        let made = d.path().join("made-by-a-tool");
        fs::write(&made, b"tool output").expect("tool");
        persist(&made, &dest, 0o600).expect("persist");
        assert!(!made.exists());
        assert_eq!(fs::read(&dest).expect("read"), b"tool output");
        assert_eq!(mode_of(&dest), 0o600);
    }

    #[test]
    fn symlink_is_replaced_atomically() {
        let d = tempfile::tempdir().expect("tempdir");
        let link = d.path().join("current");
        replace_symlink(&link, Path::new("releases/a")).expect("first");
        replace_symlink(&link, Path::new("releases/b")).expect("switch");
        assert_eq!(
            fs::read_link(&link).expect("readlink"),
            Path::new("releases/b")
        );
        assert_eq!(entries(d.path()), 1);
    }

    #[test]
    fn relative_path_without_directory_writes_here() {
        assert_eq!(parent_dir(Path::new("file")), Path::new("."));
        assert_eq!(parent_dir(Path::new("/file")), Path::new("/"));
    }
}
