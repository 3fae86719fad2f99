//! Phase 1 of a smoke check: wait until the environment serves the expected version
//! `smoke.consecutive` times in a row (a rolling update mixes versions), retrying only
//! transient answers — no connection, timeouts, 502/503/504, and 429 after its `Retry-After` —
//! until `smoke.deadline`.
//!
//! Which version answered is read from one of three signals, said on the console and in the
//! summary: the app's own version route (`smoke.version_path`), else what the platform offers
//! ([`VersionSignal`]): a header its proxy adds to every answer (local, behind nginx), or its
//! own report of the live label and health plus answers of the address that are not server
//! errors (Elastic Beanstalk, local without a proxy).
//!
//! How a failed wait is classed decides whether it counts against the version: only a version
//! that does not serve (server errors, or nothing answering until the deadline) is a verdict.
//! A version route the app does not have (a 4xx) is a configuration error (exit 2); an
//! environment that still serves another version is a deploy that did not land (exit 3).
//! Neither is recorded against the version.

use super::served_version;
use crate::context::Ctx;
use crate::http::{Poll, Request, Response};
use crate::platform::{Platform, VersionSignal};
use crate::{could_not_act, verdict};
use anyhow::Result;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Where the version is read from.
pub enum Signal {
    /// The app's route: its body names the version.
    Route(String),
    /// A header on every answer of the environment's address.
    Header(&'static str),
    /// The platform's report of the live label and health.
    Platform,
}

impl Signal {
    pub fn of(ctx: &Ctx, platform: &dyn Platform, env: &crate::config::Environment) -> Signal {
        match &ctx.config.smoke.version_path {
            Some(p) => Signal::Route(p.to_string()),
            None => match platform.version_signal(env) {
                VersionSignal::Header(h) => Signal::Header(h),
                VersionSignal::Platform => Signal::Platform,
            },
        }
    }

    /// How the console and the summary name it.
    pub fn describe(&self) -> String {
        match self {
            Signal::Route(p) => format!("the app's version route {p}"),
            Signal::Header(h) => format!("the proxy's {h} header (smoke.version_path is not set)"),
            Signal::Platform => "the platform's live label and health, and answers of / that are not server errors \
                 (smoke.version_path is not set)"
                .into(),
        }
    }

    fn path(&self) -> &str {
        match self {
            Signal::Route(p) => p,
            _ => "/",
        }
    }
}

/// What one answer says.
enum Seen {
    /// This version answered.
    Version(String),
    /// Not yet telling: no connection, a gateway error, a rate limit, no header.
    Transient,
    /// A final answer: the wait ends on it.
    Final,
}

/// Waits until `expected` (or any version) serves; returns the label that does. Errors are
/// classed as the module says.
pub fn wait_live(
    ctx: &Ctx,
    platform: &dyn Platform,
    env: &crate::config::Environment,
    signal: &Signal,
    expected: Option<&str>,
) -> Result<String> {
    let smoke = &ctx.config.smoke;
    let url = format!("{}{}", env.url.base(), signal.path());
    let probe = Request::get(&url).timeout(Duration::from_secs(5));
    if !ctx.dry_run && !smoke.initial_delay.0.is_zero() {
        std::thread::sleep(smoke.initial_delay.0);
    }
    let started = Instant::now();
    let deadline = started + smoke.deadline.0;
    let needed = smoke.consecutive.0;
    let (mut streak, mut last_seen, mut platform_error) = (0, None::<String>, None);
    let answer = ctx.http.poll(&probe, smoke.interval.0, deadline, |a| {
        if ctx.interrupted.load(Ordering::SeqCst) {
            return Poll::Abort(crate::error::Error::interrupted("interrupted while waiting for the version").into());
        }
        let seen = match read(signal, a) {
            // The address answers; the platform says which version serves it.
            Seen::Version(_) if matches!(signal, Signal::Platform) => match platform.live(env) {
                Ok(Some(live)) if live.healthy => Seen::Version(live.label),
                Ok(_) => Seen::Transient,
                Err(e) => {
                    platform_error = Some(e);
                    return Poll::Done;
                }
            },
            other => other,
        };
        match seen {
            Seen::Version(v) => {
                streak = if expected.is_none_or(|want| v == want) { streak + 1 } else { 0 };
                last_seen = Some(v);
                if streak >= needed { Poll::Done } else { Poll::Again }
            }
            Seen::Transient => {
                streak = 0;
                match a {
                    Ok(r) if r.status == 429 => r.retry_after().map_or(Poll::Again, Poll::After),
                    _ => Poll::Again,
                }
            }
            Seen::Final => Poll::Done,
        }
    })?;
    if let Some(e) = platform_error {
        return Err(e);
    }
    let after = took(started.elapsed());
    let want = expected.unwrap_or("any version");
    let Some(answer) = answer else { return Ok(expected.unwrap_or("(unknown)").to_string()) };
    if streak >= needed
        && let Some(v) = last_seen
    {
        return Ok(v);
    }
    let name = &env.name;
    let within = smoke.deadline.0.as_secs();
    match answer {
        Ok(r) if matches!(read(signal, &Ok(r.clone())), Seen::Final) => Err(final_answer(signal, &url, &r, &after)),
        _ if last_seen.is_some() => {
            let seen = last_seen.unwrap_or_default();
            Err(could_not_act!(
                "{name} still serves {seen}, not {want}, after {within}s (read from {}): the deploy did not land",
                signal.describe()
            ))
        }
        Ok(r) => Err(verdict!(
            "{name} did not serve {want} within {within}s: GET {url} last answered {} {}",
            r.status,
            r.body_start()
        )),
        Err(e) => Err(verdict!("{name} did not serve {want} within {within}s: {e}")),
    }
}

/// What an answer says under `signal`.
fn read(signal: &Signal, a: &Result<Response>) -> Seen {
    let Ok(r) = a else { return Seen::Transient };
    if r.status == 429 || matches!(r.status, 502..=504) {
        return Seen::Transient;
    }
    match signal {
        Signal::Route(_) if (200..300).contains(&r.status) => Seen::Version(served_version(r)),
        // A redirect, a 4xx (the route is missing) or a 5xx (the version fails) is final.
        Signal::Route(_) => Seen::Final,
        Signal::Header(h) => match r.header(h) {
            Some(v) if r.status < 500 => Seen::Version(v.trim().to_string()),
            Some(_) => Seen::Final,
            // Not from the environment's proxy (a proxy still starting, another listener).
            None => Seen::Transient,
        },
        Signal::Platform if r.status < 500 => Seen::Version(String::new()),
        Signal::Platform => Seen::Final,
    }
}

/// The error a final answer makes: a route the app lacks is the configuration's fault; a
/// server error is the version's.
fn final_answer(signal: &Signal, url: &str, r: &Response, after: &str) -> anyhow::Error {
    let said = format!("GET {url} answered {} {} after {after}", r.status, r.body_start());
    match signal {
        Signal::Route(p) if r.status < 500 => crate::error::Error::usage(format!(
            "smoke.version_path: {said}: expected a 2xx naming the version"
        ))
        .with_hint(format!(
            "the app has no {p} route: remove smoke.version_path, and smoke-check reads the version the platform reports"
        ))
        .into(),
        _ => verdict!("{said}"),
    }
}

/// `13ms`, `2.4s`.
fn took(d: Duration) -> String {
    if d < Duration::from_secs(1) { format!("{}ms", d.as_millis()) } else { format!("{:.1}s", d.as_secs_f64()) }
}
