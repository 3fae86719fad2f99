//! deploy-staging, promote and rollback: the three ways a version reaches an environment,
//! sharing one path — take the environment's lock, close what a killed run left open, deploy
//! through the platform, record the outcome in the ledger — and the SLA budget they report.
//!
//! An incident is recorded (open) before anything is done about it and closed once the good
//! version serves through the environment's address, so a run killed in between leaves it open
//! for the next run in the environment to close: no incident is lost, and the time it takes to
//! stop the bad version afterwards is never charged as downtime.
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | the shared path: the lock, what a killed run left, a recorded deployment |
//! | [`staging`] | deploy-staging |
//! | [`promote`] | promote: the check before traffic, the canary, a failed promote |
//! | [`rollback`] | rollback: what to restore, the verified restore, the incident |
//! | [`crate::rules`] | the decisions that change production, as pure functions with table tests |

use crate::bundle;
use crate::clock::{Millis, human, now_ms, rfc3339};
use crate::config::Label;
use crate::context::Ctx;
use crate::error::{Error, Kind, kind_of};
use crate::ledger::{Action, Cause, Incident, Ledger, Version};
use crate::lock;
use crate::platform::{CanaryAborted, Live, Platform, Switched};
use crate::sla::Budget;
use crate::{Outcome, usage};
use anyhow::Result;
use serde::Serialize;

mod promote;
mod rollback;
mod staging;

pub use promote::{CanaryRequest, PromoteRequest, promote};
pub use rollback::{RollbackRequest, rollback};
pub use staging::deploy_staging;

/// One deployment as the ledger records it.
pub(super) struct Step<'a> {
    pub(super) env: &'a str,
    pub(super) label: &'a str,
    pub(super) action: Action,
    pub(super) previous: Option<&'a str>,
    pub(super) reason: Option<&'a str>,
    /// The check of the candidate before it takes traffic, where one runs.
    pub(super) pre: Option<&'a crate::platform::PreTraffic<'a>>,
    /// A canary phase before the whole switch.
    pub(super) canary: Option<&'a crate::platform::Canary<'a>>,
}

/// Deploys `env` with `label` and records the deployment; the lock must be held.
pub(super) fn deploy_recorded(ctx: &Ctx, ledger: &Ledger, platform: &dyn Platform, step: Step<'_>) -> Result<Switched> {
    let Step { env, label, action, previous, reason, pre, canary } = step;
    let environment = ctx.config.environment(env)?;
    if !ctx.dry_run {
        ledger.adopt(label)?;
    }
    let id = ledger.begin_deployment(env, label, action, previous, reason)?;
    // A rollback replaces the bad version: it is not kept warm; nor is a version that failed
    // here (its newest verdict a failure, or marked bad): it is no target for an instant
    // switch back.
    let previous_failed = match previous {
        Some(p) if !ctx.dry_run => ledger.failed_in(env, p)?,
        _ => false,
    };
    let keep_previous = crate::rules::keep_warm(matches!(action, Action::Rollback | Action::Restore), previous_failed);
    let how = crate::platform::DeployOptions { pre, keep_previous, canary };
    match platform.deploy(environment, label, &how) {
        Ok(switched) => {
            // Users first met it when its canary share took traffic, if it had one.
            ledger.record_switch(id, switched.took_traffic())?;
            ledger.finish_deployment(id, true, "healthy")?;
            Ok(switched)
        }
        Err(e) => {
            if let Some(a) = CanaryAborted::of(&e) {
                ledger.record_switch(id, a.took_traffic_at)?;
            }
            ledger.finish_deployment(id, false, &format!("{e:#}"))?;
            Err(e)
        }
    }
}

/// `label` serves `env` (the platform says so) but the ledger's last healthy deployment there
/// is another: a run was killed after switching and before recording it. Record the truth.
pub(super) fn reconcile(ctx: &Ctx, ledger: &Ledger, env: &str, label: &str, action: Action) -> Result<()> {
    if ledger.live_deployment(env)?.is_some_and(|d| d.label == label) {
        return Ok(());
    }
    ctx.ui.warn(format!("{env}: {label} serves, but the ledger did not record it: recording it now"));
    if !ctx.dry_run {
        ledger.adopt(label)?;
    }
    let id = ledger.begin_deployment(env, label, action, None, Some("found live after an interrupted run"))?;
    ledger.finish_deployment(id, true, "found live and healthy")?;
    Ok(())
}

/// Takes the environment's lock and closes what a killed run left: deployments left open are
/// abandoned, the platform tidies its leftovers, and an open incident whose good version now
/// serves is closed. Returns the lock and what the environment runs.
pub(super) fn take_env(
    ctx: &Ctx,
    ledger: &Ledger,
    platform: &dyn Platform,
    env: &str,
) -> Result<(Option<lock::EnvLock>, Option<Live>)> {
    let who = lock::Holder { tool: ctx.ui.tool, actor: ctx.env.actor() };
    let held = lock::acquire(&ctx.state_dir, env, &who, ctx.dry_run)?;
    let stale = ledger.abandon_stale(env)?;
    if stale > 0 {
        ctx.ui.warn(format!("{env}: closed {stale} deployment(s) left open by a run that was stopped"));
    }
    let environment = ctx.config.environment(env)?;
    platform.tidy(environment)?;
    let live = platform.live(environment)?;
    settle_incidents(ctx, ledger, env, live.as_ref())?;
    Ok((held, live))
}

/// Closes the open incidents of `env` whose good version serves now: the run that restored it
/// was stopped before it could say so. Restored is when this run found it serving (the latest
/// it can have been), so the downtime is never under-counted.
pub(super) fn settle_incidents(ctx: &Ctx, ledger: &Ledger, env: &str, live: Option<&Live>) -> Result<()> {
    let Some(live) = live.filter(|l| l.healthy) else { return Ok(()) };
    for i in ledger.open_incidents(env)? {
        if i.restored_label.as_deref() == Some(live.label.as_str()) {
            ctx.ui.warn(format!(
                "{env}: closing the incident of {} left open by a run that was stopped: {} serves",
                i.bad_label.as_deref().unwrap_or("-"),
                live.label
            ));
            let note = " (restored by a run that was stopped; closed when found serving)";
            ledger.close_incident(i.id, &live.label, now_ms(), Some(note))?;
        }
    }
    Ok(())
}

/// The environments that only promote may change: those whose incidents spend the SLA budget.
pub(super) fn is_production(ctx: &Ctx, env: &str) -> bool {
    ctx.config.sla.environments.iter().any(|e| e == env)
}

/// At most `n` characters of `text`, marked when cut.
pub(super) fn clip(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(n).collect::<String>())
    }
}
