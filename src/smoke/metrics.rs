//! Metrics as evidence (`[[smoke.metrics]]`): a Prometheus or Datadog query, asked for the
//! candidate and for the stable version in the same window, judged by one rule.
//!
//! - **Relative by default**: the candidate fails when its value exceeds the stable
//!   version's by more than `max_ratio` times *and* by more than `min_delta` (an effect-size
//!   floor: "significant but 3 ms" never fails a version). A relative rule survives a traffic
//!   dip that an absolute threshold does not. `compare = "absolute"` judges the candidate's
//!   value against `max` alone.
//! - **Three outcomes kept apart**: the condition failed (a verdict); the provider failed (an
//!   error answer, a time-out, a rate limit outlasting its `Retry-After`: "could not act",
//!   exit 3); no data (an empty series, `NaN`, no stable value to compare with), which follows
//!   `no_data`: `ignore` (the default: no verdict, said) or `fail`. Never a silent pass.
//! - **Shadow mode**: `mode = "shadow"` evaluates the metric every time and records its
//!   would-be verdict in the ledger, never acting on it, so a team can see how often it would
//!   have failed versions that proved healthy before enforcing it.
//!
//! Queries are templates: `{{version}}` (the version asked about), `{{env}}`, `{{window}}`
//! (`metrics.window` in seconds, `300s`). A metric is asked at most every `interval`.

use super::suite::Phase;
use crate::config::{Dur, HttpUrl, Text};
use crate::context::Ctx;
use crate::http::Request;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Prometheus,
    Datadog,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compare {
    #[default]
    Relative,
    Absolute,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    Shadow,
}

/// One metric as the file writes it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Metric {
    pub name: Text,
    pub provider: Provider,
    /// Prometheus' base URL (Datadog's comes from `smoke.datadog`).
    pub url: Option<HttpUrl>,
    pub query: Text,
    #[serde(default)]
    pub compare: Compare,
    /// Relative: how many times the stable value the candidate's may reach.
    #[serde(default = "default_ratio")]
    pub max_ratio: f64,
    /// The smallest difference (in the query's unit) that can fail a version.
    #[serde(default)]
    pub min_delta: f64,
    /// Absolute: the highest value the candidate's may have.
    pub max: Option<f64>,
    #[serde(default)]
    pub no_data: super::spec::StatePolicy,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default = "default_phases")]
    pub phases: Vec<Phase>,
    #[serde(default = "default_interval")]
    pub interval: Dur<1_000, 3_600_000>,
    #[serde(default = "default_window")]
    pub window: Dur<1_000, 86_400_000>,
}

fn default_ratio() -> f64 {
    1.5
}
fn default_phases() -> Vec<Phase> {
    vec![Phase::Canary, Phase::Bake]
}
fn default_interval() -> Dur<1_000, 3_600_000> {
    Dur::secs(30)
}
fn default_window() -> Dur<1_000, 86_400_000> {
    Dur::secs(300)
}

/// What a metric said.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
    NoData,
}

/// The judgement of one metric's values, with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judged {
    pub outcome: Outcome,
    pub evidence: String,
}

/// The rule, pure: the candidate's value against the stable one's (or `max`).
pub fn judge(m: &Metric, candidate: Option<f64>, stable: Option<f64>) -> Judged {
    let no = |why: String| Judged { outcome: Outcome::NoData, evidence: why };
    let Some(c) = candidate.filter(|v| v.is_finite()) else {
        return no("no data for the candidate (an empty series or NaN)".into());
    };
    let (outcome, evidence) = match m.compare {
        Compare::Absolute => {
            let max = m.max.unwrap_or(f64::INFINITY);
            (
                if c > max { Outcome::Fail } else { Outcome::Pass },
                format!("candidate {c:.4} against a maximum of {max}"),
            )
        }
        Compare::Relative => {
            let Some(s) = stable.filter(|v| v.is_finite()) else {
                return no(format!("candidate {c:.4}, but no data for the stable version to compare with"));
            };
            let over_ratio = if s > 0.0 { c > s * m.max_ratio } else { c > 0.0 };
            let over_delta = c - s > m.min_delta;
            let failed = over_ratio && over_delta;
            (
                if failed { Outcome::Fail } else { Outcome::Pass },
                format!("candidate {c:.4} vs stable {s:.4} (allowed: up to {}× and {} more)", m.max_ratio, m.min_delta),
            )
        }
    };
    Judged { outcome, evidence }
}

/// The query with its variables filled.
fn render(m: &Metric, version: &str, env: &str) -> String {
    m.query
        .as_str()
        .replace("{{version}}", version)
        .replace("{{env}}", env)
        .replace("{{window}}", &format!("{}s", m.window.0.as_secs()))
}

/// How many times a rate-limited or failing provider is asked again.
const RETRIES: u32 = 3;
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Sends a provider request, honouring 429 `Retry-After` and retrying 5xx and time-outs a few
/// times; an answer that stays bad is "could not act".
fn ask(ctx: &Ctx, req: &Request, what: &str) -> Result<Option<serde_json::Value>> {
    let mut tries = 0;
    loop {
        let answer = ctx.http.send(req);
        let again = match &answer {
            Ok(None) => return Ok(None),
            Ok(Some(r)) if r.status == 200 => {
                return serde_json::from_str(&r.body)
                    .map(Some)
                    .map_err(|e| crate::could_not_act!("{what}: the answer is not JSON ({e})"));
            }
            Ok(Some(r)) if r.status == 429 => r.retry_after().unwrap_or(Duration::from_secs(1)).min(MAX_RETRY_AFTER),
            Ok(Some(r)) if r.status >= 500 => Duration::from_millis(500 * 2u64.pow(tries)),
            Ok(Some(r)) => {
                return Err(crate::could_not_act!("{what}: {} answered {} {}", req.url, r.status, r.body_start()));
            }
            Err(_) => Duration::from_millis(500 * 2u64.pow(tries)),
        };
        if tries >= RETRIES {
            return Err(match answer {
                Ok(Some(r)) => {
                    crate::could_not_act!(
                        "{what}: {} answered {} {} ({} tries)",
                        req.url,
                        r.status,
                        r.body_start(),
                        tries + 1
                    )
                }
                Err(e) => crate::could_not_act!("{what}: {e:#} ({} tries)", tries + 1),
                Ok(None) => unreachable!("a dry run returns above"),
            });
        }
        tries += 1;
        ctx.ui.detail(format!("{what}: asking again in {}ms", again.as_millis()));
        ctx.nap(again, || format!("{what} was not answered"))?;
    }
}

/// The metric's value for `version` now: `None` when the provider has no data.
fn value(ctx: &Ctx, m: &Metric, version: &str, env: &str) -> Result<Option<f64>> {
    let query = render(m, version, env);
    let what = format!("metric {:?}", m.name.as_str());
    let timeout = ctx.config.smoke.timeout.0;
    match m.provider {
        Provider::Prometheus => {
            let base = m.url.as_ref().map(HttpUrl::base).unwrap_or_default();
            let mut url =
                reqwest::Url::parse(&format!("{base}/api/v1/query")).map_err(|e| crate::usage!("{what}: {e}"))?;
            url.query_pairs_mut().append_pair("query", &query);
            let Some(doc) = ask(ctx, &Request::get(url.to_string()).timeout(timeout), &what)? else { return Ok(None) };
            if doc["status"] != "success" {
                return Err(crate::could_not_act!("{what}: Prometheus answered {}", doc["error"]));
            }
            let result = &doc["data"]["result"];
            let value = match doc["data"]["resultType"].as_str() {
                Some("scalar") => result[1].as_str().map(str::to_string),
                Some("vector") => match result.as_array().map(Vec::as_slice) {
                    Some([]) | None => None,
                    Some([one]) => one["value"][1].as_str().map(str::to_string),
                    Some(many) => {
                        return Err(crate::could_not_act!(
                            "{what}: the query gives {} series; aggregate it to one (sum, avg, max)",
                            many.len()
                        ));
                    }
                },
                other => return Err(crate::could_not_act!("{what}: expected a vector or a scalar, got {other:?}")),
            };
            Ok(value.and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite()))
        }
        Provider::Datadog => {
            let dd = ctx.config.smoke.datadog.as_ref().ok_or_else(|| {
                crate::usage!("{what}: provider = \"datadog\" needs [smoke.datadog] (its site and keys)")
            })?;
            let key = |var: &str| {
                ctx.env.get(var).map(str::to_string).ok_or_else(|| crate::usage!("{what}: {var} is not set"))
            };
            let now = crate::clock::now_ms() / 1000;
            let mut url = reqwest::Url::parse(&format!("{}/api/v1/query", dd.api_base()))
                .map_err(|e| crate::usage!("{what}: {e}"))?;
            url.query_pairs_mut()
                .append_pair("from", &(now - m.window.0.as_secs() as i64).to_string())
                .append_pair("to", &now.to_string())
                .append_pair("query", &query);
            let mut req = Request::get(url.to_string()).timeout(timeout);
            req.headers = vec![
                ("DD-API-KEY".into(), key(&dd.api_key_env)?),
                ("DD-APPLICATION-KEY".into(), key(&dd.app_key_env)?),
            ];
            let Some(doc) = ask(ctx, &req, &what)? else { return Ok(None) };
            if doc["status"] == "error" {
                return Err(crate::could_not_act!("{what}: Datadog answered {}", doc["error"]));
            }
            let series = doc["series"].as_array().cloned().unwrap_or_default();
            if series.len() > 1 {
                return Err(crate::could_not_act!(
                    "{what}: the query gives {} series; aggregate it to one (sum:, avg:)",
                    series.len()
                ));
            }
            // The window's mean of the points that have a value (null is a gap, not a zero).
            let points: Vec<f64> = series
                .first()
                .and_then(|s| s["pointlist"].as_array())
                .map(|pl| pl.iter().filter_map(|p| p[1].as_f64()).filter(|v| v.is_finite()).collect())
                .unwrap_or_default();
            Ok((!points.is_empty()).then(|| points.iter().sum::<f64>() / points.len() as f64))
        }
    }
}

/// When each metric was last asked, in this process.
static LAST: std::sync::Mutex<Vec<(String, std::time::Instant)>> = std::sync::Mutex::new(Vec::new());

fn due(m: &Metric) -> bool {
    let Ok(mut last) = LAST.lock() else { return true };
    let name = m.name.as_str();
    match last.iter_mut().find(|(n, _)| n == name) {
        Some((_, at)) if at.elapsed() < m.interval.0 => false,
        Some((_, at)) => {
            *at = std::time::Instant::now();
            true
        }
        None => {
            last.push((name.to_string(), std::time::Instant::now()));
            true
        }
    }
}

/// Every metric of `phase` that is due, judged: one result each, as a check's (chain
/// "metric"). `stable`: the version serving the rest of the users, when one does.
pub fn run_phase(
    ctx: &Ctx,
    phase: Phase,
    candidate: &str,
    stable: Option<&str>,
    env: &str,
) -> Result<Vec<super::run::CheckResult>> {
    let mut out = vec![];
    for m in ctx.config.smoke.metrics.iter().filter(|m| m.phases.contains(&phase)) {
        if !due(m) {
            continue;
        }
        let c = value(ctx, m, candidate, env)?;
        let s = match (m.compare, stable) {
            (Compare::Relative, Some(st)) => value(ctx, m, st, env)?,
            _ => None,
        };
        if ctx.dry_run {
            continue;
        }
        let j = judge(m, c, s);
        let name = m.name.as_str();
        let shadow = m.mode == Mode::Shadow;
        if shadow {
            ctx.ledger()?.record_shadow(env, candidate, name, j.outcome == Outcome::Fail, &j.evidence)?;
        }
        let (passed, detail) = match (&j.outcome, shadow, m.no_data) {
            (Outcome::Pass, _, _) => (true, format!("passed: {}", j.evidence)),
            (Outcome::Fail, true, _) => (true, format!("shadow: would fail: {}", j.evidence)),
            (Outcome::Fail, false, _) => (false, format!("failed: {}", j.evidence)),
            (Outcome::NoData, true, _) => (true, format!("shadow: no data: {}", j.evidence)),
            (Outcome::NoData, false, super::spec::StatePolicy::Ignore) => {
                (true, format!("no verdict (no_data = \"ignore\"): {}", j.evidence))
            }
            (Outcome::NoData, false, super::spec::StatePolicy::Fail) => {
                (false, format!("not enough data (no_data = \"fail\"): {}", j.evidence))
            }
        };
        out.push(super::run::CheckResult {
            chain: "metric".into(),
            name: name.to_string(),
            passed,
            skipped: false,
            status: None,
            ms: vec![],
            detail,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(compare: Compare) -> Metric {
        toml::from_str::<Metric>(&format!(
            "name = \"p95\"\nprovider = \"prometheus\"\nurl = \"http://127.0.0.1:9090\"\nquery = \"x\"\ncompare = \"{}\"\nmax_ratio = 1.5\nmin_delta = 0.05\nmax = 0.3",
            if compare == Compare::Relative { "relative" } else { "absolute" }
        ))
        .expect("metric")
    }

    #[test]
    fn relative_needs_both_the_ratio_and_the_floor_and_missing_data_is_no_verdict() {
        let rel = metric(Compare::Relative);
        let cases = [
            // (candidate, stable) → outcome
            (Some(0.40), Some(0.20), Outcome::Fail),
            // Twice the stable value, but 3 ms: under the floor.
            (Some(0.006), Some(0.003), Outcome::Pass),
            // Over the floor, under the ratio.
            (Some(0.26), Some(0.20), Outcome::Pass),
            (Some(0.10), Some(0.0), Outcome::Fail),
            (Some(0.0), Some(0.0), Outcome::Pass),
            (None, Some(0.2), Outcome::NoData),
            (Some(f64::NAN), Some(0.2), Outcome::NoData),
            (Some(0.4), None, Outcome::NoData),
            (Some(0.4), Some(f64::NAN), Outcome::NoData),
        ];
        for (c, s, want) in cases {
            assert_eq!(judge(&rel, c, s).outcome, want, "{c:?} vs {s:?}");
        }
        let abs = metric(Compare::Absolute);
        assert_eq!(judge(&abs, Some(0.31), None).outcome, Outcome::Fail);
        assert_eq!(judge(&abs, Some(0.30), None).outcome, Outcome::Pass);
        assert_eq!(judge(&abs, None, None).outcome, Outcome::NoData);
        assert_eq!(
            judge(&rel, Some(0.4), Some(0.2)).evidence,
            "candidate 0.4000 vs stable 0.2000 (allowed: up to 1.5× and 0.05 more)"
        );
    }

    #[test]
    fn a_query_names_the_version_env_and_window() {
        let mut m = metric(Compare::Relative);
        m.query = Text("rate(x{version=\"{{version}}\",env=\"{{env}}\"}[{{window}}])".into());
        assert_eq!(render(&m, "v2", "production"), "rate(x{version=\"v2\",env=\"production\"}[300s])");
    }
}
