//! deploy-staging, promote and rollback: the three ways a version reaches an environment,
//! sharing one path — take the environment's lock, close what a killed run left open, deploy
//! through the platform, record the outcome in the ledger — and the SLA budget they report.

use crate::bundle;
use crate::clock::{Millis, human, now_ms, rfc3339};
use crate::config::validate_label;
use crate::context::Ctx;
use crate::error::{Error, Kind, kind_of};
use crate::ledger::{Incident, Ledger, Version};
use crate::lock;
use crate::platform::Platform;
use crate::{Outcome, usage};
use anyhow::Result;
use serde_json::json;

/// One deployment as the ledger records it.
struct Step<'a> {
    env: &'a str,
    label: &'a str,
    action: &'a str,
    previous: Option<&'a str>,
    reason: Option<&'a str>,
}

/// Deploys `env` with `label` and records the deployment; the lock must be held.
fn deploy_recorded(ctx: &Ctx, ledger: &Ledger, platform: &dyn Platform, step: Step<'_>) -> Result<()> {
    let Step { env, label, action, previous, reason } = step;
    let environment = ctx.config.environment(env)?;
    if !ctx.dry_run {
        ledger.adopt(label)?;
    }
    let id = ledger.begin_deployment(env, label, action, previous, reason)?;
    match platform.deploy(environment, label) {
        Ok(()) => {
            ledger.finish_deployment(id, true, "healthy")?;
            Ok(())
        }
        Err(e) => {
            ledger.finish_deployment(id, false, &e.to_string())?;
            Err(e)
        }
    }
}

/// `label` serves `env` (the platform says so) but the ledger's last healthy deployment there
/// is another: a run was killed after switching and before recording it. Record the truth.
fn reconcile(ctx: &Ctx, ledger: &Ledger, env: &str, label: &str, action: &str) -> Result<()> {
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

fn take_lock(ctx: &Ctx, env: &str, ledger: &Ledger) -> Result<Option<lock::EnvLock>> {
    let held = lock::acquire(&ctx.state_dir, env, ctx.ui.tool, ctx.dry_run)?;
    let stale = ledger.abandon_stale(env)?;
    if stale > 0 {
        ctx.ui.warn(format!("{env}: closed {stale} deployment(s) left open by a run that was stopped"));
    }
    Ok(held)
}

/// `deploy-staging`: bundle the commit, register the version, deploy it, wait until healthy.
pub fn deploy_staging(ctx: &Ctx, label: &str, rev: &str, env: &str) -> Result<Outcome> {
    validate_label(label)?;
    ctx.config.environment(env)?;
    let commit = bundle::resolve_commit(ctx, rev)?;
    let ledger = ctx.ledger()?;
    let platform = ctx.platform()?;
    ctx.ui.status(format!("{env}: deploying {label} (commit {})", crate::git::short(&commit)));
    let _lock = take_lock(ctx, env, &ledger)?;
    platform.tidy(ctx.config.environment(env)?)?;
    let started = now_ms();

    let version = match ledger.version(label)? {
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
            v
        }
        None => {
            let checksum = bundle::build(ctx, label, &commit)?.unwrap_or_default();
            Version {
                label: label.to_string(),
                commit: commit.clone(),
                checksum,
                bundle: bundle::path(ctx, label)?.to_string_lossy().into_owned(),
                created_at: now_ms(),
                bad_at: None,
                bad_reason: None,
            }
        }
    };
    let known = ledger.version(label)?.is_some();
    if let Err(e) = platform.register(&version, &bundle::path(ctx, label)?) {
        if !known {
            bundle::discard(ctx, label)?;
        }
        return Err(e);
    }
    if !known {
        ledger.record_version(&version)?;
    }
    let previous = platform.live(ctx.config.environment(env)?)?.map(|l| l.label);
    deploy_recorded(
        ctx,
        &ledger,
        &*platform,
        Step { env, label, action: "deploy", previous: previous.as_deref(), reason: None },
    )?;
    let took = now_ms() - started;
    if !ctx.dry_run {
        ctx.ui.result(format!("{env}: {label} is live and healthy ({} after the lock)", human(took)));
    }
    Ok(Outcome::ok(json!({
        "env": env, "version": label, "commit": commit, "previous": previous,
        "duration_ms": took, "dry_run": ctx.dry_run,
    })))
}

/// The SLA budget: allowed downtime per period, and what the incidents recorded in it spent.
pub fn budget(ctx: &Ctx, ledger: &Ledger) -> Result<serde_json::Value> {
    let sla = &ctx.config.sla;
    let from = sla.period.start(now_ms());
    let incidents = ledger.incidents(&sla.environments, from)?;
    Ok(budget_of(ctx, from, &incidents))
}

fn budget_of(ctx: &Ctx, from: Millis, incidents: &[Incident]) -> serde_json::Value {
    let sla = &ctx.config.sla;
    let allowed = sla.allowed_downtime.0.as_millis() as i64;
    let used: i64 = incidents.iter().filter_map(|i| i.downtime_ms).sum();
    json!({
        "period": sla.period.describe(), "from": rfc3339(from), "environments": sla.environments,
        "allowed_ms": allowed, "used_ms": used, "left_ms": (allowed - used).max(0), "spent": used >= allowed,
        "incidents": incidents.len(),
    })
}

/// `--budget`: the SLA budget report — every incident of the period with its downtime, the
/// total, and what is left. Reads only; without a ledger there is nothing spent.
pub fn budget_report(ctx: &Ctx) -> Result<Outcome> {
    let sla = &ctx.config.sla;
    let from = sla.period.start(now_ms());
    let incidents = if ctx.state_dir.join("ledger.sqlite3").exists() {
        ctx.ledger()?.incidents(&sla.environments, from)?
    } else {
        vec![]
    };
    let mut report = budget_of(ctx, from, &incidents);
    ctx.ui.result(budget_line(&report));
    for i in &incidents {
        ctx.ui.result(format!(
            "  {} {}: {} → {}, downtime {}{}",
            rfc3339(i.detected_at),
            i.env,
            i.bad_label.as_deref().unwrap_or("(nothing)"),
            i.restored_label.as_deref().unwrap_or("(not restored)"),
            i.downtime_ms.map(human).unwrap_or_else(|| "unknown".into()),
            i.reason.as_deref().map(|r| format!(" — {r}")).unwrap_or_default()
        ));
    }
    report["incidents"] = serde_json::to_value(&incidents)?;
    Ok(Outcome::ok(report))
}

fn budget_line(b: &serde_json::Value) -> String {
    let ms = |k: &str| b[k].as_i64().unwrap_or(0);
    format!(
        "SLA budget ({} since {}): {} used of {}, {} left",
        b["period"].as_str().unwrap_or(""),
        b["from"].as_str().map(|f| &f[..10.min(f.len())]).unwrap_or(""),
        human(ms("used_ms")),
        human(ms("allowed_ms")),
        human(ms("left_ms"))
    )
}

pub struct PromoteRequest<'a> {
    pub version: Option<&'a str>,
    pub from: &'a str,
    pub to: &'a str,
    pub force: bool,
    pub reason: Option<&'a str>,
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
    if let Some(l) = req.version {
        validate_label(l)?;
    }
    let ledger = ctx.ledger()?;
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
    let budget_now = budget(ctx, &ledger)?;
    let mut refusals = vec![];
    if !ledger.verified_in(from, &label)? {
        refusals.push(format!("{label} has not passed the smoke checks in {from}"));
    }
    if let Some(why) = &version.bad_reason {
        refusals.push(format!("{label} is marked bad ({why})"));
    }
    if budget_now["spent"].as_bool() == Some(true) {
        refusals.push(format!("the SLA budget is spent ({})", budget_line(&budget_now)));
    }
    if !refusals.is_empty() {
        if !req.force {
            return Err(Error::verdict(format!("refusing to promote {label} to {to}: {}", refusals.join("; ")))
                .with_hint("override with --force --reason TEXT (recorded in the ledger)")
                .into());
        }
        ctx.ui.warn(format!("overriding: {} — reason: {}", refusals.join("; "), req.reason.unwrap_or_default()));
    }

    let platform = ctx.platform()?;
    let _lock = take_lock(ctx, to, &ledger)?;
    platform.tidy(to_env)?;
    let live = platform.live(to_env)?;
    if let Some(l) = &live
        && l.label == label
        && l.running
    {
        reconcile(ctx, &ledger, to, &label, "promote")?;
        ctx.ui.result(format!("{to}: {label} is already live; nothing to promote"));
        return Ok(Outcome::ok(json!({"env": to, "version": label, "changed": false, "budget": budget_now})));
    }
    let previous = live.as_ref().map(|l| l.label.clone());
    platform.register(&version, std::path::Path::new(&version.bundle))?;
    ctx.ui.status(format!(
        "{to}: promoting {label} from {from} (replacing {})",
        previous.as_deref().unwrap_or("nothing")
    ));
    let started = now_ms();
    let result = deploy_recorded(
        ctx,
        &ledger,
        &*platform,
        Step { env: to, label: &label, action: "promote", previous: previous.as_deref(), reason: req.reason },
    );
    match result {
        Ok(()) => {
            if !ctx.dry_run {
                ctx.ui.result(format!("{to}: {label} is live and healthy ({})", human(now_ms() - started)));
                ctx.ui.result(budget_line(&budget_now));
            }
            Ok(Outcome::ok(json!({
                "env": to, "version": label, "previous": previous, "changed": true,
                "duration_ms": now_ms() - started, "budget": budget_now, "dry_run": ctx.dry_run,
            })))
        }
        Err(e) if kind_of(&e) == Kind::Verdict => {
            ctx.ui.status(format!("{to}: {label} did not become healthy"));
            ledger.mark_bad(&label, &format!("did not become healthy in {to}"))?;
            // Blue/green: the version failed on the standby before any swap; users never saw it.
            if let Some(l) = platform.live(to_env)?
                && previous.as_deref() == Some(l.label.as_str())
                && l.running
            {
                return Err(Error::verdict(format!(
                    "{label} did not become healthy in {to} and never served its users: {} still does",
                    l.label
                ))
                .caused_by(e));
            }
            let Some(prev) = previous.filter(|p| p != &label) else {
                return Err(Error::verdict(format!(
                    "{label} did not become healthy in {to}, and there is no previous version to put back: {to} is stopped"
                )).caused_by(e));
            };
            ctx.ui.status(format!("{to}: putting {prev} back"));
            let step = Step {
                env: to,
                label: &prev,
                action: "restore",
                previous: Some(&label),
                reason: Some("promote failed"),
            };
            deploy_recorded(ctx, &ledger, &*platform, step).map_err(|r| {
                Error::could_not_act(format!("{label} failed in {to} and restoring {prev} failed too")).caused_by(r)
            })?;
            let restored = now_ms();
            ledger.record_incident(&Incident {
                id: 0,
                env: to.to_string(),
                bad_label: Some(label.clone()),
                restored_label: Some(prev.clone()),
                detected_at: started,
                restored_at: Some(restored),
                downtime_ms: Some(restored - started),
                reason: Some(format!("promote of {label} did not become healthy")),
            })?;
            Err(Error::verdict(format!(
                "{label} did not become healthy in {to}; {prev} is back, {} of downtime",
                human(restored - started)
            ))
            .caused_by(e))
        }
        Err(e) => Err(e),
    }
}

pub struct RollbackRequest<'a> {
    /// Default: production, or the environment of the Datadog alert.
    pub env: Option<&'a str>,
    pub to: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub datadog_payload: Option<&'a std::path::Path>,
}

/// `rollback`: restore the last known good version, mark the bad one, record the incident.
/// Nothing to do (exit 0) when the environment already runs its last known good.
pub fn rollback(ctx: &Ctx, req: &RollbackRequest<'_>) -> Result<Outcome> {
    let alert = req.datadog_payload.map(|p| crate::alert::read(ctx, p)).transpose()?;
    let alert_reason = alert.as_ref().map(|a| a.describe());
    if let Some(a) = &alert {
        if a.recovered() {
            ctx.ui.result(format!("{} recovered: nothing to roll back", a.describe()));
            return Ok(Outcome::ok(json!({"env": a.env, "changed": false, "recovered": true})));
        }
        if let Some(env) = req.env.filter(|e| *e != a.env) {
            return Err(usage!("--env {env} contradicts the alert, which is for {}", a.env));
        }
        if !ctx.config.sla.environments.contains(&a.env) {
            ctx.ui.result(format!(
                "{}: the alert is for {}; rollback on alerts acts on {} only",
                a.describe(),
                a.env,
                ctx.config.sla.environments.join(", ")
            ));
            return Ok(Outcome::ok(json!({"env": a.env, "changed": false})));
        }
    }
    let env = req.env.or(alert.as_ref().map(|a| a.env.as_str())).unwrap_or("production");
    let reason = req.reason.or(alert_reason.as_deref());
    let environment = ctx.config.environment(env)?;
    if let Some(to) = req.to {
        validate_label(to)?;
    }
    let ledger = ctx.ledger()?;
    if let Some(to) = req.to {
        let v = ledger.version(to)?.ok_or_else(|| usage!("--to {to}: unknown version"))?;
        if let Some(why) = &v.bad_reason {
            return Err(usage!("--to {to}: that version is marked bad ({why}); rollback never restores a bad version"));
        }
    }
    let platform = ctx.platform()?;
    let _lock = take_lock(ctx, env, &ledger)?;
    platform.tidy(environment)?;
    let started = now_ms();
    let live = platform.live(environment)?;
    let bad_deploy = ledger.live_deployment(env)?;
    let target = match req.to {
        Some(t) => t.to_string(),
        None => match ledger.last_known_good(env)? {
            Some(t) => t,
            None => {
                return Err(Error::could_not_act(format!("no last known good version in {env} to roll back to"))
                    .with_hint(format!("a version becomes known good when smoke-check --env {env} --record passes"))
                    .into());
            }
        },
    };
    let budget_before = budget(ctx, &ledger)?;
    if let Some(l) = &live
        && l.label == target
        && l.running
    {
        reconcile(ctx, &ledger, env, &target, "rollback")?;
        ctx.ui.result(format!("{env}: already runs its last known good version {target}; nothing to roll back"));
        return Ok(Outcome::ok(json!({"env": env, "changed": false, "version": target, "budget": budget_before})));
    }
    let bad = live.as_ref().map(|l| l.label.clone()).filter(|l| l != &target);
    let reason = reason.unwrap_or("rollback");
    match &bad {
        Some(b) => ctx.ui.status(format!("{env}: rolling back {b} → {target}")),
        None => ctx.ui.status(format!("{env}: {target} is not running; restoring it")),
    }
    if let Some(b) = &bad {
        ledger.mark_bad(b, reason)?;
    }
    let step = Step { env, label: &target, action: "rollback", previous: bad.as_deref(), reason: Some(reason) };
    deploy_recorded(ctx, &ledger, &*platform, step)
        .map_err(|e| Error::could_not_act(format!("restoring {target} in {env} failed")).caused_by(e))?;
    let restored = now_ms();
    let detected: Millis = match (&bad, &bad_deploy) {
        (Some(b), Some(d)) if &d.label == b => {
            ledger.first_failure_since(env, b, d.started_at)?.unwrap_or(d.started_at)
        }
        _ => started,
    };
    let downtime = restored - detected;
    ledger.record_incident(&Incident {
        id: 0,
        env: env.to_string(),
        bad_label: bad.clone(),
        restored_label: Some(target.clone()),
        detected_at: detected,
        restored_at: Some(restored),
        downtime_ms: Some(downtime),
        reason: Some(reason.to_string()),
    })?;
    let budget_after = if ctx.dry_run { budget_before } else { budget(ctx, &ledger)? };
    if !ctx.dry_run {
        ctx.ui.result(format!(
            "{env}: {target} restored in {} (time to restore); incident downtime {} (detected {})",
            human(restored - started),
            human(downtime),
            rfc3339(detected)
        ));
        ctx.ui.result(budget_line(&budget_after));
    }
    Ok(Outcome::ok(json!({
        "env": env, "changed": true, "bad_version": bad, "restored_version": target,
        "time_to_restore_ms": restored - started, "downtime_ms": downtime,
        "detected_at": rfc3339(detected), "restored_at": rfc3339(restored),
        "budget": budget_after, "dry_run": ctx.dry_run,
    })))
}
