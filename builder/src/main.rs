//! `keel`: the program is [`keel_builder::cli::main`] (parse, log, run,
//! exit with the code [`keel_builder::exit`] documents).
fn main() -> std::process::ExitCode {
    keel_builder::cli::main()
}
