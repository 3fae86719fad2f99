//! promote: deploy to production the very bundle that passed in staging.
use crate::cli::{CommonArgs, run};
use crate::config::Dur;
use crate::config::Label;
use crate::deploy::{CanaryRequest, PromoteRequest, promote};

/// A canary's bake when `--bake` is not given: Elastic Beanstalk's own default evaluation time.
const DEFAULT_BAKE: std::time::Duration = std::time::Duration::from_secs(300);

/// Deploy a version verified in --from to --to; put the previous one back if it is unhealthy.
#[derive(clap::Parser)]
#[command(
    name = "promote",
    disable_version_flag = true,
    after_help = crate::error::exit_codes_help("promote")
)]
pub struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Print the SLA budget report (incidents of the period, downtime, what is left) and exit
    #[arg(long, env = "SAFEDEPLOY_BUDGET")]
    budget: bool,
    /// Version to promote [default: the last known good of --from]
    #[arg(long, env = "SAFEDEPLOY_VERSION_LABEL", value_name = "LABEL", value_parser = Label::parse)]
    version: Option<Label>,
    #[arg(long, env = "SAFEDEPLOY_FROM", default_value = "staging", value_name = "NAME")]
    from: String,
    #[arg(long, env = "SAFEDEPLOY_TO", default_value = "production", value_name = "NAME")]
    to: String,
    /// Promote although the policy refuses (needs --reason; recorded)
    #[arg(long, env = "SAFEDEPLOY_FORCE")]
    force: bool,
    /// Why, for the ledger
    #[arg(long, env = "SAFEDEPLOY_REASON", value_name = "TEXT")]
    reason: Option<String>,
    /// Promote a version a rollback from which was rehearsed and would fail (its migration is
    /// not reversible): only a roll forward is possible afterwards; the reason is recorded
    #[arg(long, env = "SAFEDEPLOY_ACCEPT_IRREVERSIBLE", value_name = "REASON")]
    accept_irreversible: Option<String>,
    /// Do not run the smoke chains against the candidate before it takes traffic; the reason
    /// is recorded
    #[arg(long, env = "SAFEDEPLOY_SKIP_PRE_TRAFFIC", value_name = "REASON")]
    skip_pre_traffic: Option<String>,
    /// Send this share of the requests (1-99 %) to the new version first, checking it every
    /// deploy.canary_interval; a failed round sends them all back at once
    #[arg(long, env = "SAFEDEPLOY_CANARY", value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(1..=99))]
    canary: Option<u8>,
    /// How long the canary runs before the new version takes every request, e.g. "5m"
    #[arg(long, env = "SAFEDEPLOY_BAKE", value_name = "DURATION", requires = "canary",
          value_parser = Dur::<1_000, 86_400_000>::parse)]
    bake: Option<Dur<1_000, 86_400_000>>,
    /// Tell Slack (SLACK_WEBHOOK_URL) and/or Datadog (DD_API_KEY) the outcome
    #[arg(long, env = "SAFEDEPLOY_NOTIFY")]
    notify: bool,
}

pub fn main() -> std::process::ExitCode {
    let a: Args = crate::cli::parse("promote");
    if a.budget {
        return run("promote", &a.common, crate::sla::report);
    }
    run("promote", &a.common, |ctx| {
        if a.notify {
            crate::notify::ready(ctx)?;
        }
        let result = promote(
            ctx,
            &PromoteRequest {
                version: a.version.as_ref(),
                from: &a.from,
                to: &a.to,
                force: a.force,
                reason: a.reason.as_deref(),
                skip_pre_traffic: a.skip_pre_traffic.as_deref(),
                accept_irreversible: a.accept_irreversible.as_deref(),
                canary: a
                    .canary
                    .map(|percent| CanaryRequest { percent, bake: a.bake.map(|b| b.0).unwrap_or(DEFAULT_BAKE) }),
            },
        );
        if a.notify && !ctx.dry_run {
            crate::notify::outcome(ctx, "promote", &a.to, &result);
        }
        result
    })
}
