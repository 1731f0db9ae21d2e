//! The `keel` command line for VM tests: the same entry point as the real
//! `keel` binary, built in this package so tests can run it as a process
//! (to check Ctrl-C handling and JSON output end to end).
use std::process::ExitCode;

use clap::Parser;
use keel_builder::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    keel_cmd::logging::init(&keel_cmd::logging::Options {
        verbose: cli.verbose,
        ..Default::default()
    });
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
