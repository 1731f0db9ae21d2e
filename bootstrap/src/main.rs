//! keel-bootstrap: the first-boot agent of a Keel store node. Thin: logging,
//! CLI, call the library, print the error chain, pick the exit code.

use clap::Parser;
use keel_bootstrap::{cli, commands};

fn main() {
    #[cfg(feature = "failpoints")]
    let _scenario = fail::FailScenario::setup();
    // Under systemd the journal, else stderr.
    keel_cmd::logging::init(&keel_cmd::logging::Options {
        journald: Some("keel-bootstrap"),
        ..Default::default()
    });
    let cli = cli::Cli::parse();
    let code = match commands::main(cli) {
        Ok(()) => 0,
        Err(e) => {
            let code = commands::exit_code(&e);
            eprintln!("keel-bootstrap: error: {e:#}");
            code
        }
    };
    std::process::exit(code);
}
