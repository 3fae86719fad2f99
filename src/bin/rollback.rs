//! rollback: restore the last known good version and record the incident.
use clap::Parser;
use safedeploy::cli::{CommonArgs, run};
use safedeploy::deploy::{RollbackRequest, rollback};

/// Restore the last known good version (exit 0 with nothing to do when it already runs).
#[derive(Parser)]
#[command(
    name = "rollback",
    version,
    after_help = "Exit codes: 0 restored or nothing to do, 2 bad input, 3 could not act (no known good version, lock held), 130 interrupted."
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[arg(long, env = "SAFEDEPLOY_ENV", default_value = "production", value_name = "NAME")]
    env: String,
    /// Version to restore [default: the environment's last known good]
    #[arg(long, env = "SAFEDEPLOY_TO", value_name = "LABEL")]
    to: Option<String>,
    /// Why, for the ledger and the incident
    #[arg(long, env = "SAFEDEPLOY_REASON", value_name = "TEXT")]
    reason: Option<String>,
}

fn main() -> std::process::ExitCode {
    let a = Args::parse();
    run("rollback", &a.common, |ctx| {
        rollback(ctx, &RollbackRequest { env: &a.env, to: a.to.as_deref(), reason: a.reason.as_deref() })
    })
}
