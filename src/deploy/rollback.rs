//! rollback: what to restore and why, the verified restore (restored means served), and the
//! incident with its exposure clock.

use super::*;
use crate::rules;

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
        may_restore(ctx, &ledger, env, to, req)?;
    }
    let session = Session::open(ctx, ledger, ctx.platform()?, env)?;
    let (ledger, live) = (&session.ledger, session.live.clone());
    let started = now_ms();
    let budget_before = Budget::now(&ctx.config.sla, ledger)?;
    // An alert is evidence only once, and only against a version that was live when it fired.
    if let Some(a) = &alert
        && let Some(why) = alert_is_not_evidence(ledger, env, live.as_ref(), a, started)?
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
    match decide(ledger, env, live.as_ref(), req.to.map(|l| l.as_str()), alert_evidence)? {
        Decision::Nothing { target } => {
            session.reconcile(&target, Action::Rollback)?;
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
            if let Some(b) = bad.as_deref() {
                rehearsed(ctx, ledger, env, (b, &target), req)?;
            }
            let reason = req.reason.map(str::to_string).unwrap_or(evidence);
            let alerted = alert.as_ref().map(|a| (a.at.min(started), a.alert_id.as_str()));
            let r = Restoring { target: &target, bad: bad.as_deref(), reason: &reason, started, alerted };
            restore(&session, r)
        }
    }
}

/// `--to LABEL`: a version that exists, is not marked bad, and is known good in `env` (or
/// restored anyway on `--force --reason`).
fn may_restore(ctx: &Ctx, ledger: &Ledger, env: &str, to: &Label, req: &RollbackRequest<'_>) -> Result<()> {
    let Some(v) = ledger.version(to)? else {
        return Err(crate::error::Error::usage(format!("--to {to}: unknown version"))
            .with_hint(ledger.unknown_version_hint()?)
            .into());
    };
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
                return Err(crate::error::Error::usage(format!("--to {to}: {to} is not known good in {env}: {why}"))
                    .with_hint("restore the last known good (no --to), or pass --force --reason to restore it anyway")
                    .into());
            }
        }
    }
    Ok(())
}

/// A version whose release ran here: what its rehearsal said of a rollback from it to `target`.
/// A failed rehearsal refuses the rollback (a roll forward is what is possible), unless a
/// person names the version and says why.
fn rehearsed(
    ctx: &Ctx,
    ledger: &Ledger,
    env: &str,
    (b, target): (&str, &str),
    req: &RollbackRequest<'_>,
) -> Result<()> {
    match ledger.rehearsal(b, target)? {
        Some((false, detail, rehearsed_in)) if !(req.to.is_some() && req.reason.is_some()) => Err(Error::could_not_act(
            format!(
                "a rollback from {b} to {target} would fail (rehearsed in {rehearsed_in}: {}); only a roll forward is possible",
                clip(&detail, 300)
            ),
        )
        .with_hint(format!(
            "deploy a fixed version (deploy-staging, then promote), or restore it anyway: rollback --env {env} --to {target} --reason TEXT"
        ))
        .into()),
        None if ledger.released_in(env, b)?.is_some() => {
            ctx.ui.warn(format!(
                "{env}: {b} ran a release here and a rollback to {target} was never rehearsed; the restore is verified"
            ));
            Ok(())
        }
        _ => Ok(()),
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
    let acted = ledger.incident_for_alert(&a.alert_id)?;
    let took = match live {
        Some(l) => ledger.took_traffic(env, &l.label)?,
        None => None,
    };
    match rules::alert_evidence(acted.is_some(), a.at, took, now) {
        Some(rules::NoEvidence::AlreadyActed) => {
            let i = acted.expect("the incident it acted in");
            return Ok(Some(format!(
                "this alert already acted: incident {} at {} replaced {}",
                i.id,
                rfc3339(i.detected_at),
                i.bad_label.as_deref().unwrap_or("-")
            )));
        }
        Some(rules::NoEvidence::BeforeTraffic) => {
            let label = live.map(|l| l.label.as_str()).unwrap_or("-");
            return Ok(Some(format!(
                "it fired at {}, before {label} took traffic at {}: it is no evidence against {label}",
                rfc3339(a.at),
                took.map(rfc3339).unwrap_or_default()
            )));
        }
        None => {}
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
    let before = match (live, &good) {
        (Some(l), Some(g)) if &l.label == g && evidence.is_some() => ledger.last_known_good_except(env, g)?,
        _ => None,
    };
    let live_now = live.map(|l| (l.label.as_str(), l.healthy));
    Ok(match rules::rollback_target(live_now, evidence.is_some(), to, good.as_deref(), before.as_deref()) {
        rules::Target::Nothing(t) => Decision::Nothing { target: t.to_string() },
        rules::Target::Restart(t) => Decision::Restore {
            evidence: format!("{t} was live but did not answer its health path; restarted"),
            target: t.to_string(),
            bad: None,
        },
        rules::Target::Replace { target, bad } => Decision::Restore {
            evidence: evidence.unwrap_or_else(|| "rollback".into()),
            bad: Some(bad.to_string()),
            target: target.to_string(),
        },
        rules::Target::Start(t) => {
            Decision::Restore { target: t.to_string(), bad: None, evidence: "nothing was running".into() }
        }
        rules::Target::NoEarlier(g) => {
            let why = evidence.as_deref().unwrap_or_default();
            return Err(Error::could_not_act(format!(
                "{g} is suspect ({why}), but there is no earlier known good version in {env} to restore; {g} stays, not marked bad"
            ))
            .with_hint(format!("rollback --env {env} --to LABEL restores a version by name"))
            .into());
        }
        rules::Target::NoneKnown => {
            return Err(Error::could_not_act(format!("no last known good version in {env} to roll back to"))
                .with_hint(format!("a version becomes known good when smoke-check --env {env} --record passes"))
                .into());
        }
    })
}

/// How many versions a rollback puts in front of users, each verified, before it gives up.
const MAX_RESTORES: usize = 3;

/// One restore under way.
struct Restoring<'a> {
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
fn restore(session: &Session<'_>, r: Restoring<'_>) -> Result<Outcome> {
    let (ctx, ledger, env) = (session.ctx, &session.ledger, session.env);
    let Restoring { bad, started, .. } = r;
    match bad {
        Some(b) => ctx.ui.status(format!("{env}: rolling back {b} → {}", r.target)),
        None => ctx.ui.status(format!("{env}: restoring {} ({})", r.target, r.reason)),
    }
    let Exposure { cause, took_traffic, detected, charged_from, incident } = open_incident(session, &r)?;
    let Served { switched, verified_at, target, tried } = serve_known_good(session, &r)?;
    let target = target.as_str();
    ledger.close_incident(incident, target, switched.at, None)?;
    close_release_incidents(ledger, env, target, switched.at)?;
    let restored = switched.at;
    let downtime = rules::downtime(cause, charged_from, restored, None);
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

/// What users met of the bad version, as the incident records it.
struct Exposure {
    /// The layer that acted (crate::rules).
    cause: Cause,
    took_traffic: Option<Millis>,
    detected: Millis,
    /// Where the downtime charged to the budget starts.
    charged_from: Millis,
    /// The incident's id.
    incident: i64,
}

/// Marks the replaced version bad when the layer that acted condemns it, and opens the incident
/// with its exposure clock (or takes over the one a stopped run left open).
fn open_incident(session: &Session<'_>, r: &Restoring<'_>) -> Result<Exposure> {
    let (ledger, env) = (&session.ledger, session.env);
    let Restoring { target, bad, reason, started, alerted } = *r;
    // The layer that acted, and whether the replaced version is condemned (crate::rules).
    let replaced = match bad {
        Some(b) => Some(rules::Replaced {
            failing: ledger.failed_since_last_pass(env, b)?.is_some(),
            known_good: ledger.known_good_in(env, b)?,
        }),
        None => None,
    };
    let cause = rules::cause(alerted.is_some(), replaced);
    if let Some(b) = bad.filter(|_| rules::condemns(cause)) {
        ledger.mark_bad(b, reason)?;
    }
    // The exposure clock: users met the bad version from its switch, unless it passed a check
    // after that (then from its first failing verdict). Nothing is detected before it took
    // traffic.
    let took_traffic = match bad {
        Some(b) => ledger.took_traffic(env, b)?,
        None => None,
    };
    let detected =
        rules::detected(alerted.map(|(at, _)| at), detected_at(ledger, env, bad, started)?, took_traffic, started);
    let passed_since = match (bad, took_traffic) {
        (Some(b), Some(t)) => ledger.passed_since(env, b, t)?,
        _ => false,
    };
    let charged_from = rules::charged_from(took_traffic, passed_since, detected);
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
    Ok(Exposure { cause, took_traffic, detected, charged_from, incident })
}

/// The version that serves again, verified by its checks, and those tried before it.
struct Served {
    switched: crate::platform::Switched,
    verified_at: Millis,
    target: String,
    tried: Vec<String>,
}

/// Restored means served again: after the switch the smoke chains run against the
/// environment's own address. A restored version that fails them is not restored: its
/// failure is recorded, the incident stays open, and the next older known good version is
/// tried, at most MAX_RESTORES in all.
fn serve_known_good(session: &Session<'_>, r: &Restoring<'_>) -> Result<Served> {
    let (ctx, ledger, env) = (session.ctx, &session.ledger, session.env);
    let Restoring { bad, reason, .. } = *r;
    let mut tried: Vec<String> = vec![];
    let mut target = r.target.to_string();
    let (switched, verified_at) = loop {
        let replacing = tried.last().map(String::as_str).or(bad);
        let step = Step {
            label: &target,
            action: Action::Rollback,
            previous: replacing,
            reason: Some(reason),
            pre: None,
            canary: None,
        };
        let switched = session.deploy(step).and_then(|d| d.live_or_verdict(&target, env)).map_err(|e| {
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
    Ok(Served { switched, verified_at, target, tried })
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
