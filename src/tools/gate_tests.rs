//! gate-tests: run the app's tests; pass only on a fresh, green JUnit report.
use crate::cli::{CommonArgs, run};

/// Run the test command and require a fresh JUnit report with executed, passing tests.
#[derive(clap::Parser)]
#[command(
    name = "gate-tests",
    version,
    after_help = crate::error::exit_codes_help("gate-tests")
)]
pub struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Compare changes with this commit [default: CHANGE_TARGET, GIT_PREVIOUS_SUCCESSFUL_COMMIT,
    /// production's last known good, the merge base with the default branch]
    #[arg(long, env = "SAFEDEPLOY_BASE", value_name = "REV")]
    base: Option<String>,
    /// Also write the gate's own checks as a JUnit report
    #[arg(long, env = "SAFEDEPLOY_JUNIT_OUT", value_name = "PATH")]
    junit_out: Option<std::path::PathBuf>,
    /// Waive the change policy and diff coverage, with a reason (recorded in the ledger)
    #[arg(long, env = "SAFEDEPLOY_ALLOW_UNTESTED", value_name = "REASON")]
    allow_untested: Option<String>,
    /// Let a contract migration (a dropped or renamed column, NOT NULL without a default, a type
    /// change) pass the gate, with a reason (recorded in the ledger)
    #[arg(long, env = "SAFEDEPLOY_ALLOW_CONTRACT", value_name = "REASON")]
    allow_contract: Option<String>,
    /// The test command, replacing gate.command from the config
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

pub fn main() -> std::process::ExitCode {
    let args: Args = crate::cli::parse("gate-tests");
    run("gate-tests", &args.common, |ctx| {
        crate::gate::gate_tests(
            ctx,
            &crate::gate::GateRequest {
                command: &args.command,
                base: args.base.as_deref(),
                junit_out: args.junit_out.as_deref(),
                allow_untested: args.allow_untested.as_deref(),
                allow_contract: args.allow_contract.as_deref(),
            },
        )
    })
}
