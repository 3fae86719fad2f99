//! The `safedeploy` command's operations: what people do by hand, beside the six step
//! binaries the pipeline calls.

use crate::Outcome;
use crate::context::Ctx;
use anyhow::Result;
use serde::Serialize;

#[derive(Serialize)]
struct Checked<'a> {
    config: &'a std::path::Path,
    platform: crate::config::PlatformKind,
    environments: Vec<&'a str>,
    smoke_chains: usize,
    smoke_checks: usize,
    effective: serde_json::Value,
}

/// `safedeploy check`: the configuration is valid (loading it checked every value and rule);
/// prints the effective configuration, every default shown.
pub fn check(ctx: &Ctx) -> Result<Outcome> {
    let c = &ctx.config;
    let effective = c.effective()?;
    ctx.ui
        .result(format!("# {}: valid. The effective configuration, defaults included:\n{effective}", c.path.display()));
    Outcome::of(&Checked {
        config: &c.path,
        platform: c.platform.kind,
        environments: c.environments.keys().map(String::as_str).collect(),
        smoke_chains: c.chains.len(),
        smoke_checks: c.chains.iter().map(|ch| ch.checks.len()).sum(),
        effective: serde_json::to_value(c)?,
    })
}
