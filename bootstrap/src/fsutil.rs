//! Paths inside a target root. (Atomic writes: `keel_cmd::fs`.)

use std::path::{Component, Path, PathBuf};

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
}
