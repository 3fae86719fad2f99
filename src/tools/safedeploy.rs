//! safedeploy: what people do by hand — set up, check, look, stop — beside the six step
//! binaries the pipeline calls. Shaped like the deploy tools people know (`kubectl rollout
//! status/history`, `eb status`).
use crate::cli::{CommonArgs, run, run_without_config};
use crate::manage::init::{InitRequest, init};
use std::path::PathBuf;

/// Deployment safety for a web app: set it up, check its configuration, see what runs and what
/// happened, stop an environment.
#[derive(clap::Parser)]
#[command(name = "safedeploy", version, after_help = crate::error::exit_codes_help("safedeploy"))]
pub struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Inspect an app and write a commented safedeploy.toml that passes `check`
    Init {
        /// The app's directory
        #[arg(long, default_value = ".", value_name = "DIR")]
        dir: PathBuf,
        /// Replace an existing safedeploy.toml
        #[arg(long)]
        force: bool,
        /// The staging and production ports on this machine
        #[arg(long, value_name = "STAGING,PRODUCTION", default_value = "8101,8102", value_parser = two_ports)]
        ports: (u16, u16),
    },
    /// Validate the configuration and print the effective one, every default shown
    Check,
    /// Per environment: the live version and since when, healthy or not, the last known good,
    /// the lock holder, open incidents; and the SLA budget left
    Status {
        #[arg(long, value_name = "NAME")]
        env: Option<String>,
    },
    /// Deployments, smoke verdicts, incidents and stops, oldest first
    History {
        #[arg(long, value_name = "NAME")]
        env: Option<String>,
        /// Show the newest N events
        #[arg(long, default_value_t = 50, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        limit: u32,
    },
    /// The ledger at a glance: deployments, incidents and their exposure, the SLA budget's
    /// burn, the four DORA keys, bad versions stopped by layer; as one HTML page or JSON
    Report {
        #[arg(long, value_name = "NAME")]
        env: Option<String>,
        /// From this date (2026-01-01), RFC 3339 time, or duration back (30d) [default: the
        /// SLA period's start]
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// Write the page here (self-contained: no script, no network)
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Stop everything an environment runs (local platform), with its lock held; recorded
    Stop {
        #[arg(value_name = "ENV")]
        env: String,
        /// Why, for the ledger
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Print a shell completion script for every safedeploy binary (or one)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
        /// Only this binary's (bash-completion loads a file per command name)
        #[arg(long, value_name = "NAME")]
        bin: Option<String>,
    },
    /// Write man pages for every safedeploy binary into a directory
    Man {
        #[arg(long, default_value = "man", value_name = "DIR")]
        out: PathBuf,
    },
}

/// `8101,8102`: two different ports.
fn two_ports(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("expected two different ports from 1 to 65535 as STAGING,PRODUCTION, got {s:?}");
    let (a, b) = s.split_once(',').ok_or_else(bad)?;
    let (a, b): (u16, u16) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
    if a == 0 || b == 0 || a == b {
        return Err(bad());
    }
    Ok((a, b))
}

pub fn main() -> std::process::ExitCode {
    let a: Args = crate::cli::parse("safedeploy");
    let tool = "safedeploy";
    match a.command {
        Command::Init { dir, force, ports } => {
            run_without_config(tool, &a.common, |fx| init(fx, &InitRequest { dir: &dir, force, ports }))
        }
        Command::Check => run(tool, &a.common, crate::manage::check),
        Command::Status { env } => run(tool, &a.common, |ctx| crate::manage::status(ctx, env.as_deref())),
        Command::History { env, limit } => {
            run(tool, &a.common, |ctx| crate::manage::history(ctx, env.as_deref(), limit as usize))
        }
        Command::Report { env, since, html } => run(tool, &a.common, |ctx| {
            let req =
                crate::report::ReportRequest { env: env.as_deref(), since: since.as_deref(), html: html.as_deref() };
            crate::report::report(ctx, &req)
        }),
        Command::Stop { env, reason } => run(tool, &a.common, |ctx| crate::manage::stop(ctx, &env, reason.as_deref())),
        Command::Completions { shell, bin } => run_without_config(tool, &a.common, |_| {
            let mut out = std::io::stdout();
            let all = crate::tools::commands();
            if let Some(b) = bin.as_deref().filter(|b| !all.iter().any(|(n, _)| n == b)) {
                let names: Vec<&str> = all.iter().map(|(n, _)| *n).collect();
                return Err(crate::usage!("--bin {b}: expected one of {}", names.join(", ")));
            }
            for (name, mut cmd) in all.into_iter().filter(|(n, _)| bin.as_deref().is_none_or(|b| b == *n)) {
                clap_complete::generate(shell, &mut cmd, name, &mut out);
            }
            Ok(crate::Outcome::ok(serde_json::json!({})))
        }),
        Command::Man { out } => {
            run_without_config(tool, &a.common, |fx| crate::manage::man(fx, &out, super::commands()))
        }
    }
}
