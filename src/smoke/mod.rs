//! smoke-check: prove an environment serves users, then keep watching.
//!
//! 1. **Wait live** ([`wait`]): until the expected version answers `smoke.consecutive` times
//!    in a row, read from the app's version route or from what the platform offers.
//! 2. **Chains**: independent chains run side by side, each chain's checks in order, later
//!    checks using what earlier ones captured. Redirects are not followed unless a check asks,
//!    so a short link must *redirect*. A failed check shows method, URL, status, the failed
//!    assertions and the start of the body; the rest of its chain is skipped.
//! 3. **Samples and bake**: `--samples N` repeats each check for a p95 latency budget;
//!    `--watch D --interval I` re-runs the chains (and checks Datadog monitors) each round
//!    until D has passed or something fails.
//!
//! `--record` writes the verdict to the ledger: a pass makes the version the environment's last
//! known good; a failure dates the incident.

pub mod metrics;
pub mod monitors;
mod run;
pub mod settings;
pub mod spec;
pub mod suite;
pub mod template;
mod wait;

use crate::config::Label;
use crate::context::Ctx;
use crate::http::Response;
use crate::ledger::Ledger;
use crate::{Outcome, usage};
use anyhow::{Context, Result};
use monitors::MonitorState;
use run::{CheckResult, run_round};
use serde::Serialize;
use spec::Chain;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use template::Vars;

pub struct SmokeRequest<'a> {
    pub env: &'a str,
    pub expect_version: Option<&'a Label>,
    pub record: bool,
    /// Keep checking for this long (a bake period).
    pub watch: Option<Duration>,
    /// Pause between watch rounds.
    pub interval: Duration,
    /// Requests per check, for the p95 latency budget.
    pub samples: u32,
    pub junit_out: Option<&'a Path>,
}

/// The version label an answer of the version endpoint names: JSON `{"version": ..}` or text.
fn served_version(r: &Response) -> String {
    serde_json::from_str::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| v.get("version").and_then(|v| v.as_str()).map(str::to_string))
        .unwrap_or_else(|| r.body.trim().to_string())
}

/// What a smoke check found: the `--json` document.
#[derive(Debug, Serialize)]
struct Summary<'a> {
    env: &'a str,
    version: String,
    /// Where the served version was read from.
    version_from: String,
    passed: bool,
    dry_run: bool,
    rounds: u32,
    duration_ms: u128,
    checks: Vec<CheckResult>,
    monitors: Vec<MonitorState>,
}

/// The version that answered, and where that was read from.
struct Served {
    label: String,
    from: String,
}

/// Where the checks stand after the last round.
struct Rounds {
    round: u32,
    results: Vec<CheckResult>,
    monitors: Vec<MonitorState>,
    bake_start: Instant,
    /// Metrics with `no_data = "extend"` still without data.
    awaiting: Vec<metrics::Awaiting>,
}

impl Rounds {
    fn passed(&self) -> bool {
        passed(&self.results, &self.monitors)
    }
    /// The first failure, said as the verdict.
    fn first_failure(&self) -> Option<String> {
        self.results
            .iter()
            .find(|r| !r.passed && !r.skipped)
            .map(|r| format!("{} / {}: {}", r.chain, r.name, r.detail))
            .or_else(|| self.monitors.iter().find(|m| m.failed()).map(MonitorState::describe))
    }
}

/// Everything a check needs, found before it sends anything: a problem here is exit 2.
fn spec_for<'c>(ctx: &'c Ctx, req: &SmokeRequest<'_>) -> Result<(&'c crate::config::Environment, Vars)> {
    let env = ctx.config.environment(req.env)?;
    if req.samples == 0 {
        return Err(usage!("--samples: expected at least 1"));
    }
    Ok((env, env_vars(ctx)?))
}

/// The `{{env.NAME}}` values the chains use, each of which must be set and not empty.
fn env_vars(ctx: &Ctx) -> Result<Vars> {
    let mut vars = Vars::default();
    for (name, check, field) in spec::env_vars(&ctx.config.chains) {
        match ctx.env.get(&name) {
            Some(v) if !v.is_empty() => {
                vars.env.insert(name, v.to_string());
            }
            _ => {
                return Err(usage!(
                    "{}: {check}: {field}: {{{{env.{name}}}}}: {name} is not set or empty (an empty value would be sent, or looked for in every body)",
                    ctx.config.path.display()
                ));
            }
        }
    }
    Ok(vars)
}

/// Rounds a candidate gets before traffic: a failure must repeat to count.
const PRE_TRAFFIC_ROUNDS: u32 = 2;

/// Whether the pre-traffic checks can run: every `{{env.NAME}}` they use is set (exit 2 if not).
pub fn pre_traffic_ready(ctx: &Ctx) -> Result<()> {
    env_vars(ctx).map(|_| ())
}

/// Before traffic: one round of the smoke chains against a candidate at its own address
/// (`base`), labelled `label`. A failure is a verdict naming the first failed check; the
/// console shows each check as smoke-check does.
pub fn pre_traffic(ctx: &Ctx, env: &str, label: &str, base: &str) -> Result<()> {
    match candidate_round(ctx, env, label, base, Target::Candidate, true, None)? {
        None => Ok(()),
        Some(why) => Err(crate::verdict!("{label} failed its smoke checks before taking traffic in {env}: {why}")),
    }
}

/// After a restore: one round of the smoke chains (a failure repeated once before it counts)
/// against the environment's own address, as its users reach it. `Some` first failure when the
/// restored version does not serve them.
pub fn verify_restored(ctx: &Ctx, env: &str, label: &str) -> Result<Option<String>> {
    let environment = ctx.config.environment(env)?;
    ctx.ui.status(format!("{env}: verifying that {label} serves its users"));
    candidate_round(ctx, env, label, environment.url.0.as_str(), Target::Environment, true, None)
}

/// A round of the smoke chains against the environment's own address while something that can
/// change shared data runs (a release, a candidate's start and its check before traffic):
/// whether `label`, the version users are served, still serves them. `Some` first failure when
/// it does not (a failed round is run once more before it counts).
pub fn watch_live(ctx: &Ctx, env: &str, label: &str) -> Result<Option<String>> {
    let environment = ctx.config.environment(env)?;
    ctx.ui.status(format!("{env}: checking that {label} still serves its users"));
    candidate_round(ctx, env, label, environment.url.0.as_str(), Target::Environment, false, None)
}

/// One canary round: the smoke chains against the candidate at its own address (`base`) and
/// the Datadog monitors, if `smoke.datadog` names any. A failure is a verdict; the console
/// shows the checks of the first round, then only what fails.
/// `since`: when the promote began; a monitor alerting since before then is not the
/// candidate's doing.
pub fn canary_round(
    ctx: &Ctx,
    env: &str,
    (label, stable): (&str, Option<&str>),
    base: &str,
    first: bool,
    since: crate::clock::Millis,
) -> Result<()> {
    let mut round = candidate_round(ctx, env, label, base, Target::CanaryCandidate, first, Some(since))?;
    // The metrics, candidate against the stable version in the same window.
    if round.is_none() {
        let judged = metrics::run_phase(ctx, suite::Phase::Canary, label, stable, env)?.results;
        for m in &judged {
            if first || !m.passed {
                ctx.ui.check(m.passed, format!("{} / {}: {}", m.chain, m.name, m.detail));
            }
        }
        round = judged.iter().find(|m| !m.passed).map(|m| format!("{} / {}: {}", m.chain, m.name, m.detail));
    }
    match round {
        None => Ok(()),
        Some(why) => Err(crate::verdict!("{label} failed a canary round in {env}: {why}")),
    }
}

/// Where a round of checks is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// A candidate at its own address, before traffic.
    Candidate,
    /// A canary's candidate at its own address (and the Datadog monitors).
    CanaryCandidate,
    /// The environment's address, as its users reach it.
    Environment,
}

/// What the environment's proxy adds to the answers users get, which a version asked at its
/// own address does not send: the local platform's nginx names the version in a header.
fn proxy_header(ctx: &Ctx, label: &str) -> Option<(String, String)> {
    use crate::platform::local::settings::Proxy;
    let local = ctx.config.platform.kind == crate::config::PlatformKind::Local;
    (local && matches!(ctx.config.deploy.proxy, Proxy::Nginx(_)))
        .then(|| (crate::platform::local::VERSION_HEADER.to_string(), label.to_string()))
}

/// A round of checks of a candidate, `Some` first failure when it failed. A failed round is
/// run once more before it counts: the verdict marks the version bad, and a process only just
/// healthy may blip. A fault of the checks themselves (a monitor API error) is an error.
fn candidate_round(
    ctx: &Ctx,
    env: &str,
    label: &str,
    base: &str,
    target: Target,
    show_all: bool,
    since: Option<crate::clock::Millis>,
) -> Result<Option<String>> {
    let datadog = ctx.config.smoke.datadog.as_ref().filter(|_| target == Target::CanaryCandidate);
    let mut vars = env_vars(ctx)?;
    vars.version = label.to_string();
    // Asked at its own port, a version's answers lack what the proxy adds; through the
    // environment's address they have it, from the proxy itself.
    vars.proxy_header = if target == Target::Environment { None } else { proxy_header(ctx, label) };
    let mut r = Rounds { round: 0, results: vec![], monitors: vec![], bake_start: Instant::now(), awaiting: vec![] };
    for round in 1..=PRE_TRAFFIC_ROUNDS {
        // An interruption (a Jenkins abort) ends the round with no verdict, and the candidate
        // never takes traffic: the caller stops it.
        let left = || match target {
            Target::Environment => format!("{label} serves {env}; its verification did not finish"),
            _ => format!("{label} was checked before traffic but not switched to; {env} serves what it served"),
        };
        if round > 1 {
            ctx.ui.status(format!("{env}: {label} failed a check; trying the round once more"));
            ctx.nap(ctx.config.smoke.interval.0, left)?;
        }
        vars.run_id = run_id();
        r.results = run_round(ctx, base, &ctx.config.chains, &vars, 1)?;
        ctx.check_interrupt(left)?;
        // The team's suites: before traffic, and in a canary's first round.
        let phase = match target {
            Target::Candidate => Some(suite::Phase::PreTraffic),
            Target::CanaryCandidate if show_all => Some(suite::Phase::Canary),
            _ => None,
        };
        if let Some(phase) = phase {
            r.results.extend(suite::run_phase(ctx, phase, base, label, env, &vars.run_id)?);
        }
        r.monitors = datadog.map(|dd| monitors::read(ctx, dd, since)).transpose()?.unwrap_or_default();
        // Round 1 of [`report_round`] shows every check; later ones only what failed.
        r.round = if show_all && round == 1 { 1 } else { 2 };
        report_round(ctx, &r);
        if r.passed() {
            return Ok(None);
        }
    }
    Ok(Some(r.first_failure().unwrap_or_else(|| "no check ran".into())))
}

pub fn smoke_check(ctx: &Ctx, req: &SmokeRequest<'_>) -> Result<Outcome> {
    if let Some(out) = req.junit_out {
        ctx.check_report_path(out, "--junit-out", &[])?;
    }
    let (env, mut vars) = spec_for(ctx, req)?;
    let chains = &ctx.config.chains;
    let ledger = ctx.ledger()?;
    // Stopped by hand: nothing serves there on purpose, and a wait for it is no verdict.
    if let Some(stop) = ledger.stopped(&env.name)? {
        return Err(crate::error::Error::could_not_act(format!(
            "{} was stopped by hand at {} by {}{}; nothing is checked there",
            env.name,
            crate::clock::rfc3339(stop.at),
            stop.actor.as_deref().unwrap_or("-"),
            stop.reason.map(|r| format!(" ({r})")).unwrap_or_default()
        ))
        .with_hint("deploy or promote a version to it first")
        .into());
    }
    let platform = ctx.platform()?;
    let expected = match req.expect_version {
        Some(v) => Some(v.to_string()),
        None => platform.live(env)?.map(|l| l.label),
    };
    let started = Instant::now();
    let signal = wait::Signal::of(ctx, platform.as_ref(), env);
    if !ctx.dry_run {
        let want = expected.as_deref().unwrap_or("any version");
        ctx.ui.detail(format!("{}: waiting for {want}, read from {}", env.name, signal.describe()));
    }
    let served = match wait::wait_live(ctx, platform.as_ref(), env, &signal, expected.as_deref()) {
        Ok(v) => v,
        // Only a version that does not serve is recorded against it; a setup or configuration
        // failure is not a verdict.
        Err(e) if crate::error::kind_of(&e) == crate::error::Kind::Verdict => {
            if req.record
                && let Some(label) = &expected
            {
                record(ctx, &ledger, req.env, label, false, &format!("{e:#}"))?;
            }
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    if !ctx.dry_run {
        let n: usize = chains.iter().map(|c| c.checks.len()).sum();
        ctx.ui.status(format!(
            "{}: serving {served} (after {:.1}s); running {n} check(s) in {} chain(s)",
            env.name,
            started.elapsed().as_secs_f64(),
            chains.len()
        ));
    }
    vars.version = served.clone();
    let rounds = check_rounds(ctx, req, &env.url.base(), chains, &mut vars)?;
    let (label, passed) = (served.clone(), rounds.passed());
    let outcome = conclude(ctx, req, &ledger, Served { label: served, from: signal.describe() }, rounds, started)?;
    if req.record && passed && !ctx.dry_run {
        rehearse_rollback(ctx, &ledger, platform.as_ref(), env, &label)?;
    }
    Ok(outcome)
}

/// The first round of checks, then (with `--watch`) a round every interval until the bake
/// ends or a round fails.
fn check_rounds(ctx: &Ctx, req: &SmokeRequest<'_>, base: &str, chains: &[Chain], vars: &mut Vars) -> Result<Rounds> {
    let datadog = ctx.config.smoke.datadog.as_ref().filter(|_| req.watch.is_some());
    // An alert older than the version's start in the environment is not its doing.
    let since = match datadog {
        Some(_) if !ctx.dry_run => ctx
            .ledger_read_only()?
            .live_deployment(req.env)?
            .filter(|d| d.label == vars.version)
            .and_then(|d| d.finished_at.or(Some(d.started_at))),
        _ => None,
    };
    let states =
        |ctx: &Ctx| datadog.map(|dd| monitors::read(ctx, dd, since)).transpose().map(Option::unwrap_or_default);
    vars.run_id = run_id();
    let mut results = run_round(ctx, base, chains, vars, req.samples)?;
    results.extend(suite::run_phase(ctx, suite::Phase::Smoke, base, &vars.version, req.env, &vars.run_id)?);
    let said = metrics::run_phase(ctx, suite::Phase::Smoke, &vars.version, None, req.env)?;
    results.extend(said.results);
    let mut r =
        Rounds { round: 1, results, monitors: states(ctx)?, bake_start: Instant::now(), awaiting: said.awaiting };
    report_round(ctx, &r);
    let Some(watch) = req.watch.filter(|_| !ctx.dry_run) else { return Ok(r) };
    // A pause longer than the bake would leave it no round at all (`--watch 20s` beside the
    // default 30 s): the bake's one round then comes at its end.
    let short = req.interval > watch;
    let interval = if short {
        ctx.ui.status(format!(
            "{}: --interval {}s is longer than --watch {}s: one bake round, at its end",
            req.env,
            req.interval.as_secs_f64(),
            watch.as_secs_f64()
        ));
        watch
    } else {
        req.interval
    };
    // A bake goes on past `watch` while a metric with `no_data = "extend"` waits for data, up
    // to its `extend_up_to`.
    let goes_on = |r: &Rounds| {
        let longest = r.awaiting.iter().map(|a| a.up_to).max().unwrap_or_default().max(watch);
        (short && r.round == 1) || r.bake_start.elapsed() + interval <= longest
    };
    while r.passed() && goes_on(&r) {
        ctx.nap(interval, || {
            format!("the bake of {} in {} stopped after {} round(s)", vars.version, req.env, r.round)
        })?;
        r.round += 1;
        vars.run_id = run_id();
        r.results = run_round(ctx, base, chains, vars, req.samples)?;
        r.results.extend(suite::run_phase(ctx, suite::Phase::Bake, base, &vars.version, req.env, &vars.run_id)?);
        let said = metrics::run_phase(ctx, suite::Phase::Bake, &vars.version, None, req.env)?;
        // A metric waited on is waited on only while it still has no data; its first judgement
        // is said, pass or fail.
        for m in said.results.iter().filter(|m| r.awaiting.iter().any(|a| a.name == m.name)) {
            if m.passed && !said.awaiting.iter().any(|a| a.name == m.name) {
                ctx.ui.check(true, format!("{} / {}: {}", m.chain, m.name, m.detail));
            }
        }
        r.results.extend(said.results);
        r.awaiting.retain(|a| !said.asked.contains(&a.name));
        r.awaiting.extend(said.awaiting);
        let waited_on: Vec<&str> = r.awaiting.iter().filter(|a| !a.up_to.is_zero()).map(|a| a.name.as_str()).collect();
        if r.bake_start.elapsed() + interval > watch && !waited_on.is_empty() && r.passed() {
            let names = waited_on;
            ctx.ui.status(format!("{}: bake extended: waiting for data from {}", req.env, names.join(", ")));
        }
        r.monitors = states(ctx)?;
        report_round(ctx, &r);
        ctx.ui.status(format!(
            "{}: bake round {} {} ({}s of {}s)",
            req.env,
            r.round,
            if r.passed() { "passed" } else { "FAILED" },
            r.bake_start.elapsed().as_secs(),
            watch.as_secs()
        ));
    }
    Ok(r)
}

/// The verdict: recorded (with `--record`), written as JUnit, said, and returned.
fn conclude(
    ctx: &Ctx,
    req: &SmokeRequest<'_>,
    ledger: &Ledger,
    served: Served,
    r: Rounds,
    started: Instant,
) -> Result<Outcome> {
    let Served { label: served, from: version_from } = served;
    let ok = r.passed();
    // Passed, but a metric that must have data before a verdict still has none: inconclusive.
    if ok && !r.awaiting.is_empty() && !ctx.dry_run {
        let waited = r.bake_start.elapsed().as_secs();
        let what: Vec<String> = r.awaiting.iter().map(|a| format!("{} ({})", a.name, a.evidence)).collect();
        let how = if req.watch.is_some() && r.awaiting.iter().all(|a| !a.up_to.is_zero()) {
            format!("after {waited}s of bake (extend_up_to)")
        } else {
            "in the round that asked it (smoke-check --watch bakes on until it has data, for a metric whose phases include \"bake\")".to_string()
        };
        let said = format!(
            "{}: not enough evidence to judge {served} {how}: no data from {}; nothing is marked bad",
            req.env,
            what.join("; ")
        );
        if req.record {
            ledger.record_inconclusive(req.env, &served, "smoke metrics", &said)?;
        }
        return Err(crate::inconclusive!("{said}"));
    }
    let detail = r.first_failure().unwrap_or_else(|| "all checks passed".into());
    if req.record && ctx.dry_run {
        ctx.ui.plan(format!("# ledger: would record the verdict of {served} in {}", req.env));
    } else if req.record {
        record(ctx, ledger, req.env, &served, ok, &detail)?;
    }
    if let Some(out) = req.junit_out {
        write_junit(ctx, out, req.env, &r.results)?;
    }
    let (round, bake_secs, checks) = (r.round, r.bake_start.elapsed().as_secs(), r.results.len());
    let summary = Summary {
        env: req.env,
        version: served.clone(),
        version_from,
        passed: ok,
        dry_run: ctx.dry_run,
        rounds: round,
        duration_ms: started.elapsed().as_millis(),
        checks: r.results,
        monitors: r.monitors,
    };
    if ctx.dry_run || ok {
        if !ctx.dry_run {
            let baked = req.watch.map(|_| format!(", {round} round(s) of bake")).unwrap_or_default();
            let took = started.elapsed().as_secs_f64();
            ctx.ui.result(format!("{}: {served} passed {checks} check(s){baked} in {took:.1}s", req.env));
        }
        return Outcome::of(&summary);
    }
    let when = if round > 1 { format!(" in bake round {round} after {bake_secs}s") } else { String::new() };
    Outcome::verdict_of(&summary, format!("{}: {served} failed the smoke checks{when} — {detail}", req.env))
}

/// Zero results is never a pass.
fn passed(results: &[CheckResult], monitors: &[MonitorState]) -> bool {
    !results.is_empty() && results.iter().all(|r| r.passed && !r.skipped) && monitors.iter().all(|m| !m.failed())
}

fn report_round(ctx: &Ctx, r: &Rounds) {
    if ctx.dry_run {
        return;
    }
    // Later rounds print only what failed, so a long bake stays readable.
    for c in r.results.iter().filter(|c| r.round == 1 || !c.passed) {
        let line = format!("{} / {}: {}", c.chain, c.name, c.detail);
        if c.skipped { ctx.ui.skipped(line) } else { ctx.ui.check(c.passed, line) }
    }
    for m in r.monitors.iter().filter(|m| r.round == 1 || m.failed()) {
        match m.judged {
            monitors::Judged::NotJudged(_) => ctx.ui.skipped(m.describe()),
            _ => ctx.ui.check(!m.failed(), m.describe()),
        }
    }
}

/// A rollback rehearsal, once a version whose release ran in a staging environment passes there:
/// production's last known good is started on a copy of this environment's migrated data and
/// the smoke chains run against it; the result is recorded ("rollback-safe", or what would
/// fail). A failed rehearsal does not fail the check (the version serves); promote refuses the
/// version unless `--accept-irreversible`, and rollback consults it.
fn rehearse_rollback(
    ctx: &Ctx,
    ledger: &Ledger,
    platform: &dyn crate::platform::Platform,
    env: &crate::config::Environment,
    label: &str,
) -> Result<()> {
    let name = env.name.as_str();
    let sla = &ctx.config.sla.environments;
    if sla.iter().any(|e| e == name) || ledger.released_in(name, label)?.is_none() {
        return Ok(());
    }
    let Some(production) = sla.first() else { return Ok(()) };
    let Some(target) = ledger.last_known_good(production)?.filter(|t| t != label) else { return Ok(()) };
    if let Some(why) = platform.data_not_copied(env) {
        ctx.ui.warn(format!(
            "{name}: a rollback from {label} to {target} cannot be rehearsed: {why}; a rollback relies on its verified restore"
        ));
        return Ok(());
    }
    // It starts a process in the environment: under the environment's lock, as a deploy does.
    let who = crate::lock::Holder { tool: ctx.ui.tool, actor: ctx.env.actor() };
    let _lock = match crate::lock::acquire(&ctx.state_dir, name, &who, ctx.dry_run) {
        Ok(l) => l,
        Err(e) => {
            ctx.ui.warn(format!(
                "{name}: the rollback rehearsal from {label} to {target} did not run: {e:#}; promote will find none"
            ));
            return Ok(());
        }
    };
    ctx.ui.status(format!(
        "{name}: rehearsing a rollback from {label} to {target} ({production}'s last known good) on a copy of {name}'s migrated data"
    ));
    let round = |base: &str| -> Result<()> {
        match candidate_round(ctx, name, &target, base, Target::Candidate, true, None)? {
            None => Ok(()),
            Some(why) => Err(crate::verdict!("{target} fails on {label}'s data: {why}")),
        }
    };
    match platform.rehearse(env, &target, &round)? {
        None => {}
        Some(Ok(())) => {
            ledger.record_rehearsal(name, label, &target, true, "its checks passed on the migrated data")?;
            ctx.ui.result(format!("{name}: rollback-safe: {target} serves its users on {label}'s migrated data"));
        }
        Some(Err(e)) => {
            let why = format!("{e:#}");
            ledger.record_rehearsal(name, label, &target, false, &why)?;
            ctx.ui.warn(format!(
                "{name}: a rollback from {label} to {target} would fail: {why}; promote refuses {label} unless --accept-irreversible REASON"
            ));
        }
    }
    Ok(())
}

fn record(ctx: &Ctx, ledger: &Ledger, env: &str, label: &str, passed: bool, detail: &str) -> Result<()> {
    if ledger.version(label)?.is_none() {
        ctx.ui.warn(format!("{env} serves {label:?}, which the ledger does not know; nothing recorded"));
        return Ok(());
    }
    // A version marked bad becomes good again in one way only: forced into the environment by
    // hand (a promote with its reason recorded) and then passing a recorded check there.
    let bad = ledger.version(label)?.and_then(|v| v.bad_reason);
    let forced_back = match (&bad, ledger.live_deployment(env)?) {
        (Some(_), Some(d)) => d.label == label && d.action == "promote" && d.reason.is_some(),
        _ => false,
    };
    let detail = match (&bad, passed && forced_back) {
        (Some(why), true) => format!("{detail}; clears the bad mark ({why}) after a forced promote"),
        _ => detail.to_string(),
    };
    ledger.record_verification(env, label, passed, &detail)?;
    if passed && forced_back {
        ledger.clear_bad(label)?;
    }
    // Said as the ledger now holds it.
    let good = if ctx.dry_run { None } else { ledger.last_known_good(env)? };
    ctx.ui.status(match (passed, &bad, good.as_deref()) {
        (false, _, _) => format!("recorded the failure of {label} in {env}"),
        (true, Some(why), _) if forced_back => {
            format!("{label} was marked bad ({why}); this recorded pass after its forced promote clears the mark: it is now the last known good in {env}")
        }
        (true, Some(why), g) => format!(
            "recorded the pass of {label} in {env}, but it is marked bad ({why}): the last known good there stays {}",
            g.unwrap_or("none")
        ),
        (true, None, Some(g)) if g == label => format!("{label} is now the last known good in {env}"),
        (true, None, g) => format!("recorded the pass of {label} in {env}; the last known good there is {}", g.unwrap_or("none")),
    });
    Ok(())
}

/// One test case per check, one suite per chain.
fn write_junit(ctx: &Ctx, out: &Path, env: &str, results: &[CheckResult]) -> Result<()> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut report = Report::new(format!("smoke {env}"));
    let mut suites: Vec<TestSuite> = vec![];
    for r in results {
        if suites.last().is_none_or(|s| s.name.as_str() != r.chain) {
            suites.push(TestSuite::new(r.chain.clone()));
        }
        let mut status = if r.skipped {
            TestCaseStatus::skipped()
        } else if r.passed {
            TestCaseStatus::success()
        } else {
            TestCaseStatus::non_success(NonSuccessKind::Failure)
        };
        if !r.passed || r.skipped {
            status.set_message(r.detail.clone());
        }
        let mut case = TestCase::new(r.name.clone(), status);
        case.set_classname(format!("smoke.{env}"));
        if let Some(ms) = r.ms.first() {
            case.set_time(Duration::from_millis(*ms as u64));
        }
        if let Some(s) = suites.last_mut() {
            s.add_test_case(case);
        }
    }
    report.add_test_suites(suites);
    let xml = report.to_string().context("rendering the smoke JUnit report")?;
    ctx.write_report(out, &xml, "the smoke checks' JUnit report")
}

/// Unique per run, so test data of two runs never collides.
fn run_id() -> String {
    use std::sync::atomic::AtomicU32;
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{:x}{:x}{}", crate::clock::now_ms(), std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}
