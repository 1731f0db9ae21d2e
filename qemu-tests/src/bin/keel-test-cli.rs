//! The `keel` command line for VM tests: the same entry point as the real
//! `keel` binary, built in this package so tests can run it as a process
//! (to check Ctrl-C handling and JSON output end to end).
fn main() -> std::process::ExitCode {
    keel_builder::cli::main()
}
