//! smoke-check: wait until an environment serves the expected version, then run the checks.
use crate::cli::{CommonArgs, run};
use crate::config::{Dur, Label};
use crate::smoke::{SmokeRequest, smoke_check};

/// Wait for the expected version, then run the configured request chain against it.
#[derive(clap::Parser)]
#[command(
    name = "smoke-check",
    version,
    after_help = crate::error::exit_codes_help("smoke-check")
)]
pub struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Environment to check
    #[arg(long, env = "SAFEDEPLOY_ENV", value_name = "NAME")]
    env: String,
    /// Version that must be served [default: what the platform says is live]
    #[arg(long, env = "SAFEDEPLOY_EXPECT_VERSION", value_name = "LABEL", value_parser = Label::parse)]
    expect_version: Option<Label>,
    /// Record the verdict in the ledger (a pass makes the version last known good)
    #[arg(long, env = "SAFEDEPLOY_RECORD")]
    record: bool,
    /// Keep checking for this long after the first pass (a bake period), e.g. "5m"
    #[arg(long, env = "SAFEDEPLOY_WATCH", value_name = "DURATION", value_parser = Dur::<10, 86_400_000>::parse)]
    watch: Option<Dur<10, 86_400_000>>,
    /// Pause between the rounds of --watch
    #[arg(long, env = "SAFEDEPLOY_INTERVAL", value_name = "DURATION", default_value = "30s", value_parser = Dur::<10, 3_600_000>::parse)]
    interval: Dur<10, 3_600_000>,
    /// Requests per check, for the p95 latency budget (p95_latency)
    #[arg(long, env = "SAFEDEPLOY_SAMPLES", value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    samples: u32,
    /// Also write one JUnit test case per check
    #[arg(long, env = "SAFEDEPLOY_JUNIT_OUT", value_name = "PATH")]
    junit_out: Option<std::path::PathBuf>,
}

pub fn main() -> std::process::ExitCode {
    let a: Args = crate::cli::parse("smoke-check");
    run("smoke-check", &a.common, |ctx| {
        smoke_check(
            ctx,
            &SmokeRequest {
                env: &a.env,
                expect_version: a.expect_version.as_ref(),
                record: a.record,
                watch: a.watch.map(|d| d.0),
                interval: a.interval.0,
                samples: a.samples,
                junit_out: a.junit_out.as_deref(),
            },
        )
    })
}
