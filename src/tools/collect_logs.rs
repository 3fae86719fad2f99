//! collect-logs: fetch, filter, group and report an environment's errors.
use crate::cli::{CommonArgs, run_with};
use crate::logs::{LogsRequest, collect_logs};
use std::path::PathBuf;

/// Turn an environment's logs (or files) into a grouped, redacted error report.
#[derive(clap::Parser)]
#[command(
    name = "collect-logs",
    version,
    after_help = crate::error::exit_codes_help("collect-logs")
)]
pub struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Environment whose logs to read
    #[arg(long, env = "SAFEDEPLOY_ENV", value_name = "NAME")]
    env: Option<String>,
    /// Log files or globs to read (instead of, or besides, --env); gzip is read; - is stdin
    #[arg(long, value_name = "FILE", num_args = 1..)]
    input: Vec<PathBuf>,
    /// Only lines since a duration ago ("30m") or a time ("2026-11-23T22:00:00Z")
    /// [default with --env: since the version under suspicion was deployed]
    #[arg(long, env = "SAFEDEPLOY_SINCE", value_name = "T")]
    since: Option<String>,
    /// Only lines until a duration ago or a time
    #[arg(long, env = "SAFEDEPLOY_UNTIL", value_name = "T")]
    until: Option<String>,
    /// Report file
    #[arg(long, env = "SAFEDEPLOY_OUT", value_name = "FILE", default_value = "error_hunt.txt")]
    out: PathBuf,
    /// Replaces the default selection; case-sensitive as written ((?i) for any case)
    #[arg(long, env = "SAFEDEPLOY_PATTERN", value_name = "REGEX")]
    pattern: Option<String>,
    /// Selects more, besides the default (or --pattern): e.g. 'WORKER TIMEOUT|OOM'
    #[arg(long, env = "SAFEDEPLOY_ALSO_PATTERN", value_name = "REGEX")]
    also_pattern: Option<String>,
    /// Records of context around each match (0 to 50, as logs.context)
    #[arg(long, env = "SAFEDEPLOY_CONTEXT", value_name = "N",
          value_parser = clap::value_parser!(u64).range(0..=crate::logs::settings::MAX_CONTEXT))]
    context: Option<u64>,
    /// A Datadog webhook payload (a file, or - for stdin): its environment and window
    #[arg(long, env = "SAFEDEPLOY_DATADOG_PAYLOAD", value_name = "FILE|-")]
    datadog_payload: Option<PathBuf>,
    /// Post the summary to Slack (SLACK_WEBHOOK_URL) and/or as a Datadog event (DD_API_KEY)
    #[arg(long, env = "SAFEDEPLOY_NOTIFY")]
    notify: bool,
}

pub fn main() -> std::process::ExitCode {
    let a: Args = crate::cli::parse("collect-logs");
    // Plain files need no config: every setting is then its default.
    let mut options = a.common.options();
    options.config_optional = a.env.is_none() && a.datadog_payload.is_none();
    run_with("collect-logs", &a.common, options, |ctx| {
        collect_logs(
            ctx,
            &LogsRequest {
                env: a.env.as_deref(),
                inputs: &a.input,
                since: a.since.as_deref(),
                until: a.until.as_deref(),
                out: Some(&a.out),
                pattern: a.pattern.as_deref(),
                also_pattern: a.also_pattern.as_deref(),
                context: a.context.map(|c| c as usize),
                datadog_payload: a.datadog_payload.as_deref(),
                notify: a.notify,
            },
        )
    })
}
