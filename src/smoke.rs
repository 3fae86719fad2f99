//! smoke-check: prove an environment serves users. First wait until it answers the expected
//! version (transient failures retried until a deadline), then run the configured request chain
//! in order — each step's status, body and header assertions — with redirects never followed, so
//! a short link must *redirect*. `--record` writes the verdict to the ledger: a pass makes the
//! version the environment's last known good; a failure marks when trouble was seen.

use crate::config::Check;
use crate::context::Ctx;
use crate::http::{Body, Poll, Request, Response};
use crate::{Outcome, verdict};
use anyhow::Result;
use serde::Serialize;
use serde_json::json;
use std::time::{Duration, Instant};

pub struct SmokeRequest<'a> {
    pub env: &'a str,
    pub expect_version: Option<&'a str>,
    pub record: bool,
}

#[derive(Debug, Serialize)]
struct CheckResult {
    name: String,
    passed: bool,
    skipped: bool,
    status: Option<u16>,
    ms: Option<u128>,
    detail: String,
}

/// The version label an answer of the version endpoint names: JSON `{"version": ..}` or text.
fn served_version(r: &Response) -> String {
    serde_json::from_str::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| v.get("version").and_then(|v| v.as_str()).map(str::to_string))
        .unwrap_or_else(|| r.body.trim().to_string())
}

/// Transient answers are waited out: no connection, timeouts, 502/503/504, 429.
fn transient(a: &Result<Response>) -> bool {
    match a {
        Err(_) => true,
        Ok(r) => matches!(r.status, 429 | 502 | 503 | 504),
    }
}

struct Vars {
    run_id: String,
    version: String,
}

impl Vars {
    fn apply(&self, s: &str) -> String {
        s.replace("{{run_id}}", &self.run_id).replace("{{version}}", &self.version)
    }
}

fn request(base: &str, check: &Check, vars: &Vars) -> Request {
    let mut req = Request::get(format!("{}{}", base.trim_end_matches('/'), vars.apply(&check.path)));
    req.method = check.method.to_ascii_uppercase();
    req.headers = check.headers.iter().map(|(k, v)| (k.clone(), vars.apply(v))).collect();
    req.body = if let Some(form) = &check.form {
        Some(Body::Form(form.iter().map(|(k, v)| (k.clone(), vars.apply(v))).collect()))
    } else if let Some(j) = &check.json {
        let text = vars.apply(&serde_json::to_string(j).unwrap_or_default());
        Some(Body::Json(serde_json::from_str(&text).unwrap_or_default()))
    } else {
        check.body.as_ref().map(|b| Body::Raw(vars.apply(b)))
    };
    req
}

/// The assertions of one check against its answer; the failures, empty when it passed.
fn judge(check: &Check, r: &Response, vars: &Vars) -> Vec<String> {
    let mut failures = vec![];
    if !check.expect_status.contains(&r.status) {
        failures.push(format!("status {} (expected {})", r.status, join(&check.expect_status)));
    }
    if let Some(needle) = &check.body_contains {
        let needle = vars.apply(needle);
        if !r.body.contains(&needle) {
            failures.push(format!("body does not contain {needle:?}"));
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
    if let Some(max) = check.max_latency
        && r.elapsed > max.0
    {
        failures.push(format!("took {}ms (budget {}ms)", r.elapsed.as_millis(), max.0.as_millis()));
    }
    failures
}

fn join(codes: &[u16]) -> String {
    codes.iter().map(u16::to_string).collect::<Vec<_>>().join(" or ")
}

pub fn smoke_check(ctx: &Ctx, req: &SmokeRequest<'_>) -> Result<Outcome> {
    let env = ctx.config.environment(req.env)?;
    let smoke = &ctx.config.smoke;
    if let Some(v) = req.expect_version {
        crate::config::validate_label(v)?;
    }
    let ledger = ctx.ledger()?;
    let platform = ctx.platform()?;
    let expected = match req.expect_version {
        Some(v) => Some(v.to_string()),
        None => platform.live(env)?.map(|l| l.label),
    };
    let started = Instant::now();

    // Phase 1: wait until the environment serves the expected version.
    let version_url = format!("{}{}", env.url.trim_end_matches('/'), smoke.version_path);
    let probe = Request::get(&version_url).timeout(Duration::from_secs(5));
    let deadline = started + smoke.deadline.0;
    let answer = ctx.http.poll(&probe, smoke.interval.0, deadline, |a| {
        if ctx.interrupted.load(std::sync::atomic::Ordering::SeqCst) {
            return Poll::Abort(crate::error::Error::interrupted("interrupted while waiting for the version").into());
        }
        match (a, &expected) {
            (Ok(r), Some(want)) if (200..300).contains(&r.status) && &served_version(r) == want => Poll::Done,
            (Ok(r), None) if (200..300).contains(&r.status) => Poll::Done,
            (a, _) if transient(a) => Poll::Again,
            (Ok(r), Some(_)) if (200..300).contains(&r.status) => Poll::Again, // another version, still rolling
            _ => Poll::Done,
        }
    })?;
    let served = match &answer {
        None => expected.clone().unwrap_or_else(|| "(unknown)".into()),
        Some(Ok(r)) if (200..300).contains(&r.status) => served_version(r),
        Some(Ok(r)) => {
            return fail_live(
                ctx,
                &ledger,
                req,
                &expected,
                format!("GET {version_url} answered {} {}", r.status, r.body_start()),
            );
        }
        Some(Err(e)) => return fail_live(ctx, &ledger, req, &expected, e.to_string()),
    };
    if let Some(want) = &expected
        && &served != want
    {
        return fail_live(
            ctx,
            &ledger,
            req,
            &expected,
            format!("it still serves {served:?} after {}s", smoke.deadline.0.as_secs()),
        );
    }
    if answer.is_some() {
        ctx.ui.status(format!(
            "{}: serving {served} (after {:.1}s); running {} check(s)",
            env.name,
            started.elapsed().as_secs_f64(),
            smoke.checks.len()
        ));
    }

    // Phase 2: the chain, in order; a failed step skips the rest (they depend on it).
    let vars = Vars { run_id: run_id(), version: served.clone() };
    let mut results: Vec<CheckResult> = vec![];
    let mut broken = false;
    for check in &smoke.checks {
        let r = request(&env.url, check, &vars);
        if broken {
            ctx.ui.check(false, format!("{}: skipped (an earlier step failed)", check.name));
            results.push(CheckResult {
                name: check.name.clone(),
                passed: false,
                skipped: true,
                status: None,
                ms: None,
                detail: "skipped".into(),
            });
            continue;
        }
        let result = match ctx.http.send(&r) {
            Ok(None) => continue,
            Ok(Some(resp)) => {
                let failures = judge(check, &resp, &vars);
                let detail = if failures.is_empty() {
                    format!("{} {} → {} in {}ms", r.method, r.url, resp.status, resp.elapsed.as_millis())
                } else {
                    format!(
                        "{} {} → {}: {}; body: {}",
                        r.method,
                        r.url,
                        resp.status,
                        failures.join("; "),
                        resp.body_start()
                    )
                };
                CheckResult {
                    name: check.name.clone(),
                    passed: failures.is_empty(),
                    skipped: false,
                    status: Some(resp.status),
                    ms: Some(resp.elapsed.as_millis()),
                    detail,
                }
            }
            Err(e) => CheckResult {
                name: check.name.clone(),
                passed: false,
                skipped: false,
                status: None,
                ms: None,
                detail: e.to_string(),
            },
        };
        ctx.ui.check(result.passed, format!("{}: {}", check.name, result.detail));
        broken |= !result.passed;
        results.push(result);
    }

    let passed = !broken;
    let failed: Vec<&CheckResult> = results.iter().filter(|r| !r.passed && !r.skipped).collect();
    let detail =
        failed.first().map(|r| format!("{}: {}", r.name, r.detail)).unwrap_or_else(|| "all checks passed".into());
    if req.record && ctx.dry_run {
        ctx.ui.plan(format!("# ledger: would record the verdict of {served} in {}", req.env));
    } else if req.record {
        record(ctx, &ledger, req.env, &served, passed, &detail)?;
    }
    let summary = json!({
        "env": req.env, "version": served, "passed": passed, "dry_run": ctx.dry_run,
        "duration_ms": started.elapsed().as_millis(), "checks": results,
    });
    if ctx.dry_run {
        return Ok(Outcome::ok(summary));
    }
    if passed {
        ctx.ui.result(format!(
            "{}: {served} passed {} check(s) in {:.1}s",
            req.env,
            results.len(),
            started.elapsed().as_secs_f64()
        ));
        Ok(Outcome::ok(summary))
    } else {
        Ok(Outcome::verdict(summary, format!("{}: {served} failed the smoke checks — {detail}", req.env)))
    }
}

fn record(ctx: &Ctx, ledger: &crate::ledger::Ledger, env: &str, label: &str, passed: bool, detail: &str) -> Result<()> {
    if ledger.version(label)?.is_none() && !ctx.dry_run {
        ctx.ui.warn(format!("{env} serves {label:?}, which the ledger does not know; nothing recorded"));
        return Ok(());
    }
    ledger.record_verification(env, label, passed, detail)?;
    let what = if passed {
        format!("{label} is now the last known good in {env}")
    } else {
        format!("recorded the failure of {label} in {env}")
    };
    if !ctx.dry_run {
        ctx.ui.status(what);
    }
    Ok(())
}

fn fail_live(
    ctx: &Ctx,
    ledger: &crate::ledger::Ledger,
    req: &SmokeRequest<'_>,
    expected: &Option<String>,
    why: String,
) -> Result<Outcome> {
    let want = expected.as_deref().unwrap_or("any version");
    let msg = format!("{} did not serve {want} within {}s: {why}", req.env, ctx.config.smoke.deadline.0.as_secs());
    if req.record
        && let Some(label) = expected
    {
        record(ctx, ledger, req.env, label, false, &msg)?;
    }
    Err(verdict!("{msg}"))
}

/// Unique per run, so test data of two runs never collides.
fn run_id() -> String {
    format!("{:x}{:x}", crate::clock::now_ms(), std::process::id())
}
