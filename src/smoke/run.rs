//! One round of checks: each chain on a thread of its own, each chain's checks in order, a
//! check's request built from its templates, its answer judged by its assertions, its captures
//! taken for the checks after it. A chain that failed skips the rest of its checks.

use super::spec::{Assertion, BodyTemplate, CaptureFrom, Chain, Check};
use super::template::Vars;
use crate::context::Ctx;
use crate::http::{Body, Request, Response};
use anyhow::Result;
use serde::Serialize;
use std::time::Duration;

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

/// The header every request of a check carries, with the run's id, so the app and its
/// metrics can tell the checks' traffic (and what it made) from the users'. The User-Agent
/// names safedeploy too.
pub const CHECK_HEADER: &str = "X-Safedeploy-Check";

fn request(base: &str, check: &Check, vars: &Vars, timeout: Duration) -> Request {
    let mut url = format!("{}{}", base.trim_end_matches('/'), check.path.render(vars));
    if !check.query.is_empty()
        && let Ok(mut u) = reqwest::Url::parse(&url)
    {
        u.query_pairs_mut().extend_pairs(check.query.iter().map(|(k, v)| (k.clone(), v.render(vars))));
        url = u.to_string();
    }
    let mut req = Request::get(url).timeout(timeout);
    req.method = check.method.as_str().to_string();
    req.follow_redirects = check.follow_redirects;
    req.headers = check.headers.iter().map(|(k, v)| (k.clone(), v.render(vars))).collect();
    if !req.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(CHECK_HEADER)) {
        req.headers.push((CHECK_HEADER.to_string(), vars.run_id.clone()));
    }
    req.body = check.body.as_ref().map(|b| match b {
        BodyTemplate::Form(form) => Body::Form(form.iter().map(|(k, v)| (k.clone(), v.render(vars))).collect()),
        BodyTemplate::Json(j) => Body::Json(j.render(vars)),
        BodyTemplate::Raw(t) => Body::Raw(t.render(vars)),
    });
    req
}

/// The assertions of one check against its answer; the failures, empty when it passed.
fn judge(check: &Check, r: &Response, vars: &Vars) -> Vec<String> {
    let mut failures = vec![];
    for a in &check.assertions {
        match a {
            Assertion::Status(want) if !want.contains(&r.status) => {
                let want: Vec<String> = want.iter().map(u16::to_string).collect();
                failures.push(format!("status {} (expected {})", r.status, want.join(" or ")));
            }
            Assertion::Status(_) => {}
            Assertion::BodyContains(t) => {
                let needle = t.render(vars);
                if !r.body.contains(&needle) {
                    failures.push(format!("body does not contain {needle:?}"));
                }
            }
            Assertion::BodyMatches(re) if !re.0.is_match(&r.body) => {
                failures.push(format!("body does not match /{}/", re.as_str()));
            }
            Assertion::BodyMatches(_) => {}
            Assertion::JsonEquals(path, want) => {
                let want = want.render(vars);
                let p = path.as_str();
                match path.first(&r.body) {
                    Ok(Some(got)) if got == want => {}
                    Ok(Some(got)) => failures.push(format!("{p} is {got} (expected {want})")),
                    Ok(None) => failures.push(format!("{p} selects nothing (expected {want})")),
                    Err(e) => failures.push(format!("{p}: {e}")),
                }
            }
            Assertion::HeaderEquals(name, want) => {
                let want = want.render(vars);
                match r.header(name) {
                    Some(got) if got == want => {}
                    Some(got) => failures.push(format!("header {name}: {got:?} (expected {want:?})")),
                    None => failures.push(format!("header {name} missing (expected {want:?})")),
                }
            }
            Assertion::HeaderMatches(name, re) => match r.header(name) {
                Some(got) if re.0.is_match(got) => {}
                Some(got) => failures.push(format!("header {name}: {got:?} does not match /{}/", re.as_str())),
                None => failures.push(format!("header {name} missing (expected /{}/)", re.as_str())),
            },
            Assertion::MaxLatency(max) if r.elapsed > *max => {
                failures.push(format!("took {}ms (budget {}ms)", r.elapsed.as_millis(), max.as_millis()));
            }
            Assertion::MaxLatency(_) => {}
        }
    }
    if r.truncated && !failures.is_empty() {
        failures.push(format!("body longer than {} bytes, judged on its start", crate::http::MAX_BODY));
    }
    failures
}

/// Takes the check's captures from its answer into `vars`.
fn capture(check: &Check, r: &Response, vars: &mut Vars) -> Result<(), String> {
    for (name, from) in &check.captures {
        let value = match from {
            CaptureFrom::Json(path) => match path.first(&r.body)? {
                Some(serde_json::Value::String(s)) => s,
                Some(other) => other.to_string(),
                None => return Err(format!("capture {name}: {} selects nothing", path.as_str())),
            },
            CaptureFrom::Regex(re) => {
                let caps =
                    re.0.captures(&r.body)
                        .ok_or_else(|| format!("capture {name}: /{}/ does not match the body", re.as_str()))?;
                caps.get(1).or_else(|| caps.get(0)).map(|m| m.as_str().to_string()).unwrap_or_default()
            }
            CaptureFrom::Header(h, None) => {
                r.header(h).ok_or_else(|| format!("capture {name}: no header {h}"))?.to_string()
            }
            CaptureFrom::Header(h, Some(re)) => {
                let mut values = r.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(h)).map(|(_, v)| v);
                let caps = values
                    .find_map(|v| re.0.captures(v))
                    .ok_or_else(|| format!("capture {name}: no header {h} matches /{}/", re.as_str()))?;
                caps.get(1).or_else(|| caps.get(0)).map(|m| m.as_str().to_string()).unwrap_or_default()
            }
        };
        vars.captures.insert(name.clone(), value);
    }
    Ok(())
}

pub fn p95(ms: &[u128]) -> u128 {
    let mut v = ms.to_vec();
    v.sort_unstable();
    let rank = ((v.len() as f64) * 0.95).ceil() as usize;
    v.get(rank.saturating_sub(1)).copied().unwrap_or(0)
}

/// What the samples of one check gave.
struct Samples {
    status: Option<u16>,
    ms: Vec<u128>,
    failures: Vec<String>,
    body_start: String,
    dry_run: bool,
}

/// Sends the check's request `samples` times (stopping at the first failure), judging each
/// answer and taking the captures from the first.
fn sample(ctx: &Ctx, check: &Check, req: &Request, vars: &mut Vars, samples: u32) -> Samples {
    let mut s = Samples { status: None, ms: vec![], failures: vec![], body_start: String::new(), dry_run: false };
    for n in 0..samples.max(1) {
        match send_through_blips(ctx, check, req) {
            Ok(None) => {
                s.dry_run = true;
                break;
            }
            Err(e) => s.failures.push(e.to_string()),
            Ok(Some(mut r)) => {
                if let Some((name, value)) = &vars.proxy_header {
                    // As the proxy does: its own value, whatever the app sent.
                    r.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
                    r.headers.push((name.clone(), value.clone()));
                }
                s.status = Some(r.status);
                s.ms.push(r.elapsed.as_millis());
                s.failures.extend(judge(check, &r, vars));
                if n == 0
                    && s.failures.is_empty()
                    && let Err(e) = capture(check, &r, vars)
                {
                    s.failures.push(e);
                }
                // A value captured under a secret-looking name (a session cookie, a token) is
                // masked from here on, wherever a later request or message would show it.
                for (name, _) in &check.captures {
                    if crate::redact::is_secret_name(name)
                        && let Some(v) = vars.captures.get(name)
                    {
                        ctx.ui.redactor.add_value(v.clone());
                    }
                }
                s.body_start = r.body_start();
            }
        }
        if !s.failures.is_empty() {
            break;
        }
    }
    if let Some(budget) = check.p95_latency
        && s.failures.is_empty()
        && s.ms.len() > 1
    {
        let p = p95(&s.ms);
        if p > budget.as_millis() {
            s.failures.push(format!("p95 {p}ms over {} samples (budget {}ms)", s.ms.len(), budget.as_millis()));
        }
    }
    s
}

/// Transient answers a request is sent again after, up to [`BLIP_RETRIES`] times: what a proxy
/// or load balancer says when it briefly has nowhere to send it (502, 503, 504), a rate limit
/// (429, after its `Retry-After`, at most [`MAX_RETRY_AFTER`]), a refused or reset connection.
/// The pauses double from [`BLIP_PAUSE`] (0.25, 0.5, 1 s: a blip of up to 1.75 s passes). A
/// check that expects the status is judged on it at once; a timeout is not retried (a hang must
/// not take four timeouts to fail). A version that keeps answering so fails as before, 1.75 s
/// later. (Two retries 0.2 s apart failed 2 of 33 healthy versions with a 0.3 s 502 blip in
/// scripts/accuracy: each gunicorn worker blipped at its own moment.)
const BLIP_RETRIES: u32 = 3;
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);
const BLIP_PAUSE: Duration = Duration::from_millis(250);

fn send_through_blips(ctx: &Ctx, check: &Check, req: &Request) -> Result<Option<crate::http::Response>> {
    let expected = |status: u16| {
        check.assertions.iter().any(|a| matches!(a, super::spec::Assertion::Status(s) if s.contains(&status)))
    };
    let mut tries = 0;
    loop {
        let answer = ctx.http.send(req);
        let pause = match &answer {
            Ok(Some(r)) if matches!(r.status, 429 | 502 | 503 | 504) && !expected(r.status) => {
                Some(r.retry_after().map_or(BLIP_PAUSE * 2u32.pow(tries), |d| d.min(MAX_RETRY_AFTER)))
            }
            Err(e) if !format!("{e:#}").contains("timed out") => Some(BLIP_PAUSE * 2u32.pow(tries)),
            _ => None,
        };
        match pause {
            Some(p) if tries < BLIP_RETRIES => {
                tries += 1;
                ctx.ui.detail(format!(
                    "{} {}: a transient answer; sending it again (try {})",
                    req.method,
                    req.url,
                    tries + 1
                ));
                std::thread::sleep(p);
            }
            _ => return answer,
        }
    }
}

fn run_chain(ctx: &Ctx, base: &str, chain: &Chain, vars: &Vars, samples: u32) -> Vec<CheckResult> {
    let mut vars = vars.clone();
    // A jar of the chain's own for this round: the chain is one visitor.
    let jar = std::sync::Arc::new(crate::http::Cookies::default());
    let out = run_checks(ctx, base, chain, &mut vars, samples, &jar);
    cleanup(ctx, base, chain, &mut vars, &jar);
    out
}

/// The first capture `check` uses whose value (`None`: not captured) `lacks` says is wanting.
/// Both callers count an empty value as wanting: with it, a request would go to `/` for
/// `/{{code}}`, and a check would look for an empty text that every body holds.
fn lacking(check: &Check, vars: &Vars, lacks: impl Fn(Option<&String>) -> bool) -> Option<String> {
    check.templates().into_iter().find_map(|(_, t)| {
        t.vars().find_map(|v| match v {
            super::template::Var::Capture(c) if lacks(vars.captures.get(c)) => Some(c.clone()),
            _ => None,
        })
    })
}

/// The chain's cleanup, after its checks, passed or failed: a request that needs a capture the
/// round did not get (or got empty) is skipped (what it would delete was not made); a failure
/// is said, and is no verdict on the version.
fn cleanup(ctx: &Ctx, base: &str, chain: &Chain, vars: &mut Vars, jar: &std::sync::Arc<crate::http::Cookies>) {
    let timeout = ctx.config.smoke.timeout.0;
    for check in &chain.cleanup {
        if let Some(c) = lacking(check, vars, |v| v.is_none_or(String::is_empty)) {
            ctx.ui.detail(format!("{}: cleanup {:?} skipped: nothing captured as {c}", chain.name, check.name));
            continue;
        }
        let mut req = request(base, check, vars, timeout);
        if check.cookies {
            req.cookies = Some(jar.clone());
        }
        let s = sample(ctx, check, &req, vars, 1);
        let status = s.status.map(|s| s.to_string()).unwrap_or_else(|| "no answer".into());
        if s.dry_run {
            continue;
        }
        if s.failures.is_empty() {
            ctx.ui.detail(format!("{}: cleanup {:?}: {} {} → {status}", chain.name, check.name, req.method, req.url));
        } else {
            ctx.ui.warn(format!(
                "{}: cleanup {:?} failed, so what the checks made may be left behind: {} {} → {status}: {}",
                chain.name,
                check.name,
                req.method,
                req.url,
                s.failures.join("; ")
            ));
        }
    }
}

fn run_checks(
    ctx: &Ctx,
    base: &str,
    chain: &Chain,
    vars: &mut Vars,
    samples: u32,
    jar: &std::sync::Arc<crate::http::Cookies>,
) -> Vec<CheckResult> {
    let mut out = vec![];
    let mut broken = false;
    let timeout = ctx.config.smoke.timeout.0;
    for check in &chain.checks {
        // Interrupted: the checks left are not sent; the caller ends the round without a verdict.
        broken |= ctx.interrupted.load(std::sync::atomic::Ordering::SeqCst);
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
        // An earlier check passed but its answer left a value this one uses empty: the version
        // answered without what the chain needs, and this check would prove nothing. (A dry
        // run captures nothing, and shows the request as it is.)
        if let Some(c) = lacking(check, vars, |v| v.is_some_and(String::is_empty)) {
            result.detail =
                format!("uses {{{{{c}}}}}, which an earlier answer left empty: nothing to send or look for");
            broken = true;
            out.push(result);
            continue;
        }
        let mut req = request(base, check, vars, timeout);
        if check.cookies {
            req.cookies = Some(jar.clone());
        }
        // What a header carries (a key from the config or from {{env.X}}) is never printed.
        for (k, v) in &req.headers {
            if !crate::http::harmless_header(k) {
                ctx.ui.redactor.add_value(v.clone());
            }
        }
        let s = sample(ctx, check, &req, vars, samples);
        result.status = s.status;
        result.passed = s.dry_run || s.failures.is_empty();
        let status = s.status.map(|s| s.to_string()).unwrap_or_else(|| "no answer".into());
        result.detail = if s.dry_run {
            "dry run".into()
        } else if s.failures.is_empty() {
            let took = if s.ms.len() > 1 { format!("p95 {}ms", p95(&s.ms)) } else { format!("{}ms", s.ms[0]) };
            format!("{} {} → {status} in {took}", req.method, req.url)
        } else {
            let body = if s.body_start.is_empty() { String::new() } else { format!("; body: {}", s.body_start) };
            format!("{} {} → {status}: {}{body}", req.method, req.url, s.failures.join("; "))
        };
        result.ms = s.ms;
        broken |= !result.passed;
        out.push(result);
    }
    out
}

/// One round: every chain, side by side; results in the chains' order. A verdict is built
/// only from results that exist: a chain whose thread panicked, or that gave fewer results than
/// it has checks, is not a pass but "could not act" (exit 3), so nothing is recorded from it.
pub fn run_round(ctx: &Ctx, base: &str, chains: &[Chain], vars: &Vars, samples: u32) -> Result<Vec<CheckResult>> {
    // Under the fault suite's numbered steps, one chain after another (see `failpoint`).
    let joined: Vec<std::thread::Result<Vec<CheckResult>>> = if crate::failpoint::numbering() {
        chains
            .iter()
            .map(|c| {
                std::thread::scope(|s| {
                    s.spawn(move || {
                        crate::failpoint::panic_at("smoke chain");
                        run_chain(ctx, base, c, vars, samples)
                    })
                    .join()
                })
            })
            .collect()
    } else {
        std::thread::scope(|s| {
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
        })
    };
    ctx.check_interrupt(|| "the smoke checks did not finish; no verdict is recorded".into())?;
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
}
