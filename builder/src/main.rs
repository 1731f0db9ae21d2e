//! `keel`: parse the command line, set up logging, run, report errors, and
//! exit with the code [`keel_builder::exit`] documents.
use std::process::ExitCode;

use clap::Parser;
use keel_builder::cli::{self, Cli};

fn main() -> ExitCode {
    // A usage error exits here with clap's code 2 (exit::Code::Usage).
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
            ExitCode::from(keel_builder::exit::code_of(&err).value())
        }
    }
}
