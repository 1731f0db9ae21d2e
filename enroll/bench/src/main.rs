//! keel-enroll-bench: thin entry point; the load generator lives in the library.
use std::process::ExitCode;

use clap::Parser;
use keel_enroll_bench::BenchArgs;

fn main() -> ExitCode {
    keel_cmd::logging::init(&keel_cmd::logging::Options {
        targets: true,
        ..Default::default()
    });
    let args = BenchArgs::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(bench(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs, prints the figures, and fails when any enrollment failed.
async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let report = keel_enroll_bench::run(args.clone()).await?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        println!("{report}");
    }
    anyhow::ensure!(
        report.failed == 0,
        "{} of {} enrollments failed",
        report.failed,
        args.nodes
    );
    Ok(())
}
