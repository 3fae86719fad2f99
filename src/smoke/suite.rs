//! The team's own suites as evidence (`[[smoke.suites]]`): an end-to-end or load suite run
//! against the version's own address, in a process group of its own with a time limit, its
//! JUnit report read with the gate's reader so the failing cases are named.
//!
//! The suite gets `SAFEDEPLOY_TARGET_URL` (where to send its requests), `SAFEDEPLOY_VERSION`,
//! `SAFEDEPLOY_ENV`, `SAFEDEPLOY_PHASE` and `SAFEDEPLOY_RUN_ID` (for the
//! `X-Safedeploy-Check` header, so the app can tell its traffic apart).
//!
//! Three outcomes, kept apart: a fresh report with failing cases is a verdict against the
//! version (whatever the exit code); a pass needs exit 0 and a fresh report with at least one
//! executed case and none failing; anything else — the command not found, killed at its time
//! limit, no fresh report, a non-zero exit with nothing failing in it — is "could not act"
//! (exit 3): no evidence either way.

use super::run::CheckResult;
use crate::context::Ctx;
use crate::exec::Cmd;
use anyhow::Result;
use std::path::PathBuf;

pub use super::settings::{Phase, Suite};

/// Where the suite runs.
fn dir_of(ctx: &Ctx, suite: &Suite) -> PathBuf {
    match &suite.dir {
        Some(d) => ctx.config.dir.join(d),
        None => ctx.config.source_dir(),
    }
}

/// Every suite of `phase`, run against `target`: one result each, as a check's (chain
/// "suite"). A failing suite is a failed result; one that could not give evidence is an error.
pub fn run_phase(
    ctx: &Ctx,
    phase: Phase,
    target: &str,
    version: &str,
    env: &str,
    run_id: &str,
) -> Result<Vec<CheckResult>> {
    let mut out = vec![];
    for suite in ctx.config.smoke.suites.iter().filter(|s| s.phases.contains(&phase)) {
        out.push(run_one(ctx, suite, phase, target, version, env, run_id)?);
    }
    Ok(out)
}

fn run_one(
    ctx: &Ctx,
    suite: &Suite,
    phase: Phase,
    target: &str,
    version: &str,
    env: &str,
    run_id: &str,
) -> Result<CheckResult> {
    let dir = dir_of(ctx, suite);
    let name = suite.name.as_str();
    let mut result = CheckResult {
        chain: "suite".into(),
        name: name.to_string(),
        passed: true,
        skipped: false,
        status: None,
        ms: vec![],
        detail: "dry run".into(),
    };
    let cmd = Cmd::new(suite.command.0.clone())
        .dir(&dir)
        .timeout(suite.timeout.0)
        .env("SAFEDEPLOY_TARGET_URL", target)
        .env("SAFEDEPLOY_VERSION", version)
        .env("SAFEDEPLOY_ENV", env)
        .env("SAFEDEPLOY_PHASE", phase.as_str())
        .env("SAFEDEPLOY_RUN_ID", run_id);
    let started = if ctx.dry_run {
        crate::gate::Start::Clock(std::time::SystemTime::now())
    } else {
        crate::gate::Start::mark(&dir)
    };
    let began = std::time::Instant::now();
    ctx.ui.status(format!("{env}: suite {name:?} against {target} ({})", phase.as_str()));
    let ran = ctx.exec.run_streamed(&cmd).map_err(|e| match crate::error::kind_of(&e) {
        crate::error::Kind::Interrupted => e,
        _ => crate::could_not_act!("suite {name:?} gave no evidence: {e:#}"),
    })?;
    let Some(status) = ran else {
        return Ok(result);
    };
    result.ms = vec![began.elapsed().as_millis()];
    let reports: Vec<PathBuf> =
        crate::gate::matching(&dir, &suite.junit)?.into_iter().filter(|p| started.fresh(p)).collect();
    let how = crate::exec::describe(&status);
    if reports.is_empty() {
        return Err(crate::could_not_act!(
            "suite {name:?} gave no evidence: it {how} and wrote no fresh report matching {} in {}",
            suite.junit.as_str(),
            dir.display()
        ));
    }
    let mut summary = crate::gate::junit::JunitSummary::default();
    for r in &reports {
        let text = crate::config::read_file(r, "suite report")?;
        summary.add(
            crate::gate::junit::parse_junit(&text, r).map_err(|e| crate::could_not_act!("suite {name:?}: {e:#}"))?,
        );
    }
    let failed = summary.failures + summary.errors;
    if failed > 0 {
        let shown: Vec<&str> = summary.failed.iter().take(5).map(String::as_str).collect();
        result.passed = false;
        result.detail = format!(
            "{failed} of {} case(s) failed against {version} ({how}): {}{}",
            summary.executed(),
            shown.join("; "),
            if summary.failed.len() > shown.len() {
                format!("; and {} more", summary.failed.len() - shown.len())
            } else {
                String::new()
            }
        );
        return Ok(result);
    }
    if !status.success() {
        return Err(crate::could_not_act!(
            "suite {name:?} gave no evidence: it {how}, and its report names no failing case"
        ));
    }
    if summary.executed() == 0 {
        return Err(crate::could_not_act!("suite {name:?} gave no evidence: its report names no executed case"));
    }
    result.detail =
        format!("{} case(s) passed against {version} in {:.1}s", summary.executed(), began.elapsed().as_secs_f64());
    Ok(result)
}
