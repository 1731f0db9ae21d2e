//! keel-enroll: thin entry point; everything lives in the library.
use std::process::ExitCode;

use clap::Parser;
use keel_enroll::cli::Cli;

fn main() -> ExitCode {
    keel_cmd::logging::init(&keel_cmd::logging::Options {
        targets: true,
        ..Default::default()
    });
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(keel_enroll::cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
