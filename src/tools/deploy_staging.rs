//! deploy-staging: build a version from a commit, register it, deploy it, wait until healthy.
use crate::cli::{CommonArgs, run};
use crate::config::Label;

/// Bundle a commit as a version, deploy it to staging and wait until it is healthy.
#[derive(clap::Parser)]
#[command(
    name = "deploy-staging",
    disable_version_flag = true,
    after_help = crate::error::exit_codes_help("deploy-staging")
)]
pub struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Version label, [A-Za-z0-9._-]{1,100}, one commit per label
    #[arg(long, env = "SAFEDEPLOY_VERSION_LABEL", value_name = "LABEL", value_parser = Label::parse)]
    version: Label,
    /// Commit to bundle [default: the commit the ledger knows for LABEL, else HEAD]
    #[arg(long, env = "SAFEDEPLOY_COMMIT", value_name = "REV")]
    commit: Option<String>,
    /// Environment to deploy to
    #[arg(long, env = "SAFEDEPLOY_ENV", default_value = "staging", value_name = "NAME")]
    env: String,
}

pub fn main() -> std::process::ExitCode {
    let a: Args = crate::cli::parse("deploy-staging");
    run("deploy-staging", &a.common, |ctx| crate::deploy::deploy_staging(ctx, &a.version, a.commit.as_deref(), &a.env))
}
