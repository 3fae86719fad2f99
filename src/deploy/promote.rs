//! promote: exactly the bundle that passed in staging, checked before it takes traffic, through
//! an optional canary; a failed promote marks the version bad and puts the previous one back.

use super::*;

/// promote's `--json` document.
#[derive(Serialize)]
struct Promoted<'a> {
    env: &'a str,
    version: &'a str,
    previous: Option<String>,
    changed: bool,
    duration_ms: Option<Millis>,
    budget: Budget,
    /// The release that ran before the switch, if one did.
    release: Option<ReleaseSummary>,
    dry_run: bool,
}

pub struct PromoteRequest<'a> {
    pub version: Option<&'a Label>,
    pub from: &'a str,
    pub to: &'a str,
    pub force: bool,
    pub reason: Option<&'a str>,
    /// Deploy without checking the candidate before traffic, for this recorded reason.
    pub skip_pre_traffic: Option<&'a str>,
    /// Promote though a rehearsed rollback from it would fail, for this recorded reason.
    pub accept_irreversible: Option<&'a str>,
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
    let to_env = checked(ctx, req)?;
    // The checks the candidate meets before traffic need their variables now, not mid-deploy.
    crate::smoke::pre_traffic_ready(ctx)?;
    let ledger = ctx.ledger()?;
    let (version, budget_now) = promotable(ctx, &ledger, req)?;
    let label = version.label.clone();
    let platform = ctx.platform()?;
    if let Some(c) = req.canary {
        platform.can_canary(to_env, c.bake)?;
    }
    let session = Session::open(ctx, ledger, platform, to)?;
    if let Some(l) = session.live.as_ref().filter(|l| l.label == label && l.healthy) {
        session.reconcile(&l.label, Action::Promote)?;
        ctx.ui.result(format!("{to}: {label} is already live; nothing to promote"));
        let summary = Promoted {
            env: to,
            version: &label,
            previous: None,
            changed: false,
            duration_ms: None,
            budget: budget_now,
            release: None,
            dry_run: ctx.dry_run,
        };
        return Outcome::of(&summary);
    }
    let previous = session.live_label();
    session.platform.register(&version, std::path::Path::new(&version.bundle))?;
    ctx.ui.status(format!(
        "{to}: promoting {label} from {from} (replacing {})",
        previous.as_deref().unwrap_or("nothing")
    ));
    let started = now_ms();
    // Before traffic: the smoke chains against the candidate's own address. A failure there
    // never reached a user.
    let check = |base: &str| crate::smoke::pre_traffic(ctx, to, &label, base);
    let (reason, skipped) = reasons(req);
    if let Some(s) = &skipped {
        ctx.ui.warn(format!("{to}: {s}"));
    }
    let pre: Option<&crate::platform::PreTraffic<'_>> = if skipped.is_some() { None } else { Some(&check) };
    // Each canary round: the smoke chains against the candidate's own address (every check
    // shown in the first round, then only failures) and the Datadog monitors.
    let first_round = std::cell::Cell::new(true);
    let began = crate::clock::now_ms();
    let stable = previous.clone();
    let round = |base: &str| {
        crate::smoke::canary_round(ctx, to, (&label, stable.as_deref()), base, first_round.replace(false), began)
    };
    let canary = req.canary.map(|c| canary_of(ctx, c, &round));
    let step = Step {
        label: &label,
        action: Action::Promote,
        previous: previous.as_deref(),
        reason: reason.as_deref(),
        pre,
        canary: canary.as_ref(),
    };
    let ended = session.deploy(step)?;
    // Users met the change before it took traffic: the version they were served broke while the
    // candidate's release or start ran. That is an incident from then, whatever follows.
    let broke = match &ended.broke_live {
        Some(b) => Some((b.clone(), broke_live(&session, &label, b)?)),
        None => None,
    };
    if let (Some((b, _)), false) = (&broke, matches!(ended.deployed, Deployed::Live(_))) {
        return Err(neither_serves(&session, &label, b, ended.deployed));
    }
    match ended.deployed {
        Deployed::StoppedBeforeTraffic(e) => {
            Err(stopped_before_traffic(&session, &label, previous.as_deref(), ended.watched, &e))
        }
        Deployed::ReleaseFailed(r) => Err(release_failed(&session, &label, previous.as_deref(), ended.watched, &r)),
        Deployed::CanaryAborted(a) => Err(canary_failed(&session, &label, previous.as_deref(), a)),
        Deployed::Live(switched) => {
            let live = Live { label: &label, previous, started, budget: budget_now, broke, switched };
            promoted(&session, req, live, ended.released.as_ref())
        }
        Deployed::Unhealthy(e) => {
            let failed = Failed { label: &label, previous, started };
            Err(promote_failed(&session, failed, e))
        }
    }
}

/// The request's own sense, before anything is looked at: both environments configured, and a
/// reason wherever an override asks for one. Returns the target environment's settings.
fn checked<'c>(ctx: &'c Ctx, req: &PromoteRequest<'_>) -> Result<&'c crate::config::Environment> {
    ctx.config.environment(req.from)?;
    let to_env = ctx.config.environment(req.to)?;
    if req.force && req.reason.is_none_or(|r| r.trim().is_empty()) {
        return Err(usage!("--force needs --reason TEXT: an override is recorded with its reason"));
    }
    if req.accept_irreversible.is_some_and(|r| r.trim().is_empty()) {
        return Err(usage!("--accept-irreversible: expected the reason (it is recorded)"));
    }
    if req.skip_pre_traffic.is_some_and(|r| r.trim().is_empty()) {
        return Err(usage!("--skip-pre-traffic: expected the reason it is skipped (it is recorded)"));
    }
    Ok(to_env)
}

/// The deployment's recorded reason (every override's, joined), and the pre-traffic skip's.
fn reasons(req: &PromoteRequest<'_>) -> (Option<String>, Option<String>) {
    let skipped = req.skip_pre_traffic.map(|r| format!("pre-traffic check skipped: {r}"));
    let irreversible = req.accept_irreversible.map(|r| format!("{IRREVERSIBLE}{r}"));
    let reasons: Vec<String> =
        [req.reason.map(str::to_string), skipped.clone(), irreversible].into_iter().flatten().collect();
    ((!reasons.is_empty()).then(|| reasons.join("; ")), skipped)
}

/// The canary phase as the platform runs it: the request's share and bake, the settings' pace
/// and margins, and each round's checks.
fn canary_of<'r>(
    ctx: &Ctx,
    c: CanaryRequest,
    round: &'r crate::platform::PreTraffic<'r>,
) -> crate::platform::Canary<'r> {
    let d = &ctx.config.deploy;
    crate::platform::Canary {
        percent: c.percent,
        bake: c.bake,
        interval: d.canary_interval.0,
        error_margin: d.canary_error_margin.0,
        not_enough: d.canary_not_enough,
        max_bake: d.canary_max_bake.0.max(c.bake),
        latency_margin: d.canary_latency_margin.0,
        round,
    }
}

/// A promote that went live: what it took, and what users met on the way.
struct Live<'a> {
    label: &'a str,
    previous: Option<String>,
    started: Millis,
    budget: Budget,
    /// The version that served broke while the candidate's release or start ran, and the
    /// incident opened for it.
    broke: Option<(BrokeLive, i64)>,
    switched: crate::platform::Switched,
}

fn promoted(
    session: &Session<'_>,
    req: &PromoteRequest<'_>,
    live: Live<'_>,
    released: Option<&crate::platform::Released>,
) -> Result<Outcome> {
    let ctx = session.ctx;
    let to = req.to;
    let Live { label, previous, started, budget: budget_now, broke, switched } = live;
    if let Some((b, id)) = &broke {
        // Rolled forward: the candidate passed its check, so it serves the migrated
        // data; the switch ends what users met.
        session.ledger.close_incident(*id, label, switched.at, Some(" (rolled forward)"))?;
        ctx.ui.warn(format!(
            "{to}: users met {label}'s change before it took traffic: {} failed its checks from {} ({}); rolled forward: {label} passed its own check and serves since {}: {} charged",
            b.label,
            rfc3339(b.since),
            clip(&b.why, 200),
            rfc3339(switched.at),
            human(crate::rules::downtime(Cause::Release, b.since, switched.at, None))
        ));
    }
    close_release_incidents(&session.ledger, to, label, switched.at)?;
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
        version: label,
        previous,
        changed: true,
        duration_ms: took,
        budget: budget_now,
        release: released.map(ReleaseSummary::of),
        dry_run: ctx.dry_run,
    })
}

/// The candidate failed its canary: its share of the users met it from the canary's start until
/// its share was 0 again. It is marked bad, the verdict recorded, and an incident recorded
/// (already closed: the previous version serves everyone) charging that span times the share.
fn canary_failed(session: &Session<'_>, label: &str, previous: Option<&str>, a: CanaryAborted) -> anyhow::Error {
    let (ctx, ledger, env) = (session.ctx, &session.ledger, session.env);
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
    let span = (a.stopped_at - a.took_traffic_at).max(0);
    let charged = crate::rules::downtime(Cause::Canary, a.took_traffic_at, a.stopped_at, Some(i64::from(a.percent)));
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
    Error::verdict(format!(
        "{label} failed its canary in {env} at {}% and was stopped; {prev} serves every request",
        a.percent
    ))
    .caused_by(anyhow::anyhow!("{}", a.why))
}

/// The version users were served broke while `label`'s release or start ran: a failing verdict
/// against it (it cannot serve the changed data), and an incident charged from the change's
/// start, caused by `label`. Returns the incident.
fn broke_live(session: &Session<'_>, label: &str, b: &BrokeLive) -> Result<i64> {
    let (ledger, env) = (&session.ledger, session.env);
    let why = format!("failed while {label}'s release or start ran: {}", clip(&b.why, 400));
    ledger.record_verification(env, &b.label, false, &why)?;
    ledger.open_incident(&Incident {
        id: 0,
        env: env.to_string(),
        bad_label: Some(label.to_string()),
        restored_label: None,
        detected_at: b.seen_at,
        restored_at: None,
        downtime_ms: None,
        reason: Some(format!(
            "users met {label}'s change before it took traffic: {} failed its checks: {}",
            b.label,
            clip(&b.why, 200)
        )),
        took_traffic_at: None,
        rollback_started_at: None,
        charged_from: Some(b.since),
        share_percent: None,
        cause: Some(Cause::Release.as_str().into()),
        alert_id: None,
    })
}

/// The live version broke while `label`'s release or start ran, and `label` cannot take over
/// (its release or check failed): nothing known to work serves. The candidate is marked bad;
/// the incident stays open; exit 3, naming the change as the cause.
fn neither_serves(session: &Session<'_>, label: &str, b: &BrokeLive, deployed: Deployed) -> anyhow::Error {
    let env = session.env;
    let what = match &deployed {
        Deployed::ReleaseFailed(r) => format!("its release failed ({})", r.exit),
        Deployed::StoppedBeforeTraffic(e) => {
            format!("it failed its own check before traffic ({})", clip(&format!("{e:#}"), 200))
        }
        Deployed::CanaryAborted(a) => format!("its canary failed ({})", clip(&a.why, 200)),
        Deployed::Unhealthy(e) => format!("it did not become healthy ({})", clip(&format!("{e:#}"), 200)),
        Deployed::Live(_) => "it serves".into(),
    };
    if let Err(r) = session.ledger.mark_bad(label, &format!("its change broke {} in {env}", b.label)) {
        return Error::could_not_act(format!("{label} broke {env}, and recording it failed")).caused_by(r);
    }
    Error::could_not_act(format!(
        "{env} is not served: {label}'s release or start changed the shared data, and {} (which users are served) fails its checks since {} ({}); {label} cannot take over: {what}. The incident stays open",
        b.label,
        rfc3339(b.since),
        clip(&b.why, 200)
    ))
    .with_hint(format!(
        "roll forward with a fixed version (deploy-staging, then promote), or restore the data and run rollback --env {env}"
    ))
    .into()
}

/// `label`'s release failed: nothing of it was started. A verdict against it: it is marked bad
/// and the failure recorded; what serves, serves on (`watched`: its checks say so).
fn release_failed(
    session: &Session<'_>,
    label: &str,
    previous: Option<&str>,
    watched: bool,
    r: &crate::platform::Released,
) -> anyhow::Error {
    let (ledger, env) = (&session.ledger, session.env);
    let recorded = (|| -> Result<()> {
        ledger.mark_bad(label, &format!("its release failed in {env}"))?;
        ledger.record_verification(env, label, false, &format!("release failed: {}", r.exit))?;
        Ok(())
    })();
    if let Err(e) = recorded {
        return Error::could_not_act(format!("{label}'s release failed in {env}, but recording it failed"))
            .caused_by(e);
    }
    let still = match (previous, watched) {
        (Some(p), true) => format!("{p} still serves, and still passes its checks"),
        (Some(p), false) => format!("{p} still serves"),
        (None, _) => format!("{env} serves nothing"),
    };
    Error::verdict(format!(
        "{label}'s release failed in {env} ({}) and {label} was not started; {still}. Whatever the release changed before it failed stays changed",
        r.exit
    ))
    .caused_by(anyhow::anyhow!("{}", r.tail))
}

/// The candidate failed its checks at its own address: it took no traffic; it is marked bad,
/// and the verdict is recorded in `env`. "No downtime" is said only when the version users are
/// served was watched and still passes its checks.
fn stopped_before_traffic(
    session: &Session<'_>,
    label: &str,
    previous: Option<&str>,
    watched: bool,
    e: &anyhow::Error,
) -> anyhow::Error {
    let (ledger, env) = (&session.ledger, session.env);
    let why = format!("{e:#}");
    let recorded = (|| -> Result<()> {
        ledger.mark_bad(label, &format!("stopped before traffic in {env}"))?;
        ledger.record_verification(env, label, false, &format!("stopped before traffic: {}", clip(&why, 500)))?;
        Ok(())
    })();
    if let Err(r) = recorded {
        return Error::could_not_act(format!("{label} was stopped before traffic in {env}, but recording it failed"))
            .caused_by(r);
    }
    let still = match (previous, watched) {
        (Some(p), true) => format!("{p} still serves and passes its checks; no downtime"),
        (Some(p), false) => format!("{p} still serves"),
        (None, _) => format!("{env} serves nothing"),
    };
    Error::verdict(format!("{label} was stopped before it took traffic in {env} ({still})"))
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
    let Some(version) = ledger.version(&label)? else {
        return Err(Error::usage(format!("unknown version {label}: deploy-staging registers versions"))
            .with_hint(ledger.unknown_version_hint()?)
            .into());
    };
    let budget_now = Budget::now(&ctx.config.sla, ledger)?;
    let spent = budget_now.spent.then(|| budget_now.line());
    let refusals = crate::rules::promote_refusals(
        &label,
        from,
        ledger.verified_in(from, &label)?,
        version.bad_reason.as_deref(),
        spent.as_deref(),
    );
    if !refusals.is_empty() {
        if !req.force {
            return Err(Error::verdict(format!("refusing to promote {label} to {to}: {}", refusals.join("; ")))
                .with_hint("override with --force --reason TEXT (recorded in the ledger)")
                .into());
        }
        ctx.ui.warn(format!("overriding: {} — reason: {}", refusals.join("; "), req.reason.unwrap_or_default()));
    }
    // A rehearsed rollback from it to production's last known good that failed: after it, only
    // a roll forward is possible. Not a policy --force overrides: it needs its own word.
    if let Some(good) = ledger.last_known_good(to)?.filter(|g| *g != label)
        && let Some((false, detail, rehearsed_in)) = ledger.rehearsal(&label, &good)?
    {
        let what = format!(
            "a rollback from {label} to {good} would fail (rehearsed in {rehearsed_in}: {})",
            clip(&detail, 300)
        );
        match req.accept_irreversible {
            None => {
                return Err(Error::verdict(format!("refusing to promote {label} to {to}: {what}"))
                    .with_hint("promote --accept-irreversible REASON accepts that only a roll forward is possible afterwards (recorded)")
                    .into());
            }
            Some(r) => {
                ctx.ui.warn(format!("accepted: {what}; only a roll forward is possible afterwards — reason: {r}"))
            }
        }
    }
    Ok((version, budget_now))
}

/// A promote whose version did not become healthy.
struct Failed<'a> {
    label: &'a str,
    previous: Option<String>,
    started: Millis,
}

/// After a failed promote: the version is marked bad; if users saw it (no proxy, EB in place),
/// the previous version is put back under an incident. Returns the error to exit with.
fn promote_failed(session: &Session<'_>, f: Failed<'_>, e: anyhow::Error) -> anyhow::Error {
    let (ctx, ledger, platform, env) = (session.ctx, &session.ledger, &*session.platform, session.env);
    let Failed { label, previous, started } = f;
    let result = (|| -> Result<anyhow::Error> {
        ctx.ui.status(format!("{env}: {label} did not become healthy"));
        ledger.mark_bad(label, &format!("did not become healthy in {env}"))?;
        // Blue/green or behind the proxy: it failed before any switch; users never saw it.
        if let Some(l) = platform.live(session.environment)?
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
            label: &prev,
            action: Action::Restore,
            previous: Some(label),
            reason: Some("promote failed"),
            pre: None,
            canary: None,
        };
        let switched = match session.deploy(step).and_then(|d| d.live_or_verdict(&prev, env)) {
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
