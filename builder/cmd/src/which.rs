//! Finding a program the way `execvp` would, without running a shell.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The executable `program` would run: a name is looked up in the
/// directories of `PATH`, in order; a path (anything with a `/`) is taken
/// as it is. `None` when there is no such executable file.
pub fn which(program: impl AsRef<OsStr>) -> Option<PathBuf> {
    let program = program.as_ref();
    if program.is_empty() {
        return None;
    }
    if program.as_bytes().contains(&b'/') {
        let p = Path::new(program);
        return is_executable(p).then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|c| is_executable(c))
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_on_path_and_by_path() {
        let sh = which("sh").expect("sh is on PATH");
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{}", sh.display());
        assert_eq!(which(&sh), Some(sh.clone()));
        assert_eq!(which("keel-no-such-program-here"), None);
        assert_eq!(which(""), None);
        assert_eq!(which("/nonexistent/sh"), None);
    }

    #[test]
    fn directories_and_plain_files_are_not_programs() {
        let d = tempfile::tempdir().expect("tempdir");
        let data = d.path().join("data");
        std::fs::write(&data, "not a program").expect("write");
        assert_eq!(which(&data), None, "not executable");
        assert_eq!(which(d.path()), None, "a directory");
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(which(&data), Some(data));
    }
}
