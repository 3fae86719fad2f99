//! The command lines of the six step binaries and of `safedeploy`: their clap definitions and
//! `main`s live here, so each binary is one call, and `safedeploy completions` / `safedeploy
//! man` are generated from the very definitions the binaries parse.

pub mod collect_logs;
pub mod deploy_staging;
pub mod gate_tests;
pub mod promote;
pub mod rollback;
pub mod safedeploy;
pub mod smoke_check;

use clap::CommandFactory;

/// The tools, as installed: (binary name, its clap command).
pub fn commands() -> Vec<(&'static str, clap::Command)> {
    vec![
        ("gate-tests", gate_tests::Args::command()),
        ("deploy-staging", deploy_staging::Args::command()),
        ("smoke-check", smoke_check::Args::command()),
        ("promote", promote::Args::command()),
        ("rollback", rollback::Args::command()),
        ("collect-logs", collect_logs::Args::command()),
        ("safedeploy", safedeploy::Args::command()),
    ]
}
