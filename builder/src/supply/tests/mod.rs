//! Tests of the supply-chain module: parsers are table-tested on real captured
//! fixtures; generated documents are checked with the official schemas and
//! validators; PCR and signature code is cross-checked with the real tools
//! (systemd-measure, osslsigncode, cosign) when they are installed.

mod dpkg;
mod keyscan;
mod once;
mod pcr;
mod sbom;
mod sign;

/// Prints a skip line and returns true when `tool` is not on PATH.
pub fn skip_without(test: &str, tool: &str) -> bool {
    let found = keel_cmd::which(tool).is_some();
    if !found {
        keel_testbed::report_skip(format_args!(
            "{test}: {tool} is not installed (./setup.sh installs it)"
        ));
    }
    !found
}
