//! smoke-check: prove an environment serves users, then keep watching.
//!
//! 1. **Wait live**: poll the version endpoint until the expected version answers
//!    `smoke.consecutive` times in a row (a rolling update mixes versions), retrying only
//!    transient answers — no connection, timeouts, 502/503/504, and 429 after its
//!    `Retry-After` — until `smoke.deadline`.
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

use crate::config::{Chain, Check, Datadog};
use crate::context::Ctx;
use crate::http::{Body, Poll, Request, Response};
use crate::{Outcome, usage, verdict};
use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub struct SmokeRequest<'a> {
    pub env: &'a str,
    pub expect_version: Option<&'a str>,
    pub record: bool,
    /// Keep checking for this long (a bake period).
    pub watch: Option<Duration>,
    /// Pause between watch rounds.
    pub interval: Duration,
    /// Requests per check, for the p95 latency budget.
    pub samples: u32,
    pub junit_out: Option<&'a Path>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub chain: String,
    pub name: String,
    pub passed: bool,
    pub skipped: bool,
    pub status: Option<u16>,
    /// Latency of each sample, in milliseconds.
    pub ms: Vec<u128>,
    pub detail: String,
}

/// The version label an answer of the version endpoint names: JSON `{"version": ..}` or text.
fn served_version(r: &Response) -> String {
    serde_json::from_str::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| v.get("version").and_then(|v| v.as_str()).map(str::to_string))
        .unwrap_or_else(|| r.body.trim().to_string())
}

/// Variables for `{{name}}`: run_id, version, captures; `env.NAME` reads the environment.
#[derive(Debug, Clone, Default)]
struct Vars(HashMap<String, String>);

impl Vars {
    fn apply(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else { break };
            let name = after[..end].trim();
            let value = match name.strip_prefix("env.") {
                Some(var) => Some(std::env::var(var).unwrap_or_default()),
                None => self.0.get(name).cloned(),
            };
            out.push_str(&rest[..start]);
            // An unknown name (a capture whose check failed) stays as written.
            out.push_str(&value.unwrap_or_else(|| rest[start..start + 2 + end + 2].to_string()));
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        out
    }
}

fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// Substitutes variables in every string of a JSON value.
fn apply_json(v: &serde_json::Value, vars: &Vars) -> serde_json::Value {
    match v {
        serde_json::Value::String(s) => serde_json::Value::String(vars.apply(s)),
        serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(|x| apply_json(x, vars)).collect()),
        serde_json::Value::Object(o) => o.iter().map(|(k, x)| (k.clone(), apply_json(x, vars))).collect(),
        other => other.clone(),
    }
}

fn request(base: &str, check: &Check, vars: &Vars, timeout: Duration) -> Request {
    let mut url = format!("{}{}", base.trim_end_matches('/'), vars.apply(&check.path));
    if !check.query.is_empty()
        && let Ok(mut u) = reqwest::Url::parse(&url)
    {
        u.query_pairs_mut().extend_pairs(check.query.iter().map(|(k, v)| (k.clone(), vars.apply(v))));
        url = u.to_string();
    }
    let mut req = Request::get(url).timeout(timeout);
    req.method = check.method.to_ascii_uppercase();
    req.follow_redirects = check.follow_redirects;
    req.headers = check.headers.iter().map(|(k, v)| (k.clone(), vars.apply(v))).collect();
    req.body = if let Some(form) = &check.form {
        Some(Body::Form(form.iter().map(|(k, v)| (k.clone(), vars.apply(v))).collect()))
    } else if let Some(j) = &check.json {
        Some(Body::Json(apply_json(&toml_to_json(j), vars)))
    } else {
        check.body.as_ref().map(|b| Body::Raw(vars.apply(b)))
    };
    req
}

fn json_select(body: &str, path: &str) -> Result<Option<serde_json::Value>, String> {
    let value: serde_json::Value = serde_json::from_str(body).map_err(|_| "the body is not JSON".to_string())?;
    let p = serde_json_path::JsonPath::parse(path).map_err(|e| e.to_string())?;
    Ok(p.query(&value).first().cloned())
}

/// The assertions of one check against its answer; the failures, empty when it passed.
fn judge(check: &Check, r: &Response, vars: &Vars) -> Vec<String> {
    let mut failures = vec![];
    if !check.expect_status.contains(&r.status) {
        let want: Vec<String> = check.expect_status.iter().map(u16::to_string).collect();
        failures.push(format!("status {} (expected {})", r.status, want.join(" or ")));
    }
    if let Some(needle) = &check.body_contains {
        let needle = vars.apply(needle);
        if !r.body.contains(&needle) {
            failures.push(format!("body does not contain {needle:?}"));
        }
    }
    if let Some(re) = &check.body_matches
        && !regex::Regex::new(re).is_ok_and(|re| re.is_match(&r.body))
    {
        failures.push(format!("body does not match /{re}/"));
    }
    for (path, want) in &check.json_equals {
        let want = apply_json(&toml_to_json(want), vars);
        match json_select(&r.body, path) {
            Ok(Some(got)) if got == want => {}
            Ok(Some(got)) => failures.push(format!("{path} is {got} (expected {want})")),
            Ok(None) => failures.push(format!("{path} selects nothing (expected {want})")),
            Err(e) => failures.push(format!("{path}: {e}")),
        }
    }
    for (name, want) in &check.header_equals {
        let want = vars.apply(want);
        match r.header(name) {
            Some(got) if got == want => {}
            Some(got) => failures.push(format!("header {name}: {got:?} (expected {want:?})")),
            None => failures.push(format!("header {name} missing (expected {want:?})")),
        }
    }
    for (name, re) in &check.header_matches {
        match r.header(name) {
            Some(got) if regex::Regex::new(re).is_ok_and(|re| re.is_match(got)) => {}
            Some(got) => failures.push(format!("header {name}: {got:?} does not match /{re}/")),
            None => failures.push(format!("header {name} missing (expected /{re}/)")),
        }
    }
    if let Some(max) = check.max_latency
        && r.elapsed > max.0
    {
        failures.push(format!("took {}ms (budget {}ms)", r.elapsed.as_millis(), max.0.as_millis()));
    }
    if r.truncated && !failures.is_empty() {
        failures.push(format!("body longer than {} bytes, judged on its start", crate::http::MAX_BODY));
    }
    failures
}

/// Takes the check's captures from its answer into `vars`.
fn capture(check: &Check, r: &Response, vars: &mut Vars) -> Result<(), String> {
    for (name, c) in &check.capture {
        let value = if let Some(path) = &c.json {
            match json_select(&r.body, path)? {
                Some(serde_json::Value::String(s)) => s,
                Some(other) => other.to_string(),
                None => return Err(format!("capture {name}: {path} selects nothing")),
            }
        } else if let Some(re) = &c.regex {
            let re = regex::Regex::new(re).map_err(|e| e.to_string())?;
            let caps = re.captures(&r.body).ok_or_else(|| format!("capture {name}: /{re}/ does not match the body"))?;
            caps.get(1).or_else(|| caps.get(0)).map(|m| m.as_str().to_string()).unwrap_or_default()
        } else if let Some(h) = &c.header {
            r.header(h).ok_or_else(|| format!("capture {name}: no header {h}"))?.to_string()
        } else {
            continue;
        };
        vars.0.insert(name.clone(), value);
    }
    Ok(())
}

fn p95(ms: &[u128]) -> u128 {
    let mut v = ms.to_vec();
    v.sort_unstable();
    let rank = ((v.len() as f64) * 0.95).ceil() as usize;
    v.get(rank.saturating_sub(1)).copied().unwrap_or(0)
}

fn run_chain(ctx: &Ctx, base: &str, chain: &Chain, vars: &Vars, samples: u32) -> Vec<CheckResult> {
    let mut vars = vars.clone();
    let mut out = vec![];
    let mut broken = false;
    let timeout = ctx.config.smoke.timeout.0;
    for check in &chain.checks {
        let mut result = CheckResult {
            chain: chain.name.clone(),
            name: check.name.clone(),
            passed: false,
            skipped: broken,
            status: None,
            ms: vec![],
            detail: "skipped: an earlier check of the chain failed".into(),
        };
        if broken {
            out.push(result);
            continue;
        }
        let req = request(base, check, &vars, timeout);
        // What a header carries (a key from the config or from {{env.X}}) is never printed.
        for (k, v) in &req.headers {
            if !crate::http::harmless_header(k) {
                ctx.ui.redactor.add_value(v.clone());
            }
        }
        let mut failures = vec![];
        let mut body_start = String::new();
        for sample in 0..samples.max(1) {
            match ctx.http.send(&req) {
                Ok(None) => {
                    result.passed = true;
                    result.detail = "dry run".into();
                    break;
                }
                Err(e) => {
                    failures.push(e.to_string());
                    break;
                }
                Ok(Some(r)) => {
                    result.status = Some(r.status);
                    result.ms.push(r.elapsed.as_millis());
                    failures.extend(judge(check, &r, &vars));
                    if sample == 0
                        && failures.is_empty()
                        && let Err(e) = capture(check, &r, &mut vars)
                    {
                        failures.push(e);
                    }
                    body_start = r.body_start();
                }
            }
            if !failures.is_empty() {
                break;
            }
        }
        if let Some(budget) = check.p95_latency
            && failures.is_empty()
            && result.ms.len() > 1
        {
            let p = p95(&result.ms);
            if p > budget.0.as_millis() {
                failures.push(format!(
                    "p95 {p}ms over {} samples (budget {}ms)",
                    result.ms.len(),
                    budget.0.as_millis()
                ));
            }
        }
        if result.detail != "dry run" {
            let status = result.status.map(|s| s.to_string()).unwrap_or_else(|| "no answer".into());
            result.passed = failures.is_empty();
            result.detail = if failures.is_empty() {
                let took = if result.ms.len() > 1 {
                    format!("p95 {}ms", p95(&result.ms))
                } else {
                    format!("{}ms", result.ms[0])
                };
                format!("{} {} → {status} in {took}", req.method, req.url)
            } else {
                let body = if body_start.is_empty() { String::new() } else { format!("; body: {body_start}") };
                format!("{} {} → {status}: {}{body}", req.method, req.url, failures.join("; "))
            };
        }
        broken |= !result.passed;
        out.push(result);
    }
    out
}

/// One round: every chain, side by side; results in the chains' order. A verdict is built
/// only from results that exist: a chain whose thread panicked, or that gave fewer results than
/// it has checks, is not a pass but "could not act" (exit 3), so nothing is recorded from it.
fn run_round(ctx: &Ctx, base: &str, chains: &[Chain], vars: &Vars, samples: u32) -> Result<Vec<CheckResult>> {
    let joined: Vec<std::thread::Result<Vec<CheckResult>>> = std::thread::scope(|s| {
        let handles: Vec<_> = chains
            .iter()
            .map(|c| {
                s.spawn(move || {
                    crate::failpoint::panic_at("smoke chain");
                    run_chain(ctx, base, c, vars, samples)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join()).collect()
    });
    let mut results = vec![];
    for (chain, outcome) in chains.iter().zip(joined) {
        match outcome {
            Ok(r) if r.len() == chain.checks.len() => results.extend(r),
            Ok(r) => {
                return Err(crate::could_not_act!(
                    "smoke chain {:?} gave {} result(s) for {} check(s); no verdict is recorded",
                    chain.name,
                    r.len(),
                    chain.checks.len()
                ));
            }
            Err(panic) => {
                return Err(crate::could_not_act!(
                    "smoke chain {:?} stopped with an internal error ({}); no verdict is recorded",
                    chain.name,
                    crate::error::panic_message(&*panic)
                ));
            }
        }
    }
    if results.is_empty() {
        return Err(crate::could_not_act!("no smoke check ran; no verdict is recorded"));
    }
    Ok(results)
}

#[derive(Debug, Serialize)]
struct MonitorState {
    id: u64,
    state: String,
    ok: bool,
}

/// The Datadog monitors' states (`GET /api/v1/monitor/{id}`); each must be `OK`.
fn monitors(ctx: &Ctx, dd: &Datadog) -> Result<Vec<MonitorState>> {
    let key = |var: &str| {
        std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| usage!("smoke.datadog: {var} is not set; the monitor API needs it"))
    };
    let (api, app) = (key(&dd.api_key_env)?, key(&dd.app_key_env)?);
    let mut out = vec![];
    for id in &dd.monitors {
        let mut req =
            Request::get(format!("{}/api/v1/monitor/{id}", dd.api_base())).timeout(ctx.config.smoke.timeout.0);
        req.headers = vec![("DD-API-KEY".into(), api.clone()), ("DD-APPLICATION-KEY".into(), app.clone())];
        let Some(r) = ctx.http.send(&req)? else { continue };
        if r.status != 200 {
            return Err(crate::could_not_act!(
                "Datadog monitor {id}: GET {} answered {} {}",
                req.url,
                r.status,
                r.body_start()
            ));
        }
        let state = serde_json::from_str::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| v.get("overall_state").and_then(|s| s.as_str()).map(str::to_string))
            .ok_or_else(|| crate::could_not_act!("Datadog monitor {id}: the answer has no overall_state"))?;
        out.push(MonitorState { id: *id, ok: state == "OK", state });
    }
    Ok(out)
}

/// Phase 1: until the environment answers the expected version `consecutive` times in a row.
fn wait_live(ctx: &Ctx, url: &str, expected: Option<&str>) -> Result<Result<String, String>> {
    let smoke = &ctx.config.smoke;
    let version_url = format!("{}{}", url.trim_end_matches('/'), smoke.version_path);
    let probe = Request::get(&version_url).timeout(Duration::from_secs(5));
    if !ctx.dry_run && !smoke.initial_delay.0.is_zero() {
        std::thread::sleep(smoke.initial_delay.0);
    }
    let deadline = Instant::now() + smoke.deadline.0;
    let mut streak = 0;
    let mut last_seen = String::new();
    let answer = ctx.http.poll(&probe, smoke.interval.0, deadline, |a| {
        if ctx.interrupted.load(Ordering::SeqCst) {
            return Poll::Abort(crate::error::Error::interrupted("interrupted while waiting for the version").into());
        }
        match a {
            Ok(r) if (200..300).contains(&r.status) => {
                let served = served_version(r);
                let right = expected.is_none_or(|want| served == want);
                last_seen = served;
                streak = if right { streak + 1 } else { 0 };
                if streak >= smoke.consecutive.max(1) { Poll::Done } else { Poll::Again }
            }
            Ok(r) if r.status == 429 => {
                streak = 0;
                r.retry_after().map_or(Poll::Again, Poll::After)
            }
            Ok(r) if matches!(r.status, 502..=504) => {
                streak = 0;
                Poll::Again
            }
            Err(_) => {
                streak = 0;
                Poll::Again
            }
            Ok(_) => Poll::Done,
        }
    })?;
    let want = expected.unwrap_or("any version");
    Ok(match answer {
        None => Ok(expected.unwrap_or("(unknown)").to_string()),
        Some(Ok(r)) if (200..300).contains(&r.status) && streak >= smoke.consecutive.max(1) => Ok(served_version(&r)),
        Some(Ok(r)) if (200..300).contains(&r.status) => {
            Err(format!("it still serves {last_seen:?}, not {want}, after {}s", smoke.deadline.0.as_secs()))
        }
        Some(Ok(r)) => Err(format!("GET {version_url} answered {} {}", r.status, r.body_start())),
        Some(Err(e)) => Err(e.to_string()),
    })
}

pub fn smoke_check(ctx: &Ctx, req: &SmokeRequest<'_>) -> Result<Outcome> {
    let env = ctx.config.environment(req.env)?;
    let chains = ctx.config.smoke_chains()?;
    if let Some(v) = req.expect_version {
        crate::config::validate_label(v)?;
    }
    if req.samples == 0 {
        return Err(usage!("--samples: expected at least 1"));
    }
    let datadog = ctx.config.smoke.datadog.as_ref().filter(|_| req.watch.is_some());
    let ledger = ctx.ledger()?;
    let platform = ctx.platform()?;
    let expected = match req.expect_version {
        Some(v) => Some(v.to_string()),
        None => platform.live(env)?.map(|l| l.label),
    };
    let started = Instant::now();

    let served = match wait_live(ctx, &env.url, expected.as_deref())? {
        Ok(v) => v,
        Err(why) => {
            let want = expected.as_deref().unwrap_or("any version");
            let msg =
                format!("{} did not serve {want} within {}s: {why}", req.env, ctx.config.smoke.deadline.0.as_secs());
            if req.record
                && let Some(label) = &expected
            {
                record(ctx, &ledger, req.env, label, false, &msg)?;
            }
            return Err(verdict!("{msg}"));
        }
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

    let mut base_vars = Vars::default();
    base_vars.0.insert("run_id".into(), run_id());
    base_vars.0.insert("version".into(), served.clone());

    let mut round = 1;
    let mut results = run_round(ctx, &env.url, &chains, &base_vars, req.samples)?;
    let mut monitor_states = match datadog {
        Some(dd) => monitors(ctx, dd)?,
        None => vec![],
    };
    report_round(ctx, round, &results, &monitor_states);
    let bake_start = Instant::now();
    if let Some(watch) = req.watch.filter(|_| !ctx.dry_run) {
        while passed(&results, &monitor_states) && bake_start.elapsed() + req.interval <= watch {
            let pause_until = Instant::now() + req.interval;
            while Instant::now() < pause_until {
                ctx.check_interrupt(|| format!("the bake of {served} in {} stopped after {round} round(s)", req.env))?;
                std::thread::sleep(Duration::from_millis(50).min(req.interval));
            }
            round += 1;
            base_vars.0.insert("run_id".into(), run_id());
            results = run_round(ctx, &env.url, &chains, &base_vars, req.samples)?;
            monitor_states = match datadog {
                Some(dd) => monitors(ctx, dd)?,
                None => vec![],
            };
            report_round(ctx, round, &results, &monitor_states);
            ctx.ui.status(format!(
                "{}: bake round {round} {} ({}s of {}s)",
                req.env,
                if passed(&results, &monitor_states) { "passed" } else { "FAILED" },
                bake_start.elapsed().as_secs(),
                watch.as_secs()
            ));
        }
    }

    let ok = passed(&results, &monitor_states);
    let first_failure = results
        .iter()
        .find(|r| !r.passed && !r.skipped)
        .map(|r| format!("{} / {}: {}", r.chain, r.name, r.detail))
        .or_else(|| monitor_states.iter().find(|m| !m.ok).map(|m| format!("Datadog monitor {} is {}", m.id, m.state)));
    let detail = first_failure.clone().unwrap_or_else(|| "all checks passed".into());
    if req.record && ctx.dry_run {
        ctx.ui.plan(format!("# ledger: would record the verdict of {served} in {}", req.env));
    } else if req.record {
        record(ctx, &ledger, req.env, &served, ok, &detail)?;
    }
    if let Some(out) = req.junit_out {
        write_junit(ctx, out, req.env, &results)?;
    }
    let summary = json!({
        "env": req.env, "version": served, "passed": ok, "dry_run": ctx.dry_run, "rounds": round,
        "duration_ms": started.elapsed().as_millis(), "checks": results, "monitors": monitor_states,
    });
    if ctx.dry_run {
        return Ok(Outcome::ok(summary));
    }
    if ok {
        let baked = req.watch.map(|_| format!(", {round} round(s) of bake")).unwrap_or_default();
        ctx.ui.result(format!(
            "{}: {served} passed {} check(s){baked} in {:.1}s",
            req.env,
            results.len(),
            started.elapsed().as_secs_f64()
        ));
        Ok(Outcome::ok(summary))
    } else {
        let when = if round > 1 {
            format!(" in bake round {round} after {}s", bake_start.elapsed().as_secs())
        } else {
            String::new()
        };
        Ok(Outcome::verdict(summary, format!("{}: {served} failed the smoke checks{when} — {detail}", req.env)))
    }
}

/// Zero results is never a pass.
fn passed(results: &[CheckResult], monitors: &[MonitorState]) -> bool {
    !results.is_empty() && results.iter().all(|r| r.passed && !r.skipped) && monitors.iter().all(|m| m.ok)
}

fn report_round(ctx: &Ctx, round: u32, results: &[CheckResult], monitors: &[MonitorState]) {
    if ctx.dry_run {
        return;
    }
    // Later rounds print only what failed, so a long bake stays readable.
    for r in results.iter().filter(|r| round == 1 || !r.passed) {
        ctx.ui.check(r.passed, format!("{} / {}: {}", r.chain, r.name, r.detail));
    }
    for m in monitors.iter().filter(|m| round == 1 || !m.ok) {
        ctx.ui.check(m.ok, format!("Datadog monitor {}: {}", m.id, m.state));
    }
}

fn record(ctx: &Ctx, ledger: &crate::ledger::Ledger, env: &str, label: &str, passed: bool, detail: &str) -> Result<()> {
    if ledger.version(label)?.is_none() {
        ctx.ui.warn(format!("{env} serves {label:?}, which the ledger does not know; nothing recorded"));
        return Ok(());
    }
    ledger.record_verification(env, label, passed, detail)?;
    ctx.ui.status(if passed {
        format!("{label} is now the last known good in {env}")
    } else {
        format!("recorded the failure of {label} in {env}")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p95_of_samples() {
        assert_eq!(
            p95(&[10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150, 160, 170, 180, 190, 1000]),
            190
        );
        assert_eq!(p95(&[5]), 5);
    }

    #[test]
    fn variables_and_captures() {
        let mut vars = Vars::default();
        vars.0.insert("code".into(), "abc".into());
        assert_eq!(vars.apply("/{{code}}?v={{ code }}&x={{unknown}}"), "/abc?v=abc&x={{unknown}}");
        let r = Response {
            status: 201,
            headers: vec![("Location".into(), "/x/1".into())],
            body: r#"{"code": "q1", "n": 3}"#.into(),
            truncated: false,
            elapsed: Duration::from_millis(1),
        };
        let check: Check = toml::from_str(
            r#"name = "c"
            path = "/"
            capture = { a = { json = "$.code" }, b = { regex = '"n": (\d+)' }, c = { header = "location" } }"#,
        )
        .expect("check");
        capture(&check, &r, &mut vars).expect("captures");
        assert_eq!((vars.0["a"].as_str(), vars.0["b"].as_str(), vars.0["c"].as_str()), ("q1", "3", "/x/1"));
    }
}
