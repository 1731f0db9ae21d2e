//! `keel`: parse the command line, set up logging, run, report errors.
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
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
