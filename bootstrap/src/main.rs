//! keel-bootstrap: the first-boot agent of a Keel store node. Thin: logging,
//! CLI, call the library, print the error chain, pick the exit code.

use clap::Parser;
use keel_bootstrap::{cli, run};

fn main() {
    #[cfg(feature = "failpoints")]
    let _scenario = fail::FailScenario::setup();
    // Under systemd the journal, else stderr.
    keel_cmd::logging::init(&keel_cmd::logging::Options {
        journald: Some("keel-bootstrap"),
        ..Default::default()
    });
    let cli = cli::Cli::parse();
    let code = match run::main(cli) {
        Ok(()) => 0,
        Err(e) => {
            let code = run::exit_code(&e);
            eprintln!("keel-bootstrap: error: {e:#}");
            code
        }
    };
    std::process::exit(code);
}
