//! What several of the builder's host tests share: skipping when a real
//! tool is missing, and a small signed release made without mkosi
//! ([`release`]). Each test binary uses a part of it.
#![allow(dead_code)]

pub mod release;

/// Prints a skip line and returns true when `tool` is not on PATH.
pub fn skip_without(test: &str, tool: &str) -> bool {
    // A path names a file the test reads (the EFI stub), not a program.
    let found = if tool.contains('/') {
        std::path::Path::new(tool).is_file()
    } else {
        keel_cmd::which(tool).is_some()
    };
    if !found {
        keel_testbed::report_skip(format_args!(
            "{test}: {tool} is not installed (./setup.sh installs it)"
        ));
    }
    !found
}
