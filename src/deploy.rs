//! deploy-staging, promote and rollback: the three ways a version reaches an environment,
//! sharing one path — take the environment's lock, close what a killed run left open, deploy
//! through the platform, record the outcome in the ledger — and the SLA budget they report.
//!
//! An incident is recorded (open) before anything is done about it and closed once the good
//! version serves through the environment's address, so a run killed in between leaves it open
//! for the next run in the environment to close: no incident is lost, and the time it takes to
//! stop the bad version afterwards is never charged as downtime.

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

/// deploy-staging's `--json` document.
#[derive(Serialize)]
struct Deployed<'a> {
    env: &'a str,
    version: &'a str,
    commit: &'a str,
    previous: Option<String>,
    duration_ms: Millis,
    dry_run: bool,
}

/// promote's `--json` document.
#[derive(Serialize)]
struct Promoted<'a> {
    env: &'a str,
    version: &'a str,
    previous: Option<String>,
    changed: bool,
    duration_ms: Option<Millis>,
    budget: Budget,
    dry_run: bool,
}

/// rollback's `--json` document when it restored a version.
#[derive(Serialize)]
struct RolledBack<'a> {
    env: &'a str,
    changed: bool,
    bad_version: Option<&'a str>,
    restored_version: &'a str,
    /// From the rollback's start to the switch.
    time_to_restore_ms: Millis,
    /// From the rollback's start to the restored version passing its checks.
    verified_ms: Millis,
    /// Versions switched to first that failed their checks, in order.
    tried: Vec<&'a str>,
    /// Users' exposure, charged to the SLA budget: from when the bad version took traffic (or,
    /// had it passed a check since, its first failing verdict) to the good one serving again.
    downtime_ms: Millis,
    /// The exposure clock.
    took_traffic_at: Option<String>,
    detected_at: String,
    rollback_started_at: String,
    restored_at: String,
    budget: Budget,
    dry_run: bool,
}

/// rollback's `--json` document when it had nothing to do.
#[derive(Serialize)]
struct Unchanged<'a> {
    env: &'a str,
    changed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    budget: Option<Budget>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transition: Option<&'a str>,
}

/// One deployment as the ledger records it.
struct Step<'a> {
    env: &'a str,
    label: &'a str,
    action: Action,
    previous: Option<&'a str>,
    reason: Option<&'a str>,
    /// The check of the candidate before it takes traffic, where one runs.
    pre: Option<&'a crate::platform::PreTraffic<'a>>,
    /// A canary phase before the whole switch.
    canary: Option<&'a crate::platform::Canary<'a>>,
}

/// Deploys `env` with `label` and records the deployment; the lock must be held.
fn deploy_recorded(ctx: &Ctx, ledger: &Ledger, platform: &dyn Platform, step: Step<'_>) -> Result<Switched> {
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
    let keep_previous = action != Action::Rollback && action != Action::Restore && !previous_failed;
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
fn reconcile(ctx: &Ctx, ledger: &Ledger, env: &str, label: &str, action: Action) -> Result<()> {
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
fn take_env(
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
fn settle_incidents(ctx: &Ctx, ledger: &Ledger, env: &str, live: Option<&Live>) -> Result<()> {
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
fn is_production(ctx: &Ctx, env: &str) -> bool {
    ctx.config.sla.environments.iter().any(|e| e == env)
}

/// `deploy-staging`: bundle the commit, register the version, deploy it, wait until healthy.
pub fn deploy_staging(ctx: &Ctx, label: &Label, rev: &str, env: &str) -> Result<Outcome> {
    ctx.config.environment(env)?;
    if is_production(ctx, env) {
        return Err(Error::usage(format!(
            "deploy-staging deploys to staging environments only; {env} is one whose incidents spend the SLA budget (sla.environments)"
        ))
        .with_hint(format!("promote --version {label} --to {env} deploys what passed staging"))
        .into());
    }
    let commit = bundle::resolve_commit(ctx, rev)?;
    let ledger = ctx.ledger()?;
    let platform = ctx.platform()?;
    ctx.ui.status(format!("{env}: deploying {label} (commit {})", crate::git::short(&commit)));
    let (_lock, live) = take_env(ctx, &ledger, &*platform, env)?;
    let started = now_ms();
    let version = registered(ctx, &ledger, &*platform, label, &commit)?;
    let previous = live.map(|l| l.label);
    let step = Step {
        env,
        label,
        action: Action::Deploy,
        previous: previous.as_deref(),
        reason: None,
        pre: None,
        canary: None,
    };
    deploy_recorded(ctx, &ledger, &*platform, step)?;
    let took = now_ms() - started;
    if !ctx.dry_run {
        ctx.ui.result(format!("{env}: {label} is live and healthy ({} after the lock)", human(took)));
    }
    Outcome::of(&Deployed {
        env,
        version: label,
        commit: &version.commit,
        previous,
        duration_ms: took,
        dry_run: ctx.dry_run,
    })
}

/// The version `label` of `commit`: the known one (a label names one commit forever), or a new
/// one bundled, registered with the platform and recorded.
fn registered(ctx: &Ctx, ledger: &Ledger, platform: &dyn Platform, label: &str, commit: &str) -> Result<Version> {
    let known = ledger.version(label)?;
    let version = match &known {
        Some(v) if v.commit != commit => {
            return Err(Error::usage(format!(
                "version {label} already exists for commit {}; labels name one commit",
                v.commit
            ))
            .with_hint("choose a new label, e.g. include the build number")
            .into());
        }
        Some(v) => {
            ctx.ui.status(format!("{label} is already built from this commit; reusing it"));
            v.clone()
        }
        None => Version {
            label: label.to_string(),
            commit: commit.to_string(),
            checksum: bundle::build(ctx, label, commit)?.unwrap_or_default(),
            bundle: bundle::path(ctx, label)?.to_string_lossy().into_owned(),
            created_at: now_ms(),
            bad_at: None,
            bad_reason: None,
        },
    };
    if let Err(e) = platform.register(&version, &bundle::path(ctx, label)?) {
        if known.is_none() {
            bundle::discard(ctx, label)?;
        }
        return Err(e);
    }
    if known.is_none() {
        ledger.record_version(&version)?;
        let dir = ctx.config.source_dir();
        if let Ok(t) = crate::git::read(ctx, &dir, &["show", "-s", "--format=%ct", commit])
            && let Ok(secs) = t.trim().parse::<i64>()
        {
            ledger.record_committed_at(label, secs * 1000)?;
        }
    }
    Ok(version)
}

pub struct PromoteRequest<'a> {
    pub version: Option<&'a Label>,
    pub from: &'a str,
    pub to: &'a str,
    pub force: bool,
    pub reason: Option<&'a str>,
    /// Deploy without checking the candidate before traffic, for this recorded reason.
    pub skip_pre_traffic: Option<&'a str>,
    /// A canary phase first: this share of the users for this long.
    pub canary: Option<CanaryRequest>,
}

/// `promote --canary PERCENT --bake DURATION`.
#[derive(Debug, Clone, Copy)]
pub struct CanaryRequest {
    pub percent: u8,
    pub bake: std::time::Duration,
}

/// `promote`: deploy to `to` exactly the bundle that passed in `from`; put the previous version
/// back when the new one does not become healthy.
pub fn promote(ctx: &Ctx, req: &PromoteRequest<'_>) -> Result<Outcome> {
    let (from, to) = (req.from, req.to);
    ctx.config.environment(from)?;
    let to_env = ctx.config.environment(to)?;
    if req.force && req.reason.is_none_or(|r| r.trim().is_empty()) {
        return Err(usage!("--force needs --reason TEXT: an override is recorded with its reason"));
    }
    if req.skip_pre_traffic.is_some_and(|r| r.trim().is_empty()) {
        return Err(usage!("--skip-pre-traffic: expected the reason it is skipped (it is recorded)"));
    }
    // The checks the candidate meets before traffic need their variables now, not mid-deploy.
    crate::smoke::pre_traffic_ready(ctx)?;
    let ledger = ctx.ledger()?;
    let (version, budget_now) = promotable(ctx, &ledger, req)?;
    let label = version.label.clone();
    let platform = ctx.platform()?;
    if let Some(c) = req.canary {
        platform.can_canary(to_env, c.bake)?;
    }
    let (_lock, live) = take_env(ctx, &ledger, &*platform, to)?;
    if let Some(l) = live.as_ref().filter(|l| l.label == label && l.healthy) {
        reconcile(ctx, &ledger, to, &l.label, Action::Promote)?;
        ctx.ui.result(format!("{to}: {label} is already live; nothing to promote"));
        let summary = Promoted {
            env: to,
            version: &label,
            previous: None,
            changed: false,
            duration_ms: None,
            budget: budget_now,
            dry_run: ctx.dry_run,
        };
        return Outcome::of(&summary);
    }
    let previous = live.as_ref().map(|l| l.label.clone());
    platform.register(&version, std::path::Path::new(&version.bundle))?;
    ctx.ui.status(format!(
        "{to}: promoting {label} from {from} (replacing {})",
        previous.as_deref().unwrap_or("nothing")
    ));
    let started = now_ms();
    // Before traffic: the smoke chains against the candidate's own address. A failure there
    // never reached a user.
    let stopped = std::cell::RefCell::new(None::<String>);
    let check = |base: &str| -> Result<()> {
        crate::smoke::pre_traffic(ctx, to, &label, base).inspect_err(|e| {
            if kind_of(e) == Kind::Verdict {
                *stopped.borrow_mut() = Some(format!("{e:#}"));
            }
        })
    };
    let skipped = req.skip_pre_traffic.map(|r| format!("pre-traffic check skipped: {r}"));
    let reason = match (req.reason, &skipped) {
        (Some(r), Some(s)) => Some(format!("{r}; {s}")),
        (r, s) => r.map(str::to_string).or(s.clone()),
    };
    if let Some(s) = &skipped {
        ctx.ui.warn(format!("{to}: {s}"));
    }
    let pre: Option<&crate::platform::PreTraffic<'_>> = if skipped.is_some() { None } else { Some(&check) };
    // Each canary round: the smoke chains against the candidate's own address (every check
    // shown in the first round, then only failures) and the Datadog monitors.
    let first_round = std::cell::Cell::new(true);
    let round = |base: &str| crate::smoke::canary_round(ctx, to, &label, base, first_round.replace(false));
    let canary = req.canary.map(|c| crate::platform::Canary {
        percent: c.percent,
        bake: c.bake,
        interval: ctx.config.deploy.canary_interval.0,
        error_margin: ctx.config.deploy.canary_error_margin.0,
        round: &round,
    });
    let step = Step {
        env: to,
        label: &label,
        action: Action::Promote,
        previous: previous.as_deref(),
        reason: reason.as_deref(),
        pre,
        canary: canary.as_ref(),
    };
    let deployed = deploy_recorded(ctx, &ledger, &*platform, step);
    if let (Err(e), Some(why)) = (&deployed, stopped.borrow().clone()) {
        return Err(stopped_before_traffic(&ledger, to, &label, previous.as_deref(), &why, e));
    }
    if let Err(e) = &deployed
        && let Some(a) = CanaryAborted::of(e)
    {
        return Err(canary_failed(ctx, &ledger, to, &label, previous.as_deref(), a.clone(), e));
    }
    match deployed {
        Ok(switched) => {
            if !ctx.dry_run {
                if let Some(from) = switched.canary_from {
                    ctx.ui.result(format!(
                        "{to}: {label} passed its canary ({}% for {}) and takes every request since {}",
                        req.canary.map(|c| c.percent).unwrap_or(0),
                        human(switched.at - from),
                        rfc3339(switched.at)
                    ));
                }
                ctx.ui.result(format!("{to}: {label} is live and healthy ({})", human(now_ms() - started)));
                ctx.ui.result(budget_now.line());
            }
            let took = Some(now_ms() - started);
            Outcome::of(&Promoted {
                env: to,
                version: &label,
                previous,
                changed: true,
                duration_ms: took,
                budget: budget_now,
                dry_run: ctx.dry_run,
            })
        }
        Err(e) if kind_of(&e) == Kind::Verdict => {
            let failed = Failed { env: to, environment: to_env, label: &label, previous, started };
            Err(promote_failed(ctx, &ledger, &*platform, failed, e))
        }
        Err(e) => Err(e),
    }
}

/// The candidate failed its canary: its share of the users met it from the canary's start until
/// its share was 0 again. It is marked bad, the verdict recorded, and an incident recorded
/// (already closed: the previous version serves everyone) charging that span times the share.
fn canary_failed(
    ctx: &Ctx,
    ledger: &Ledger,
    env: &str,
    label: &str,
    previous: Option<&str>,
    a: CanaryAborted,
    e: &anyhow::Error,
) -> anyhow::Error {
    let prev = previous.unwrap_or("-");
    let recorded = (|| -> Result<i64> {
        ledger.mark_bad(label, &format!("failed its canary in {env}"))?;
        let verdict = format!("canary at {}%: {}", a.percent, clip(&a.why, 500));
        ledger.record_verification(env, label, false, &verdict)?;
        let id = ledger.open_incident(&Incident {
            id: 0,
            env: env.to_string(),
            bad_label: Some(label.to_string()),
            restored_label: previous.map(str::to_string),
            detected_at: a.failed_at,
            restored_at: None,
            downtime_ms: None,
            reason: Some(format!("canary of {label} at {}% failed: {}", a.percent, clip(&a.why, 200))),
            took_traffic_at: Some(a.took_traffic_at),
            rollback_started_at: Some(a.failed_at),
            charged_from: Some(a.took_traffic_at),
            share_percent: Some(i64::from(a.percent)),
            cause: Some(Cause::Canary.as_str().into()),
            alert_id: None,
        })?;
        ledger.close_incident(id, prev, a.stopped_at, None)?;
        Ok(id)
    })();
    if let Err(r) = recorded {
        return Error::could_not_act(format!("the canary of {label} failed in {env}, but recording it failed"))
            .caused_by(r);
    }
    let span = a.stopped_at - a.took_traffic_at;
    let charged = span * i64::from(a.percent) / 100;
    if !ctx.dry_run {
        ctx.ui.result(format!(
            "{env}: canary of {label} aborted; {prev} serves every request again, {} ms after the failing verdict",
            a.stopped_at - a.failed_at
        ));
        ctx.ui.result(format!(
            "{env}: {}% of the users met {label} for {} (from {} to {}): {} charged to the SLA budget",
            a.percent,
            human(span),
            rfc3339(a.took_traffic_at),
            rfc3339(a.stopped_at),
            human(charged)
        ));
    }
    let _ = e;
    Error::verdict(format!(
        "{label} failed its canary in {env} at {}% and was stopped; {prev} serves every request",
        a.percent
    ))
    .caused_by(anyhow::anyhow!("{}", a.why))
}

/// The candidate failed its checks at its own address: it took no traffic, so no incident and
/// no downtime; it is marked bad, and the verdict is recorded in `env`.
fn stopped_before_traffic(
    ledger: &Ledger,
    env: &str,
    label: &str,
    previous: Option<&str>,
    why: &str,
    e: &anyhow::Error,
) -> anyhow::Error {
    let recorded = (|| -> Result<()> {
        ledger.mark_bad(label, &format!("stopped before traffic in {env}"))?;
        ledger.record_verification(env, label, false, &format!("stopped before traffic: {}", clip(why, 500)))?;
        Ok(())
    })();
    if let Err(r) = recorded {
        return Error::could_not_act(format!("{label} was stopped before traffic in {env}, but recording it failed"))
            .caused_by(r);
    }
    let still = previous.map(|p| format!("{p} still serves")).unwrap_or_else(|| format!("{env} serves nothing"));
    Error::verdict(format!("{label} was stopped before it took traffic in {env} ({still}; no downtime)"))
        .caused_by(anyhow::anyhow!("{e:#}"))
}

/// The version to promote and the budget now; refuses (exit 1) a version not verified in
/// `from`, one marked bad, or any when the budget is spent, unless forced with a reason.
fn promotable(ctx: &Ctx, ledger: &Ledger, req: &PromoteRequest<'_>) -> Result<(Version, Budget)> {
    let (from, to) = (req.from, req.to);
    let label = match req.version {
        Some(l) => l.to_string(),
        None => ledger.last_known_good(from)?.ok_or_else(|| {
            Error::usage(format!("no version has passed the smoke checks in {from}; nothing to promote"))
                .with_hint(format!("run smoke-check --env {from} --record, or name one with --version"))
        })?,
    };
    let version = ledger.version(&label)?.ok_or_else(|| {
        Error::usage(format!("unknown version {label}: deploy-staging registers versions"))
            .with_hint("see the ledger's versions with --json output of deploy-staging")
    })?;
    let budget_now = Budget::now(&ctx.config.sla, ledger)?;
    let mut refusals = vec![];
    if !ledger.verified_in(from, &label)? {
        refusals.push(format!("{label} has not passed the smoke checks in {from}"));
    }
    if let Some(why) = &version.bad_reason {
        refusals.push(format!("{label} is marked bad ({why})"));
    }
    if budget_now.spent {
        refusals.push(format!("the SLA budget is spent ({})", budget_now.line()));
    }
    if !refusals.is_empty() {
        if !req.force {
            return Err(Error::verdict(format!("refusing to promote {label} to {to}: {}", refusals.join("; ")))
                .with_hint("override with --force --reason TEXT (recorded in the ledger)")
                .into());
        }
        ctx.ui.warn(format!("overriding: {} — reason: {}", refusals.join("; "), req.reason.unwrap_or_default()));
    }
    Ok((version, budget_now))
}

/// A promote whose version did not become healthy.
struct Failed<'a> {
    env: &'a str,
    environment: &'a crate::config::Environment,
    label: &'a str,
    previous: Option<String>,
    started: Millis,
}

/// After a failed promote: the version is marked bad; if users saw it (no proxy, EB in place),
/// the previous version is put back under an incident. Returns the error to exit with.
fn promote_failed(
    ctx: &Ctx,
    ledger: &Ledger,
    platform: &dyn Platform,
    f: Failed<'_>,
    e: anyhow::Error,
) -> anyhow::Error {
    let Failed { env, environment, label, previous, started } = f;
    let result = (|| -> Result<anyhow::Error> {
        ctx.ui.status(format!("{env}: {label} did not become healthy"));
        ledger.mark_bad(label, &format!("did not become healthy in {env}"))?;
        // Blue/green or behind the proxy: it failed before any switch; users never saw it.
        if let Some(l) = platform.live(environment)?
            && previous.as_deref() == Some(l.label.as_str())
            && l.healthy
        {
            let msg =
                format!("{label} did not become healthy in {env} and never served its users: {} still does", l.label);
            return Ok(Error::verdict(msg).caused_by(e));
        }
        let Some(prev) = previous.filter(|p| p != label) else {
            let msg = format!(
                "{label} did not become healthy in {env}, and there is no previous version to put back: {env} is stopped"
            );
            return Ok(Error::verdict(msg).caused_by(e));
        };
        ctx.ui.status(format!("{env}: putting {prev} back"));
        let incident = ledger.open_incident(&Incident {
            id: 0,
            env: env.to_string(),
            bad_label: Some(label.to_string()),
            restored_label: Some(prev.clone()),
            detected_at: started,
            restored_at: None,
            downtime_ms: None,
            reason: Some(format!("promote of {label} did not become healthy")),
            // Stop-then-start: users lost the old version when it was stopped, at the start.
            took_traffic_at: None,
            rollback_started_at: Some(now_ms()),
            charged_from: Some(started),
            share_percent: None,
            cause: Some(Cause::Health.as_str().into()),
            alert_id: None,
        })?;
        let step = Step {
            env,
            label: &prev,
            action: Action::Restore,
            previous: Some(label),
            reason: Some("promote failed"),
            pre: None,
            canary: None,
        };
        let switched = match deploy_recorded(ctx, ledger, platform, step) {
            Ok(s) => s,
            Err(r) => {
                let msg = format!("{label} failed in {env} and restoring {prev} failed too");
                return Ok(Error::could_not_act(msg).caused_by(r));
            }
        };
        ledger.close_incident(incident, &prev, switched.at, None)?;
        let msg = format!(
            "{label} did not become healthy in {env}; {prev} is back, {} of downtime",
            human(switched.at - started)
        );
        Ok(Error::verdict(msg).caused_by(e))
    })();
    result.unwrap_or_else(|r| r)
}

pub struct RollbackRequest<'a> {
    /// Default: production, or the environment of the Datadog alert.
    pub env: Option<&'a str>,
    pub to: Option<&'a Label>,
    pub reason: Option<&'a str>,
    pub datadog_payload: Option<&'a std::path::Path>,
    /// `--to` a version not known good in the environment (needs a reason).
    pub force: bool,
}

/// What rollback found it must do.
enum Decision {
    /// The environment runs `target`, healthy, and nothing speaks against it.
    Nothing { target: String },
    /// Put `target` in front of users: replacing `bad` (marked bad with `evidence`), or, when
    /// `bad` is `None`, restarting `target` itself, which is live but hung.
    Restore { target: String, bad: Option<String>, evidence: String },
}

/// `rollback`: restore the last known good version, mark the bad one, record the incident.
/// Nothing to do (exit 0) when the environment runs its last known good, healthy, and no
/// failed check or triggered alert speaks against it.
pub fn rollback(ctx: &Ctx, req: &RollbackRequest<'_>) -> Result<Outcome> {
    let alert = req.datadog_payload.map(|p| crate::alert::read(ctx, p)).transpose()?;
    if let Some(a) = &alert
        && let Some(done) = alert_needs_nothing(ctx, a, req.env)?
    {
        return Ok(done);
    }
    let env = req.env.or(alert.as_ref().map(|a| a.env.as_str())).unwrap_or("production");
    ctx.config.environment(env)?;
    let ledger = ctx.ledger()?;
    if let Some(to) = req.to {
        let v = ledger.version(to)?.ok_or_else(|| usage!("--to {to}: unknown version"))?;
        if let Some(why) = &v.bad_reason {
            return Err(usage!("--to {to}: that version is marked bad ({why}); rollback never restores a bad version"));
        }
        // Only what is known good there, unless someone says why (a version that failed
        // staging once put in production and marked the live good one bad).
        if !ledger.known_good_in(env, to)? {
            let why = match ledger.failed_since_last_pass(env, to)? {
                Some(d) => format!("its newest verdict in {env} is a failure ({})", clip(&d, 120)),
                None => format!("it never passed a recorded check in {env}"),
            };
            match (req.force, req.reason) {
                (true, Some(_)) => ctx.ui.warn(format!("overriding: {to} is not known good in {env}: {why}")),
                (true, None) => return Err(usage!("--force: expected --reason (it is recorded)")),
                (false, _) => {
                    return Err(crate::error::Error::usage(format!(
                        "--to {to}: {to} is not known good in {env}: {why}"
                    ))
                    .with_hint("restore the last known good (no --to), or pass --force --reason to restore it anyway")
                    .into());
                }
            }
        }
    }
    let platform = ctx.platform()?;
    let (_lock, live) = take_env(ctx, &ledger, &*platform, env)?;
    let started = now_ms();
    let budget_before = Budget::now(&ctx.config.sla, &ledger)?;
    // An alert is evidence only once, and only against a version that was live when it fired.
    if let Some(a) = &alert
        && let Some(why) = alert_is_not_evidence(&ledger, env, live.as_ref(), a, started)?
    {
        ctx.ui.result(format!("{}: {why}; nothing to roll back", a.describe()));
        return Outcome::of(&Unchanged {
            env,
            changed: false,
            version: live.as_ref().map(|l| l.label.as_str()),
            budget: Some(budget_before),
            transition: Some(&a.transition),
        });
    }
    let alert_evidence = alert.as_ref().map(|a| a.describe());
    match decide(&ledger, env, live.as_ref(), req.to.map(|l| l.as_str()), alert_evidence)? {
        Decision::Nothing { target } => {
            reconcile(ctx, &ledger, env, &target, Action::Rollback)?;
            ctx.ui.result(format!("{env}: already runs its last known good version {target}; nothing to roll back"));
            Outcome::of(&Unchanged {
                env,
                changed: false,
                version: Some(&target),
                budget: Some(budget_before),
                transition: None,
            })
        }
        Decision::Restore { target, bad, evidence } => {
            let reason = req.reason.map(str::to_string).unwrap_or(evidence);
            let alerted = alert.as_ref().map(|a| (a.at.min(started), a.alert_id.as_str()));
            let r = Restoring { env, target: &target, bad: bad.as_deref(), reason: &reason, started, alerted };
            restore(ctx, &ledger, &*platform, r)
        }
    }
}

/// Why an alert is no evidence against what is live, if it is not: the same alert already
/// acted (a webhook delivered again), or it fired before the live version took traffic (it is
/// about the version before, or its date is wrong).
fn alert_is_not_evidence(
    ledger: &Ledger,
    env: &str,
    live: Option<&Live>,
    a: &crate::alert::Alert,
    now: Millis,
) -> Result<Option<String>> {
    if let Some(i) = ledger.incident_for_alert(&a.alert_id)? {
        return Ok(Some(format!(
            "this alert already acted: incident {} at {} replaced {}",
            i.id,
            rfc3339(i.detected_at),
            i.bad_label.as_deref().unwrap_or("-")
        )));
    }
    let Some(l) = live else { return Ok(None) };
    if let Some(took) = ledger.took_traffic(env, &l.label)?
        && a.at < took
        && a.at <= now
    {
        return Ok(Some(format!(
            "it fired at {}, before {} took traffic at {}: it is no evidence against {}",
            rfc3339(a.at),
            l.label,
            rfc3339(took),
            l.label
        )));
    }
    Ok(None)
}

/// An alert that asks for nothing: `Recovered`, a transition rollback does not act on
/// (`logs.alert_transitions`), or one for an environment outside the SLA's.
fn alert_needs_nothing(ctx: &Ctx, a: &crate::alert::Alert, env: Option<&str>) -> Result<Option<Outcome>> {
    if let Some(env) = env.filter(|e| *e != a.env) {
        return Err(usage!("--env {env} contradicts the alert, which is for {}", a.env));
    }
    let nothing = |why: String| {
        ctx.ui.result(why);
        let summary =
            Unchanged { env: &a.env, changed: false, version: None, budget: None, transition: Some(&a.transition) };
        Outcome::of(&summary).map(Some)
    };
    let acts_on = &ctx.config.logs.alert_transitions;
    if a.recovered() {
        return nothing(format!("{} recovered: nothing to roll back", a.describe()));
    }
    if !a.triggers(acts_on) {
        let names: Vec<&str> = acts_on.iter().map(|t| t.as_str()).collect();
        return nothing(format!("{}: rollback acts on {} only; nothing to roll back", a.describe(), names.join(", ")));
    }
    if !is_production(ctx, &a.env) {
        return nothing(format!(
            "{}: the alert is for {}; rollback on alerts acts on {} only",
            a.describe(),
            a.env,
            ctx.config.sla.environments.join(", ")
        ));
    }
    Ok(None)
}

/// What to restore, and why. A triggered alert, or a failed check of the live version since it
/// last passed, makes the live version suspect even when it is the last known good: it is
/// replaced by the known good before it. A live version that does not answer its health path
/// is restarted.
fn decide(
    ledger: &Ledger,
    env: &str,
    live: Option<&Live>,
    to: Option<&str>,
    alert: Option<String>,
) -> Result<Decision> {
    let evidence = match live {
        Some(l) => alert
            .or(ledger.failed_since_last_pass(env, &l.label)?.map(|d| format!("failed its check: {}", clip(&d, 200)))),
        None => None,
    };
    let good = ledger.last_known_good(env)?;
    let target = match (to, live, &good) {
        (Some(t), _, _) => t.to_string(),
        // The live version is the last known good, but the evidence is against it now.
        (None, Some(l), Some(g)) if &l.label == g && evidence.is_some() => {
            let why = evidence.as_deref().unwrap_or_default();
            match ledger.last_known_good_except(env, g)? {
                Some(previous) => previous,
                None => {
                    return Err(Error::could_not_act(format!(
                        "{g} is suspect ({why}), but there is no earlier known good version in {env} to restore; {g} stays, not marked bad"
                    ))
                    .with_hint(format!("rollback --env {env} --to LABEL restores a version by name"))
                    .into());
                }
            }
        }
        (None, _, Some(g)) => g.clone(),
        (None, _, None) => {
            return Err(Error::could_not_act(format!("no last known good version in {env} to roll back to"))
                .with_hint(format!("a version becomes known good when smoke-check --env {env} --record passes"))
                .into());
        }
    };
    Ok(match live {
        Some(l) if l.label == target && l.healthy && (evidence.is_none() || to.is_some()) => {
            Decision::Nothing { target }
        }
        Some(l) if l.label == target => Decision::Restore {
            evidence: format!("{target} was live but did not answer its health path; restarted"),
            target,
            bad: None,
        },
        Some(l) => Decision::Restore {
            evidence: evidence.unwrap_or_else(|| "rollback".into()),
            bad: Some(l.label.clone()),
            target,
        },
        None => Decision::Restore { target, bad: None, evidence: "nothing was running".into() },
    })
}

/// How many versions a rollback puts in front of users, each verified, before it gives up.
const MAX_RESTORES: usize = 3;

/// One restore under way.
struct Restoring<'a> {
    env: &'a str,
    target: &'a str,
    /// The version being replaced, marked bad; `None` when `target` itself is restarted.
    bad: Option<&'a str>,
    reason: &'a str,
    started: Millis,
    /// When the alert that asked for this fired (never later than now), and its id, if one did.
    alerted: Option<(Millis, &'a str)>,
}

/// Marks the bad version, opens the incident (or takes over the one a stopped run left open),
/// puts `target` in front of users and closes the incident at the switch.
fn restore(ctx: &Ctx, ledger: &Ledger, platform: &dyn Platform, r: Restoring<'_>) -> Result<Outcome> {
    let Restoring { env, target, bad, reason, started, alerted } = r;
    match bad {
        Some(b) => ctx.ui.status(format!("{env}: rolling back {b} → {target}")),
        None => ctx.ui.status(format!("{env}: restoring {target} ({reason})")),
    }
    // The layer that acted: an alert, a failing check of the bad version, the live version
    // not answering (restarted), or a person: on their own word for a version with no verdict
    // there, or as a planned change away from one known good (which condemns and charges
    // nothing).
    let cause = match (alerted, bad) {
        (Some(_), _) => Cause::Alert,
        (None, Some(b)) if ledger.failed_since_last_pass(env, b)?.is_some() => Cause::Smoke,
        (None, Some(b)) if ledger.known_good_in(env, b)? => Cause::Planned,
        (None, Some(_)) => Cause::ByHand,
        (None, None) => Cause::Health,
    };
    if let Some(b) = bad.filter(|_| cause != Cause::Planned) {
        ledger.mark_bad(b, reason)?;
    }
    // The exposure clock: users met the bad version from its switch, unless it passed a check
    // after that (then from its first failing verdict). Nothing is detected before it took
    // traffic.
    let took_traffic = match bad {
        Some(b) => ledger.took_traffic(env, b)?,
        None => None,
    };
    let detected = match alerted {
        Some((at, _)) => at,
        None => detected_at(ledger, env, bad, started)?,
    };
    let detected = took_traffic.map_or(detected, |t| detected.max(t)).min(started);
    let charged_from = match (bad, took_traffic) {
        (Some(b), Some(t)) if !ledger.passed_since(env, b, t)? => t,
        _ => detected,
    };
    let incident =
        match ledger.open_incidents(env)?.into_iter().rev().find(|i| i.bad_label.as_deref() == bad.or(Some(target))) {
            Some(open) => open.id,
            None => ledger.open_incident(&Incident {
                id: 0,
                env: env.to_string(),
                bad_label: Some(bad.unwrap_or(target).to_string()),
                restored_label: Some(target.to_string()),
                detected_at: detected,
                restored_at: None,
                downtime_ms: None,
                reason: Some(reason.to_string()),
                took_traffic_at: took_traffic,
                rollback_started_at: Some(started),
                charged_from: Some(charged_from),
                share_percent: None,
                cause: Some(cause.as_str().into()),
                alert_id: alerted.map(|(_, id)| id.to_string()),
            })?,
        };
    // Restored means served again: after the switch the smoke chains run against the
    // environment's own address. A restored version that fails them is not restored: its
    // failure is recorded, the incident stays open, and the next older known good version is
    // tried, at most MAX_RESTORES in all.
    let mut tried: Vec<String> = vec![];
    let mut target = target.to_string();
    let (switched, verified_at) = loop {
        let replacing = tried.last().map(String::as_str).or(bad);
        let step = Step {
            env,
            label: &target,
            action: Action::Rollback,
            previous: replacing,
            reason: Some(reason),
            pre: None,
            canary: None,
        };
        let switched = deploy_recorded(ctx, ledger, platform, step).map_err(|e| {
            Error::could_not_act(format!("restoring {target} in {env} failed; the incident stays open")).caused_by(e)
        })?;
        if ctx.dry_run {
            ctx.ui.plan(format!("# would run the smoke chains against {env} to verify {target} serves its users"));
            break (switched, switched.at);
        }
        match crate::smoke::verify_restored(ctx, env, &target)? {
            None => {
                let at = now_ms();
                ledger.record_verification(env, &target, true, "all checks passed after a restore")?;
                break (switched, at);
            }
            Some(why) => {
                ledger.record_verification(env, &target, false, &format!("failed after a restore: {why}"))?;
                ctx.ui.warn(format!("{env}: {target} was switched to but fails its checks: {why}"));
                tried.push(target.clone());
                let except: Vec<&str> = tried.iter().map(String::as_str).chain(bad).collect();
                let next = ledger.known_good_except(env, &except)?;
                match next.filter(|_| tried.len() < MAX_RESTORES) {
                    Some(n) => {
                        ctx.ui.status(format!("{env}: trying the known good version before it, {n}"));
                        target = n;
                    }
                    None => {
                        return Err(Error::verdict(format!(
                            "{env} is not served: restored {} but {} failed its checks ({why}); no further known good version to try; the incident stays open",
                            tried.join(", then "),
                            if tried.len() == 1 { "it" } else { "each" }
                        ))
                        .with_hint(format!("rollback --env {env} --to LABEL --force --reason TEXT restores a version by name"))
                        .into());
                    }
                }
            }
        }
    };
    let target = target.as_str();
    ledger.close_incident(incident, target, switched.at, None)?;
    let restored = switched.at;
    let downtime = if cause == Cause::Planned { 0 } else { (restored - charged_from).max(0) };
    let budget_after = Budget::now(&ctx.config.sla, ledger)?;
    if !ctx.dry_run {
        let from = match took_traffic {
            _ if cause == Cause::Planned => format!(
                "a planned rollback: {} is known good here, with no failing verdict and no alert, so nothing is charged",
                bad.unwrap_or("-")
            ),
            Some(t) if t == charged_from => format!("from when {} took traffic, {}", bad.unwrap_or("-"), rfc3339(t)),
            _ => format!("from the first failing verdict, {}", rfc3339(charged_from)),
        };
        ctx.ui.result(format!(
            "{env}: {target} restored in {} (time to restore: switched); its checks passed {} later (verified); users exposed for {} ({from}, to {target} serving again)",
            human(restored - started),
            human((verified_at - restored).max(0)),
            human(downtime),
        ));
        ctx.ui.result(budget_after.line());
    }
    Outcome::of(&RolledBack {
        env,
        changed: true,
        bad_version: bad,
        restored_version: target,
        time_to_restore_ms: restored - started,
        verified_ms: (verified_at - started).max(0),
        tried: tried.iter().map(String::as_str).collect(),
        downtime_ms: downtime,
        took_traffic_at: took_traffic.map(rfc3339),
        detected_at: rfc3339(detected),
        rollback_started_at: rfc3339(started),
        restored_at: rfc3339(restored),
        budget: budget_after,
        dry_run: ctx.dry_run,
    })
}

/// When the bad version was first seen failing: its first failed check since its deployment,
/// else its deployment; a restart of a hung version is detected now.
fn detected_at(ledger: &Ledger, env: &str, bad: Option<&str>, now: Millis) -> Result<Millis> {
    let (Some(b), Some(d)) = (bad, ledger.live_deployment(env)?) else { return Ok(now) };
    if d.label != b {
        return Ok(now);
    }
    Ok(ledger.first_failure_since(env, b, d.started_at)?.unwrap_or(d.started_at))
}

/// At most `n` characters of `text`, marked when cut.
fn clip(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(n).collect::<String>())
    }
}
