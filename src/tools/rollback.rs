//! rollback: restore the last known good version and record the incident.
use crate::cli::{CommonArgs, run};
use crate::config::Label;
use crate::deploy::{RollbackRequest, rollback};

/// Restore the last known good version (exit 0 with nothing to do when it already runs).
#[derive(clap::Parser)]
#[command(
    name = "rollback",
    version,
    after_help = crate::error::exit_codes_help("rollback")
)]
pub struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Print the SLA budget report (incidents of the period, downtime, what is left) and exit
    #[arg(long, env = "SAFEDEPLOY_BUDGET")]
    budget: bool,
    /// Environment to restore [default: production, or the alert's]
    #[arg(long, env = "SAFEDEPLOY_ENV", value_name = "NAME")]
    env: Option<String>,
    /// Version to restore [default: the environment's last known good]
    #[arg(long, env = "SAFEDEPLOY_RESTORE_LABEL", value_name = "LABEL", value_parser = Label::parse)]
    to: Option<Label>,
    /// Why, for the ledger and the incident
    #[arg(long, env = "SAFEDEPLOY_REASON", value_name = "TEXT")]
    reason: Option<String>,
    /// Restore a --to version not known good in the environment (needs --reason)
    #[arg(long, env = "SAFEDEPLOY_FORCE")]
    force: bool,
    /// A Datadog webhook payload: roll back the alert's environment if it is production
    #[arg(long, env = "SAFEDEPLOY_DATADOG_PAYLOAD", value_name = "FILE|-")]
    datadog_payload: Option<std::path::PathBuf>,
    /// Tell Slack (SLACK_WEBHOOK_URL) and/or Datadog (DD_API_KEY) the outcome
    #[arg(long, env = "SAFEDEPLOY_NOTIFY")]
    notify: bool,
}

pub fn main() -> std::process::ExitCode {
    let a: Args = crate::cli::parse("rollback");
    if a.budget {
        return run("rollback", &a.common, crate::sla::report);
    }
    run("rollback", &a.common, |ctx| {
        if a.notify {
            crate::notify::ready(ctx)?;
        }
        let result = rollback(
            ctx,
            &RollbackRequest {
                env: a.env.as_deref(),
                to: a.to.as_ref(),
                reason: a.reason.as_deref(),
                datadog_payload: a.datadog_payload.as_deref(),
                force: a.force,
            },
        );
        if a.notify && !ctx.dry_run {
            let env = result
                .as_ref()
                .ok()
                .and_then(|o| o.summary["env"].as_str().map(str::to_string))
                .or(a.env.clone())
                .unwrap_or_else(|| "production".into());
            crate::notify::outcome(ctx, "rollback", &env, &result);
        }
        result
    })
}
