//! safedeploy: what people do by hand — check a configuration, and more to come — beside the
//! six step binaries the pipeline calls.
use safedeploy::cli::{CommonArgs, run};

/// Deployment safety for a web app: check its configuration.
#[derive(clap::Parser)]
#[command(name = "safedeploy", version, after_help = safedeploy::error::exit_codes_help("safedeploy"))]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Validate the configuration and print the effective one, every default shown
    Check,
}

fn main() -> std::process::ExitCode {
    let a: Args = safedeploy::cli::parse("safedeploy");
    match a.command {
        Command::Check => run("safedeploy", &a.common, safedeploy::manage::check),
    }
}
