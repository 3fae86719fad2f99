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
//!   `no_data`: `ignore` (the default: no verdict, said), `fail`, or `extend` (a bake goes on
//!   until the metric has data, up to `extend_up_to`; still none then is inconclusive, exit 4,
//!   nothing marked bad). Never a silent pass.
//! - **Shadow mode**: `mode = "shadow"` evaluates the metric every time and records its
//!   would-be verdict in the ledger, never acting on it, so a team can see how often it would
//!   have failed versions that proved healthy before enforcing it.
//!
//! Queries are templates: `{{version}}` (the version asked about), `{{env}}`, `{{window}}`
//! (`metrics.window` in seconds, `300s`). A metric is asked at most every `interval`.
//!
//! Providers: Prometheus' instant query (`/api/v1/query`) or, with `range = true`, its range
//! query over the window (`/api/v1/query_range`, the mean of its points); Datadog's v1 query
//! API (`/api/v1/query`, the mean of the window's points) or, with `formula` and named
//! `queries`, its v2 timeseries formula API (`/api/v2/query/timeseries`).

use super::suite::Phase;
use crate::config::HttpUrl;
use crate::context::Ctx;
use crate::http::Request;
use anyhow::Result;
use serde::Serialize;
use std::time::Duration;

pub use super::settings::{Compare, Metric, Mode, NoData, Provider};

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

/// A query with its variables filled.
fn render(m: &Metric, query: &str, version: &str, env: &str) -> String {
    query
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
    let what = format!("metric {:?}", m.name.as_str());
    let query = || m.query.as_ref().map(|q| render(m, q.as_str(), version, env)).unwrap_or_default();
    match (m.provider, &m.formula) {
        (Provider::Prometheus, _) => prometheus(ctx, m, &query(), &what),
        (Provider::Datadog, None) => datadog_v1(ctx, m, &query(), &what),
        (Provider::Datadog, Some(formula)) => {
            let queries: Vec<(String, String)> =
                m.queries.iter().map(|(name, q)| (name.clone(), render(m, q.as_str(), version, env))).collect();
            datadog_formula(ctx, m, formula.as_str(), &queries, &what)
        }
    }
}

/// What a provider's error field says, as its text: a string or the strings of a list as they
/// are (a `Display` of the JSON would escape them, and a secret in them would no longer read
/// as itself to the masking), anything else as JSON; on one line.
fn said(v: &serde_json::Value) -> String {
    let text = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items.iter().map(said).collect::<Vec<_>>().join("; "),
        other => other.to_string(),
    };
    crate::http::one_line(&text)
}

/// The mean of a series' finite values (null and `NaN` are gaps, not zeros); `None` if none.
fn mean(points: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let (mut sum, mut n) = (0.0, 0u32);
    for v in points.flatten().filter(|v| v.is_finite()) {
        sum += v;
        n += 1;
    }
    (n > 0).then(|| sum / f64::from(n))
}

/// The one series a query must give; more is "aggregate it".
fn one_series<'a>(what: &str, series: &'a [serde_json::Value], how: &str) -> Result<Option<&'a serde_json::Value>> {
    match series {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        many => {
            Err(crate::could_not_act!("{what}: the query gives {} series; aggregate it to one ({how})", many.len()))
        }
    }
}

/// Prometheus: an instant query's value, or (`range`) the mean of a range query's points over
/// the window.
fn prometheus(ctx: &Ctx, m: &Metric, query: &str, what: &str) -> Result<Option<f64>> {
    let base = m.url.as_ref().map(HttpUrl::base).unwrap_or_default();
    let api = if m.range { "query_range" } else { "query" };
    let mut url = reqwest::Url::parse(&format!("{base}/api/v1/{api}")).map_err(|e| crate::usage!("{what}: {e}"))?;
    url.query_pairs_mut().append_pair("query", query);
    if m.range {
        let now = crate::clock::now_ms() / 1000;
        url.query_pairs_mut()
            .append_pair("start", &(now - m.window.0.as_secs() as i64).to_string())
            .append_pair("end", &now.to_string())
            .append_pair("step", &format!("{}s", m.step.0.as_secs()));
    }
    let req = Request::get(url.to_string()).timeout(ctx.config.smoke.timeout.0);
    let Some(doc) = ask(ctx, &req, what)? else { return Ok(None) };
    if doc["status"] != "success" {
        return Err(crate::could_not_act!("{what}: Prometheus answered {}", said(&doc["error"])));
    }
    let result = &doc["data"]["result"];
    let number = |v: &serde_json::Value| v[1].as_str().and_then(|t| t.parse::<f64>().ok());
    let series = result.as_array().map(Vec::as_slice).unwrap_or_default();
    let value = match doc["data"]["resultType"].as_str() {
        Some("scalar") => number(result),
        Some("vector") => one_series(what, series, "sum, avg, max")?.and_then(|one| number(&one["value"])),
        Some("matrix") => one_series(what, series, "sum, avg, max")?
            .and_then(|one| mean(one["values"].as_array().into_iter().flatten().map(number))),
        other => return Err(crate::could_not_act!("{what}: expected a vector, a matrix or a scalar, got {other:?}")),
    };
    Ok(value.filter(|v| v.is_finite()))
}

/// Datadog's API keys from the environment, as request headers.
fn datadog_keys<'c>(ctx: &'c Ctx, what: &str) -> Result<(&'c super::spec::Datadog, Vec<(String, String)>)> {
    let dd = ctx
        .config
        .smoke
        .datadog
        .as_ref()
        .ok_or_else(|| crate::usage!("{what}: provider = \"datadog\" needs [smoke.datadog] (its site and keys)"))?;
    let key = |var: &str| ctx.env.get(var).map(str::to_string).ok_or_else(|| crate::usage!("{what}: {var} is not set"));
    let headers =
        vec![("DD-API-KEY".into(), key(&dd.api_key_env)?), ("DD-APPLICATION-KEY".into(), key(&dd.app_key_env)?)];
    Ok((dd, headers))
}

/// Datadog's v1 query API: the mean of the window's points of the query's one series.
fn datadog_v1(ctx: &Ctx, m: &Metric, query: &str, what: &str) -> Result<Option<f64>> {
    let (dd, headers) = datadog_keys(ctx, what)?;
    let now = crate::clock::now_ms() / 1000;
    let mut url =
        reqwest::Url::parse(&format!("{}/api/v1/query", dd.api_base())).map_err(|e| crate::usage!("{what}: {e}"))?;
    url.query_pairs_mut()
        .append_pair("from", &(now - m.window.0.as_secs() as i64).to_string())
        .append_pair("to", &now.to_string())
        .append_pair("query", query);
    let mut req = Request::get(url.to_string()).timeout(ctx.config.smoke.timeout.0);
    req.headers = headers;
    let Some(doc) = ask(ctx, &req, what)? else { return Ok(None) };
    if doc["status"] == "error" {
        return Err(crate::could_not_act!("{what}: Datadog answered {}", said(&doc["error"])));
    }
    let series = doc["series"].as_array().map(Vec::as_slice).unwrap_or_default();
    Ok(one_series(what, series, "sum:, avg:")?
        .and_then(|s| mean(s["pointlist"].as_array().into_iter().flatten().map(|p| p[1].as_f64()))))
}

/// The body of a Datadog v2 timeseries formula query over the window ending `now_ms`.
pub fn formula_request(m: &Metric, formula: &str, queries: &[(String, String)], now_ms: i64) -> serde_json::Value {
    let queries: Vec<serde_json::Value> = queries
        .iter()
        .map(|(name, q)| serde_json::json!({"data_source": "metrics", "name": name, "query": q}))
        .collect();
    serde_json::json!({"data": {"type": "timeseries_request", "attributes": {
        "from": now_ms - m.window.0.as_millis() as i64,
        "to": now_ms,
        "queries": queries,
        "formulas": [{"formula": formula}],
    }}})
}

/// Datadog's v2 timeseries API with a formula: the mean of the formula's one series.
fn datadog_formula(
    ctx: &Ctx,
    m: &Metric,
    formula: &str,
    queries: &[(String, String)],
    what: &str,
) -> Result<Option<f64>> {
    let (dd, headers) = datadog_keys(ctx, what)?;
    let mut req =
        Request::get(format!("{}/api/v2/query/timeseries", dd.api_base())).timeout(ctx.config.smoke.timeout.0);
    req.method = "POST".into();
    req.headers = headers;
    req.body = Some(crate::http::Body::Json(formula_request(m, formula, queries, crate::clock::now_ms())));
    let Some(doc) = ask(ctx, &req, what)? else { return Ok(None) };
    let attributes = &doc["data"]["attributes"];
    let series = attributes["series"].as_array().map(Vec::as_slice).unwrap_or_default();
    // An answer without series that says why is the provider's failure, not an empty series.
    if let Some(errors) = doc["errors"].as_str().filter(|e| !e.trim().is_empty() && series.is_empty()) {
        return Err(crate::could_not_act!("{what}: Datadog answered {}", crate::http::one_line(errors)));
    }
    if one_series(what, series, "a formula over sum: or avg: queries")?.is_none() {
        return Ok(None);
    }
    Ok(mean(attributes["values"][0].as_array().into_iter().flatten().map(serde_json::Value::as_f64)))
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

/// What the metrics of a phase said: one result each, as a check's (chain "metric"), and the
/// metrics with `no_data = "extend"` that had no data (name, evidence, how long a bake may
/// wait for them).
#[derive(Debug, Default)]
pub struct Said {
    pub results: Vec<super::run::CheckResult>,
    pub awaiting: Vec<Awaiting>,
    /// The metrics asked (not skipped as not yet due).
    pub asked: Vec<String>,
}

/// A metric with `no_data = "extend"` that has no data yet.
#[derive(Debug, Clone)]
pub struct Awaiting {
    pub name: String,
    pub evidence: String,
    /// How long a bake may wait for its data: 0 when no bake asks it again (its phases do not
    /// include `bake`).
    pub up_to: Duration,
}

/// Every metric of `phase` that is due, judged. `stable`: the version serving the rest of the
/// users, when one does.
pub fn run_phase(ctx: &Ctx, phase: Phase, candidate: &str, stable: Option<&str>, env: &str) -> Result<Said> {
    let mut out = Said::default();
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
        out.asked.push(name.to_string());
        let shadow = m.mode == Mode::Shadow;
        if shadow {
            ctx.ledger()?.record_shadow(env, candidate, name, j.outcome == Outcome::Fail, &j.evidence)?;
        }
        let (passed, detail) = match (&j.outcome, shadow, m.no_data) {
            (Outcome::Pass, _, _) => (true, format!("passed: {}", j.evidence)),
            (Outcome::Fail, true, _) => (true, format!("shadow: would fail: {}", j.evidence)),
            (Outcome::Fail, false, _) => (false, format!("failed: {}", j.evidence)),
            (Outcome::NoData, true, _) => (true, format!("shadow: no data: {}", j.evidence)),
            (Outcome::NoData, false, NoData::Ignore) => {
                (true, format!("no verdict (no_data = \"ignore\"): {}", j.evidence))
            }
            (Outcome::NoData, false, NoData::Fail) => {
                (false, format!("not enough data (no_data = \"fail\"): {}", j.evidence))
            }
            (Outcome::NoData, false, NoData::Extend) => {
                out.awaiting.push(Awaiting {
                    name: name.to_string(),
                    evidence: j.evidence.clone(),
                    up_to: if m.phases.contains(&Phase::Bake) { m.extend_up_to.0 } else { Duration::ZERO },
                });
                (true, format!("no data yet (no_data = \"extend\"): {}", j.evidence))
            }
        };
        out.results.push(super::run::CheckResult {
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
        let m = metric(Compare::Relative);
        let q = "rate(x{version=\"{{version}}\",env=\"{{env}}\"}[{{window}}])";
        assert_eq!(render(&m, q, "v2", "production"), "rate(x{version=\"v2\",env=\"production\"}[300s])");
    }

    #[test]
    fn a_providers_error_is_said_as_its_text_unescaped() {
        // A key with a quote stays itself, so the masking finds it (JSON would write \").
        assert_eq!(said(&serde_json::json!("bad key \"k\\ey\"\n")), "bad key \"k\\ey\"");
        assert_eq!(
            said(&serde_json::json!(["Rate limit exceeded", "try \"later\""])),
            "Rate limit exceeded; try \"later\""
        );
        assert_eq!(said(&serde_json::json!(null)), "null");
        assert_eq!(said(&serde_json::json!("x".repeat(500))).len(), 200);
    }

    #[test]
    fn a_series_mean_skips_gaps_and_nan_and_none_is_no_data() {
        assert_eq!(mean([Some(1.0), None, Some(f64::NAN), Some(3.0)].into_iter()), Some(2.0));
        assert_eq!(mean([None, Some(f64::INFINITY)].into_iter()), None);
        assert_eq!(mean(std::iter::empty()), None);
    }

    #[test]
    fn a_formula_request_names_each_query_and_the_window() {
        let m = metric(Compare::Relative);
        let body = formula_request(
            &m,
            "100 * e / h",
            &[("e".into(), "sum:err{*}".into()), ("h".into(), "sum:hits{*}".into())],
            1_000_000,
        );
        let attrs = &body["data"]["attributes"];
        assert_eq!(body["data"]["type"], "timeseries_request");
        assert_eq!((attrs["from"].as_i64(), attrs["to"].as_i64()), (Some(700_000), Some(1_000_000)));
        assert_eq!(attrs["formulas"][0]["formula"], "100 * e / h");
        assert_eq!(
            attrs["queries"][1],
            serde_json::json!({"data_source": "metrics", "name": "h", "query": "sum:hits{*}"})
        );
    }
}
