//! gate-tests: run the app's tests; pass only on a fresh, green JUnit report.
use clap::Parser;
use safedeploy::cli::{CommonArgs, run};

/// Run the test command and require a fresh JUnit report with executed, passing tests.
#[derive(Parser)]
#[command(
    name = "gate-tests",
    version,
    after_help = "Exit codes: 0 passed, 1 tests failed, 2 bad config or report, 3 could not run, 130 interrupted."
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// The test command, replacing gate.command from the config
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    run("gate-tests", &args.common, |ctx| safedeploy::gate::gate_tests(ctx, &args.command))
}
