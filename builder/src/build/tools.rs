//! The build host's tools: cheap identities (path, size, modification
//! time) that are build inputs, so a changed mkosi or systemd rebuilds; and
//! their versions, asked from each tool, for the build record.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use keel_cmd::CommandRunExt;

/// Files whose change means the tools changed: the programs on PATH and
/// mkosi's Python package. Identified by path, size and modification time
/// (cheap: starting mkosi just to ask its version takes seconds).
// veritysetup re-hashes the verity partition after mkosi (see verity.rs).
const TOOL_FILES: &[&str] = &[
    "mkosi",
    "systemd-repart",
    "veritysetup",
    "qemu-img",
    "apt-get",
];
const MKOSI_PACKAGE: &str = "/usr/lib/python3/dist-packages/mkosi/__init__.py";

/// The identities of keel and of each tool, by name.
pub(super) fn tool_identities() -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    v.insert("keel".to_string(), env!("CARGO_PKG_VERSION").to_string());
    let mut files: Vec<(String, PathBuf)> = TOOL_FILES
        .iter()
        .filter_map(|t| keel_cmd::which(t).map(|p| (t.to_string(), p)))
        .collect();
    files.push(("mkosi-python".into(), PathBuf::from(MKOSI_PACKAGE)));
    for (name, p) in files {
        let id = std::fs::metadata(&p)
            .map(|m| {
                let mtime = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
                format!(
                    "{} {} {}",
                    p.display(),
                    m.len(),
                    mtime.map(|d| d.as_secs()).unwrap_or(0)
                )
            })
            .unwrap_or_else(|_| "missing".into());
        v.insert(name, id);
    }
    v
}

/// Versions of the tools, for the build record (runs each tool).
pub fn tool_versions() -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    v.insert("keel".to_string(), env!("CARGO_PKG_VERSION").to_string());
    for (name, args) in [
        ("mkosi", &["--version"][..]),
        ("systemd-repart", &["--version"][..]),
        ("veritysetup", &["--version"][..]),
        ("qemu-img", &["--version"][..]),
    ] {
        let out = Command::new(name)
            .args(args)
            .run_get_string()
            .unwrap_or_else(|e| format!("unavailable: {e}"));
        v.insert(
            name.to_string(),
            out.lines().next().unwrap_or_default().trim().to_string(),
        );
    }
    v
}
