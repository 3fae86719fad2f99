//! The `safedeploy` command's operations: what people do by hand, beside the six step
//! binaries the pipeline calls.

pub mod appdata;
pub mod init;
pub mod layout;

use crate::Outcome;
use crate::clock::rfc3339;
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
    /// What the configuration may still get wrong (a migrator in the web command).
    warnings: &'a [String],
}

/// `safedeploy check`: the configuration is valid (loading it checked every value and rule);
/// prints the effective configuration, every default shown.
pub fn check(ctx: &Ctx) -> Result<Outcome> {
    let c = &ctx.config;
    let effective = c.effective()?;
    ctx.ui
        .result(format!("# {}: valid. The effective configuration, defaults included:\n{effective}", c.path.display()));
    let warnings = advice(ctx);
    for w in &warnings {
        ctx.ui.warn(w);
    }
    Outcome::of(&Checked {
        warnings: &warnings,
        config: &c.path,
        platform: c.platform.kind,
        environments: c.environments.keys().map(String::as_str).collect(),
        smoke_chains: c.chains.len(),
        smoke_checks: c.chains.iter().map(|ch| ch.checks.len()).sum(),
        effective: serde_json::to_value(c.effective_value()?)?,
    })
}

/// What a valid configuration may still get wrong: a web command that migrates the data as
/// each version starts or listens on every interface (deploy.command, or the Procfile's web:
/// line in the app's source), and data the app keeps where the next deploy loses it.
fn advice(ctx: &Ctx) -> Vec<String> {
    use crate::gate::migrations::{migrator_advice, migrator_in};
    let c = &ctx.config;
    let mut found = vec![];
    let web = match c.deploy.command.as_deref() {
        Some(w) => Some((w.to_string(), "deploy.command")),
        None => std::fs::read_to_string(c.source_dir().join("Procfile"))
            .ok()
            .and_then(|t| crate::platform::local::procfile_line(&t, "web"))
            .map(|w| (w, "the Procfile's web: line")),
    };
    if let Some((web, from)) = &web {
        found.extend(migrator_in(web).map(|m| migrator_advice(m, from)));
        if c.platform.kind == crate::config::PlatformKind::Local {
            found.extend(appdata::bind_warning(web, from));
        }
    }
    found.extend(appdata::warnings(c));
    found
}

// ---- status ----

/// One environment as `safedeploy status` shows it.
#[derive(Serialize)]
struct EnvStatus {
    env: String,
    /// What the platform runs there now.
    live: Option<String>,
    /// It answers its health path and its newest recorded verdict there is a pass: a 2xx on
    /// the health path alone says nothing of the users' pages.
    healthy: bool,
    /// Its newest recorded verdict there: passed, failed, or none yet.
    verdict: Option<bool>,
    /// It answers its health path.
    answers_health: bool,
    /// When the live version was deployed there (from the ledger).
    since: Option<String>,
    deployed_by: Option<String>,
    last_known_good: Option<String>,
    /// A previous version kept running without traffic, for an instant rollback, and until when.
    warm_previous: Option<String>,
    warm_until: Option<String>,
    /// Who holds the environment's lock, when someone does.
    locked_by: Option<String>,
    open_incidents: usize,
    /// Set when the environment was stopped by hand and nothing was deployed since.
    stopped: Option<String>,
    /// What a stopped run left unfinished there (a canary's split), said until the next run
    /// finishes or undoes it.
    unfinished: Option<String>,
    /// Set when the live version was promoted with `--accept-irreversible`: a rollback from it
    /// was rehearsed and would fail, so only a roll forward is possible (the reason given).
    roll_forward_only: Option<String>,
}

#[derive(Serialize)]
struct Status {
    environments: Vec<EnvStatus>,
    budget: Option<crate::sla::Budget>,
}

/// `safedeploy status [--env NAME]`: per environment, what runs and how it stands.
pub fn status(ctx: &Ctx, only: Option<&str>) -> Result<Outcome> {
    let ledger = ctx.ledger_read_only()?;
    let platform = ctx.platform()?;
    let mut out = vec![];
    for env in ctx.config.environments.values().filter(|e| only.is_none_or(|o| o == e.name)) {
        let live = platform.live(env)?;
        let warm = platform.warm_previous(env)?;
        let deployed = ledger.live_deployment(&env.name)?.filter(|d| live.as_ref().is_some_and(|l| l.label == d.label));
        let roll_forward_only = deployed
            .as_ref()
            .and_then(|d| d.reason.as_deref())
            .and_then(|r| r.split("; ").find_map(|part| part.strip_prefix(crate::deploy::IRREVERSIBLE)))
            .map(str::to_string);
        let verdict = match &live {
            Some(l) => ledger.newest_verdict(&env.name, &l.label)?,
            None => None,
        };
        out.push(EnvStatus {
            env: env.name.clone(),
            healthy: live.as_ref().is_some_and(|l| l.healthy) && verdict == Some(true),
            verdict,
            answers_health: live.as_ref().is_some_and(|l| l.healthy),
            live: live.map(|l| l.label),
            since: deployed.as_ref().map(|d| rfc3339(d.finished_at.unwrap_or(d.started_at))),
            deployed_by: deployed.and_then(|d| d.actor),
            last_known_good: ledger.last_known_good(&env.name)?,
            warm_previous: warm.as_ref().map(|w| w.0.clone()),
            warm_until: warm.map(|w| rfc3339(w.1)),
            locked_by: crate::lock::holder(&ctx.state_dir, &env.name)?,
            open_incidents: ledger.open_incidents(&env.name)?.len(),
            stopped: ledger
                .stopped(&env.name)?
                .map(|s| format!("{} by {}", rfc3339(s.at), s.actor.unwrap_or_else(|| "-".into()))),
            unfinished: platform.unfinished(env)?,
            roll_forward_only,
        });
    }
    if let Some(o) = only {
        ctx.config.environment(o)?;
    }
    let sla = &ctx.config.sla;
    let budget = (!sla.environments.is_empty()).then(|| crate::sla::Budget::now(sla, &ledger)).transpose()?;
    let mut lines = vec![];
    for s in &out {
        let dash = || "-".to_string();
        let live = match (&s.live, s.answers_health, s.verdict) {
            (Some(l), true, Some(true)) => format!("{l}, healthy"),
            (Some(l), true, Some(false)) => format!("{l}, FAILING its checks (its newest recorded verdict)"),
            (Some(l), true, None) => format!("{l}, serving; no recorded check yet"),
            (Some(l), false, _) => format!("{l}, NOT healthy (its health path does not answer)"),
            (None, ..) => "nothing runs".into(),
        };
        lines.push(format!("{}: {live}", s.env));
        let warm = match (&s.warm_previous, &s.warm_until) {
            (Some(w), Some(u)) => format!("{w}, without traffic until {u}"),
            _ => "none".into(),
        };
        lines.push(format!(
            "  since {} by {}; last known good {}; warm previous: {warm}",
            s.since.clone().unwrap_or_else(dash),
            s.deployed_by.clone().unwrap_or_else(dash),
            s.last_known_good.clone().unwrap_or_else(dash)
        ));
        if let Some(h) = &s.locked_by {
            lines.push(format!("  locked by {h}"));
        }
        if s.open_incidents > 0 {
            lines.push(format!("  {} open incident(s)", s.open_incidents));
        }
        if let Some(st) = &s.stopped {
            lines.push(format!("  stopped by hand at {st}"));
        }
        if let Some(u) = &s.unfinished {
            lines.push(format!("  UNFINISHED: {u}"));
        }
        if let Some(why) = &s.roll_forward_only {
            lines.push(format!(
                "  ROLL FORWARD ONLY: promoted though a rehearsed rollback from it would fail (accepted: {why})"
            ));
        }
    }
    if let Some(b) = &budget {
        lines.push(b.line());
    }
    ctx.ui.result(lines.join("\n"));
    Outcome::of(&Status { environments: out, budget })
}

// ---- history ----

/// One line of the history: a deployment, a verdict, an incident or a stop.
#[derive(Serialize)]
struct Event {
    at: String,
    env: String,
    kind: &'static str,
    version: Option<String>,
    outcome: String,
    detail: Option<String>,
    actor: Option<String>,
    #[serde(skip)]
    ms: crate::clock::Millis,
}

/// `safedeploy history [--env NAME] [--limit N]`: what happened, newest last.
pub fn history(ctx: &Ctx, only: Option<&str>, limit: usize) -> Result<Outcome> {
    if let Some(o) = only {
        ctx.config.environment(o)?;
    }
    let ledger = ctx.ledger_read_only()?;
    let mut events = vec![];
    for env in ctx.config.environments.keys().filter(|e| only.is_none_or(|o| o == e.as_str())) {
        events.extend(events_of(&ledger, env)?);
    }
    events.sort_by_key(|e| e.ms);
    let skip = events.len().saturating_sub(limit);
    let events: Vec<Event> = events.into_iter().skip(skip).collect();
    let mut lines = vec![];
    if skip > 0 {
        lines.push(format!("({skip} earlier event(s) not shown; --limit N shows more)"));
    }
    for e in &events {
        lines.push(format!(
            "{}  {:<10} {:<10} {:<12} {}{}{}",
            e.at,
            e.env,
            e.kind,
            e.version.as_deref().unwrap_or("-"),
            e.outcome,
            e.detail.as_deref().map(|d| format!(" — {}", first_line(d))).unwrap_or_default(),
            e.actor.as_deref().map(|a| format!(" [{a}]")).unwrap_or_default()
        ));
    }
    if events.is_empty() {
        lines.push("nothing recorded yet".into());
    }
    ctx.ui.result(lines.join("\n"));
    Outcome::of(&serde_json::json!({ "events": events, "not_shown": skip }))
}

/// Everything recorded of `env`: deployments, smoke verdicts, incidents and hand stops.
fn events_of(ledger: &crate::ledger::Ledger, env: &str) -> Result<Vec<Event>> {
    let mut events = vec![];
    for d in ledger.deployments(env)? {
        events.push(Event {
            at: rfc3339(d.started_at),
            ms: d.started_at,
            env: d.env,
            kind: "deployment",
            version: Some(d.label),
            outcome: match d.previous {
                Some(p) => format!("{} ({}, replacing {p})", d.outcome, d.action),
                None => format!("{} ({})", d.outcome, d.action),
            },
            detail: d.reason,
            actor: d.actor,
        });
    }
    for v in ledger.verifications(env)? {
        events.push(Event {
            at: rfc3339(v.at),
            ms: v.at,
            env: v.env,
            kind: "smoke",
            version: Some(v.label),
            outcome: if v.passed { "passed".into() } else { "failed".into() },
            detail: v.detail,
            actor: None,
        });
    }
    for i in ledger.incidents_of(env)? {
        let outcome = match (i.restored_at, i.downtime_ms) {
            (Some(_), Some(ms)) => {
                format!("restored {} after {}", i.restored_label.as_deref().unwrap_or("-"), crate::clock::human(ms))
            }
            _ => "open".into(),
        };
        events.push(Event {
            at: rfc3339(i.detected_at),
            ms: i.detected_at,
            env: i.env,
            kind: "incident",
            version: i.bad_label,
            outcome,
            detail: i.reason,
            actor: None,
        });
    }
    for s in ledger.stops(env)? {
        events.push(Event {
            at: rfc3339(s.at),
            ms: s.at,
            env: s.env,
            kind: "stop",
            version: s.label,
            outcome: "stopped by hand".into(),
            detail: s.reason,
            actor: s.actor,
        });
    }
    Ok(events)
}

fn first_line(s: &str) -> String {
    let l = s.lines().next().unwrap_or_default();
    if l.chars().count() > 120 { format!("{}…", l.chars().take(120).collect::<String>()) } else { l.to_string() }
}

// ---- stop ----

/// `safedeploy stop ENV --reason TEXT`: stops what runs there (the platform's own stop),
/// with the environment's lock held, and records it.
pub fn stop(ctx: &Ctx, env: &str, reason: Option<&str>) -> Result<Outcome> {
    let environment = ctx.config.environment(env)?;
    let who = crate::lock::Holder { tool: "safedeploy stop", actor: ctx.env.actor() };
    let _held = crate::lock::acquire(&ctx.state_dir, env, &who, ctx.dry_run)?;
    let ledger = ctx.ledger()?;
    let platform = ctx.platform()?;
    let live = platform.live(environment)?;
    platform.stop(environment)?;
    let label = live.as_ref().map(|l| l.label.as_str());
    ledger.record_stop(env, label, reason)?;
    if !ctx.dry_run {
        ctx.ui.result(format!("{env}: stopped{}", label.map(|l| format!(" ({l})")).unwrap_or_default()));
    }
    Outcome::of(&serde_json::json!({ "env": env, "stopped": label, "dry_run": ctx.dry_run }))
}

// ---- man pages ----

/// `safedeploy man --out DIR`: one page per binary (section 1), from their clap definitions
/// (`commands`: each binary's name and command line, as the tools define them).
pub fn man(
    fx: &crate::effects::Effects,
    out: &std::path::Path,
    commands: Vec<(&'static str, clap::Command)>,
) -> Result<Outcome> {
    crate::paths::not_an_option(out, "--out")?;
    if out.exists() && !out.is_dir() {
        return Err(crate::usage!("--out {}: exists and is not a directory", out.display()));
    }
    let mut written = vec![];
    for (name, cmd) in commands {
        let path = out.join(format!("{name}.1"));
        fx.exec.create_dir(out)?;
        fx.exec.effect(
            || format!("write {}", path.display()),
            || {
                let mut page = Vec::new();
                clap_mangen::Man::new(cmd.name(name)).render(&mut page)?;
                std::fs::write(&path, page).map_err(anyhow::Error::from)
            },
        )?;
        written.push(path);
    }
    if !fx.dry_run {
        fx.ui.result(format!("wrote {} man page(s) in {}", written.len(), out.display()));
    }
    Outcome::of(&serde_json::json!({ "pages": written }))
}
