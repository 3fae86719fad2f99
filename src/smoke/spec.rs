//! `[smoke]`: how smoke-check waits for a version and what it checks, read in two steps. The
//! file's shape (`CheckFile`: texts as written) is compiled once into [`Check`]s — methods,
//! templates, compiled regexes and JSONPaths — with each error naming its chain, check and
//! field; then each chain's variables are checked (a capture is used only after the check that
//! makes it). A check's request parts and its [`Assertion`]s are one list that both this
//! validation and the run walk, so a new kind of assertion is added in one place.

use super::template::{JsonTemplate, Template, Var};
use crate::config::locate::{Locator, Seg};
use crate::config::values::{Count, Dur, HeaderName, HttpUrl, JsonPathExpr, Pattern, Text, UrlPath};
use crate::error::Error;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Smoke {
    /// How long to wait for the environment to serve the expected version.
    pub deadline: Dur<1_000, 3_600_000>,
    /// Pause between polls while waiting for the version.
    pub interval: Dur<10, 300_000>,
    /// Pause before the first poll.
    pub initial_delay: Dur<0, 600_000>,
    /// Consecutive answers with the expected version before the checks run (a rolling update
    /// can mix versions behind a load balancer).
    pub consecutive: Count<1, 100>,
    /// The app's route answering the live version label (plain text or JSON
    /// `{"version": ...}`). Unset (the default): the version is read from what the platform
    /// offers (a header nginx adds locally; the environment's label and health on Elastic
    /// Beanstalk).
    pub version_path: Option<UrlPath>,
    /// Total time limit of one request.
    pub timeout: Dur<100, 600_000>,
    /// One chain of checks, run in order.
    pub checks: Vec<CheckFile>,
    /// Requests run after `checks` in each round, passed or failed, to delete what the checks
    /// made (with their captures and cookies); a failure is said, never a verdict.
    pub cleanup: Vec<CheckFile>,
    /// Independent chains, run side by side; each chain's checks run in order.
    pub chains: Vec<ChainFile>,
    /// A file (relative to this one) holding more `[[checks]]` and `[[chains]]`.
    pub include: Option<PathBuf>,
    /// Datadog monitors that must be OK in each round of a `--watch`.
    pub datadog: Option<Datadog>,
    /// The team's own suites, run against the version as evidence (see `smoke::suite`).
    pub suites: Vec<super::settings::Suite>,
    /// Prometheus and Datadog queries judged as evidence (see `smoke::metrics`).
    pub metrics: Vec<super::settings::Metric>,
}

impl Default for Smoke {
    fn default() -> Self {
        Smoke {
            deadline: Dur::secs(60),
            interval: Dur::ms(200),
            initial_delay: Dur::secs(0),
            consecutive: Count(2),
            version_path: None,
            timeout: Dur::secs(10),
            checks: vec![],
            cleanup: vec![],
            chains: vec![],
            include: None,
            datadog: None,
            suites: vec![],
            metrics: vec![],
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChainFile {
    pub name: String,
    pub checks: Vec<CheckFile>,
    /// Run after the chain's checks, passed or failed (see `Smoke::cleanup`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cleanup: Vec<CheckFile>,
}

/// The shape of `smoke.include`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SmokeFile {
    #[serde(default)]
    checks: Vec<CheckFile>,
    #[serde(default)]
    cleanup: Vec<CheckFile>,
    #[serde(default)]
    chains: Vec<ChainFile>,
}

/// One request of a chain and what its answer must show, as the file writes it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CheckFile {
    pub name: String,
    pub method: Option<String>,
    pub path: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    pub form: Option<BTreeMap<String, String>>,
    pub json: Option<toml::Value>,
    pub body: Option<String>,
    #[serde(default)]
    pub follow_redirects: bool,
    /// Send the chain's cookies and keep the answer's (as a browser does); `false`: neither.
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub cookies: bool,
    pub expect_status: Option<Vec<u16>>,
    pub body_contains: Option<String>,
    pub body_matches: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub json_equals: BTreeMap<String, toml::Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub header_equals: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub header_matches: BTreeMap<String, String>,
    pub max_latency: Option<String>,
    pub p95_latency: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capture: BTreeMap<String, CaptureFile>,
}

fn yes() -> bool {
    true
}
fn is_yes(b: &bool) -> bool {
    *b
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureFile {
    pub json: Option<String>,
    pub regex: Option<String>,
    pub header: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Datadog {
    /// The Datadog site; the API is `https://api.SITE`.
    pub site: Text,
    /// The API's base URL, instead of the one the site implies.
    pub api_url: Option<HttpUrl>,
    pub monitors: Vec<u64>,
    /// Monitors named by their tags as well (`["service:web", "env:production"]`: each monitor
    /// carrying every tag), read with `GET /api/v1/monitor?monitor_tags=...`.
    pub monitor_tags: Vec<Text>,
    /// What a monitor in `Warn` says of the version: `ignore` (no verdict, said) or `fail`.
    pub warn: StatePolicy,
    /// What a monitor in `No Data` (or `Unknown`) says: `ignore` (no verdict, said) or `fail`.
    /// Low traffic right after a deploy produces it.
    pub no_data: StatePolicy,
    /// Environment variables holding the keys.
    pub api_key_env: Text,
    pub app_key_env: Text,
}

/// What a monitor state that is neither `OK` nor `Alert` says of a version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StatePolicy {
    /// Not a verdict: the round neither passes nor fails on it, and says so.
    #[default]
    Ignore,
    /// A verdict against the version, as `Alert` is.
    Fail,
}

impl Default for Datadog {
    fn default() -> Self {
        Datadog {
            site: Text("datadoghq.com".into()),
            api_url: None,
            monitors: vec![],
            monitor_tags: vec![],
            warn: StatePolicy::Ignore,
            no_data: StatePolicy::Ignore,
            api_key_env: Text("DD_API_KEY".into()),
            app_key_env: Text("DD_APP_KEY".into()),
        }
    }
}

impl Datadog {
    pub fn api_base(&self) -> String {
        match &self.api_url {
            Some(u) => u.base(),
            None => format!("https://api.{}", self.site.trim_end_matches('/')),
        }
    }
}

/// A compiled chain: its checks run in order, later ones using what earlier ones captured.
#[derive(Debug, Clone)]
pub struct Chain {
    pub name: String,
    pub checks: Vec<Check>,
    /// Run after the checks, passed or failed, with their captures and cookies.
    pub cleanup: Vec<Check>,
}

/// A compiled check.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub method: reqwest::Method,
    pub path: Template,
    pub query: Vec<(String, Template)>,
    pub headers: Vec<(String, Template)>,
    pub body: Option<BodyTemplate>,
    /// Redirects are not followed unless a check asks.
    pub follow_redirects: bool,
    /// Sends the chain's cookies and keeps the answer's.
    pub cookies: bool,
    pub assertions: Vec<Assertion>,
    /// With `--samples N`: the budget of the 95th percentile of the N latencies.
    pub p95_latency: Option<Duration>,
    /// Values later checks of the chain can use as `{{name}}`.
    pub captures: Vec<(String, CaptureFrom)>,
}

#[derive(Debug, Clone)]
pub enum BodyTemplate {
    Form(Vec<(String, Template)>),
    Json(JsonTemplate),
    Raw(Template),
}

/// What an answer must show.
#[derive(Debug, Clone)]
pub enum Assertion {
    Status(Vec<u16>),
    BodyContains(Template),
    BodyMatches(Pattern),
    JsonEquals(JsonPathExpr, JsonTemplate),
    HeaderEquals(String, Template),
    HeaderMatches(String, Pattern),
    MaxLatency(Duration),
}

/// Where a captured value comes from.
#[derive(Debug, Clone)]
pub enum CaptureFrom {
    Json(JsonPathExpr),
    /// Its first group, else the whole match.
    Regex(Pattern),
    /// A header's value; with a pattern, its first group (else the match) in the first value
    /// of the header it matches (a `Set-Cookie` among several).
    Header(String, Option<Pattern>),
}

impl Check {
    /// Every text of the check with the field it is in: what the variables are checked on.
    pub fn templates(&self) -> Vec<(String, &Template)> {
        let mut out = vec![("path".to_string(), &self.path)];
        out.extend(self.query.iter().map(|(k, t)| (format!("query.{k}"), t)));
        out.extend(self.headers.iter().map(|(k, t)| (format!("headers.{k}"), t)));
        match &self.body {
            Some(BodyTemplate::Form(f)) => out.extend(f.iter().map(|(k, t)| (format!("form.{k}"), t))),
            Some(BodyTemplate::Json(j)) => out.extend(j.templates().into_iter().map(|t| ("json".to_string(), t))),
            Some(BodyTemplate::Raw(t)) => out.push(("body".to_string(), t)),
            None => {}
        }
        for a in &self.assertions {
            match a {
                Assertion::BodyContains(t) => out.push(("body_contains".into(), t)),
                Assertion::JsonEquals(p, j) => {
                    out.extend(j.templates().into_iter().map(|t| (format!("json_equals.{}", p.as_str()), t)));
                }
                Assertion::HeaderEquals(h, t) => out.push((format!("header_equals.{h}"), t)),
                Assertion::Status(_)
                | Assertion::BodyMatches(_)
                | Assertion::HeaderMatches(..)
                | Assertion::MaxLatency(_) => {}
            }
        }
        out
    }
}

/// Where a chain came from, for its errors.
struct Origin {
    file: PathBuf,
    at: Locator,
    /// The path of the chain's checks in that file.
    checks: Vec<Seg<'static>>,
}

/// Every chain — `smoke.checks` as one chain named "checks", then `smoke.chains`, then the
/// include file's — compiled and checked.
pub fn compile(smoke: &Smoke, dir: &Path, at: &Locator) -> Result<Vec<Chain>> {
    let mut chains: Vec<Chain> = vec![];
    for (origin, name, checks, cleanup) in chain_sources(smoke, dir, at)? {
        if chains.iter().any(|c| c.name == name) {
            return Err(
                Error::usage(format!("{}: smoke chain {name:?} is defined twice", origin.file.display())).into()
            );
        }
        chains.push(compile_chain(&origin, &name, &checks, &cleanup)?);
    }
    check_suites(smoke, at)?;
    for i in 0..smoke.metrics.len() {
        check_metric(smoke, i, at)?;
    }
    check_datadog(smoke, at)?;
    Ok(chains)
}

/// A chain as written, before it is compiled: where, its name, its checks and its cleanup.
type ChainSource = (Origin, String, Vec<CheckFile>, Vec<CheckFile>);

/// Every chain, in order: `smoke.checks` (the chain "checks"), `smoke.chains`, then those of
/// `smoke.include`'s file.
fn chain_sources(smoke: &Smoke, dir: &Path, at: &Locator) -> Result<Vec<ChainSource>> {
    use Seg::Key;
    let origin = |file: &Path, at: &Locator, checks| Origin { file: file.to_path_buf(), at: at.clone(), checks };
    let mut sources: Vec<ChainSource> = vec![];
    if !smoke.checks.is_empty() {
        sources.push((
            origin(at.file(), at, vec![Key("smoke"), Key("checks")]),
            "checks".into(),
            smoke.checks.clone(),
            smoke.cleanup.clone(),
        ));
    } else if !smoke.cleanup.is_empty() {
        return Err(at.bad(&[Key("smoke"), Key("cleanup")], "a cleanup with no smoke.checks to clean up after"));
    }
    for (i, c) in smoke.chains.iter().enumerate() {
        let checks = vec![Key("smoke"), Key("chains"), Seg::Index(i), Key("checks")];
        sources.push((origin(at.file(), at, checks), c.name.clone(), c.checks.clone(), c.cleanup.clone()));
    }
    if let Some(inc) = &smoke.include {
        let path = dir.join(inc);
        let text = crate::config::locate::read_file(&path, "smoke.include")
            .map_err(|e| Error::usage(format!("{}: smoke.include: {e}", at.file().display())))?;
        let file: SmokeFile = toml::from_str(&text).map_err(|e| crate::config::locate::toml_error(&e, &text, &path))?;
        let inc_at = Locator::new(&text, &path);
        if !file.checks.is_empty() {
            sources.push((origin(&path, &inc_at, vec![Key("checks")]), "checks".into(), file.checks, file.cleanup));
        } else if !file.cleanup.is_empty() {
            return Err(Error::usage(format!(
                "{}: cleanup: a cleanup with no checks to clean up after",
                path.display()
            ))
            .into());
        }
        for (i, c) in file.chains.into_iter().enumerate() {
            let at = vec![Key("chains"), Seg::Index(i), Key("checks")];
            sources.push((origin(&path, &inc_at, at), c.name, c.checks, c.cleanup));
        }
    }
    Ok(sources)
}

fn check_suites(smoke: &Smoke, at: &Locator) -> Result<()> {
    use Seg::Key;
    for (i, suite) in smoke.suites.iter().enumerate() {
        let at_suite = |field: &'static str| [Key("smoke"), Key("suites"), Seg::Index(i), Key(field)];
        if smoke.suites[..i].iter().any(|s| s.name.as_str() == suite.name.as_str()) {
            return Err(at.bad(&at_suite("name"), format!("{:?} names two suites", suite.name.as_str())));
        }
        if suite.phases.is_empty() {
            return Err(at.bad(
                &at_suite("phases"),
                "expected at least one of \"smoke\", \"bake\", \"pre_traffic\", \"canary\"",
            ));
        }
        glob::Pattern::new(suite.junit.as_str())
            .map_err(|e| at.bad(&at_suite("junit"), format!("{:?}: not a glob ({e})", suite.junit.as_str())))?;
    }
    Ok(())
}

/// The `i`th metric's settings, together: a provider with what it needs, a query or a formula over
/// named queries, limits that are numbers, phases that have users' metrics.
fn check_metric(smoke: &Smoke, i: usize, at: &Locator) -> Result<()> {
    let m = &smoke.metrics[i];
    use super::settings::{Compare, Provider};
    use Seg::Key;
    let at_metric = |field: &'static str| [Key("smoke"), Key("metrics"), Seg::Index(i), Key(field)];
    let bad = |field: &'static str, what: &str| at.bad(&at_metric(field), what);
    if smoke.metrics[..i].iter().any(|o| o.name.as_str() == m.name.as_str()) {
        return Err(bad("name", &format!("{:?} names two metrics", m.name.as_str())));
    }
    if m.provider == Provider::Prometheus && m.url.is_none() {
        return Err(bad("url", "expected Prometheus' base URL, e.g. \"http://127.0.0.1:9090\""));
    }
    if m.provider == Provider::Datadog && smoke.datadog.is_none() {
        return Err(bad("provider", "\"datadog\" needs [smoke.datadog] with its site (or api_url) and keys"));
    }
    if m.compare == Compare::Absolute && !m.max.is_some_and(f64::is_finite) {
        return Err(bad("max", "compare = \"absolute\" needs max, a finite number"));
    }
    if !(m.max_ratio.is_finite() && m.max_ratio >= 1.0) {
        return Err(bad("max_ratio", "expected a number from 1 up (1.5: half as much again)"));
    }
    if !(m.min_delta.is_finite() && m.min_delta >= 0.0) {
        return Err(bad("min_delta", "expected a number from 0 up, in the query's unit"));
    }
    if m.no_data == super::settings::NoData::Extend && m.phases.contains(&super::settings::Phase::Canary) {
        return Err(bad(
            "no_data",
            "\"extend\" extends a smoke-check bake; a canary's bake follows deploy.canary_not_enough (use \"ignore\" or \"fail\" with phases = [\"canary\"])",
        ));
    }
    match (&m.query, &m.formula, m.queries.is_empty()) {
        // (a query and a formula are `Text`: never empty or blank)
        (Some(_), None, true) => {}
        (_, Some(_), _) if m.provider == Provider::Prometheus => {
            return Err(bad(
                "formula",
                "a formula is Datadog's (v2 timeseries); in Prometheus write the arithmetic in query",
            ));
        }
        (None, Some(_), false) => {
            if let Some(name) =
                m.queries.keys().find(|n| n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            {
                return Err(bad("queries", &format!("{name:?}: expected a name of letters, digits and _")));
            }
        }
        (Some(_), Some(_), _) | (Some(_), _, false) => {
            return Err(bad("query", "expected either query, or formula with queries, not both"));
        }
        (_, Some(_), true) => {
            return Err(bad("queries", "a formula needs the queries it names, e.g. queries = { errors = \"sum:…\" }"));
        }
        (None, None, false) => {
            return Err(bad("formula", "queries need a formula over them, e.g. formula = \"100 * errors / hits\""));
        }
        (None, None, true) => return Err(bad("query", "expected the query (or a formula over named queries)")),
    }
    if m.range && m.provider != Provider::Prometheus {
        return Err(bad("range", "range queries are Prometheus'; Datadog's queries already cover the window"));
    }
    if m.phases.is_empty() || m.phases.contains(&super::settings::Phase::PreTraffic) {
        return Err(bad(
            "phases",
            "expected \"smoke\", \"bake\" or \"canary\" (before traffic a candidate has no users' metrics)",
        ));
    }
    Ok(())
}

fn check_datadog(smoke: &Smoke, at: &Locator) -> Result<()> {
    use Seg::Key;
    if let Some(dd) = &smoke.datadog
        && dd.monitors.is_empty()
        && dd.monitor_tags.is_empty()
        && !smoke.metrics.iter().any(|m| m.provider == super::settings::Provider::Datadog)
    {
        return Err(at.bad(
            &[Key("smoke"), Key("datadog"), Key("monitors")],
            "expected at least one monitor id (or smoke.datadog.monitor_tags)",
        ));
    }
    if let Some(dd) = &smoke.datadog
        && let Some(t) = dd.monitor_tags.iter().find(|t| t.trim().is_empty() || t.contains(','))
    {
        return Err(at.bad(
            &[Key("smoke"), Key("datadog"), Key("monitor_tags")],
            format!("{:?}: expected a tag such as \"service:web\" (one per item, no commas)", t.as_str()),
        ));
    }
    Ok(())
}

fn compile_chain(origin: &Origin, name: &str, files: &[CheckFile], cleanup: &[CheckFile]) -> Result<Chain> {
    let mut known: Vec<String> = vec![];
    let checks = compile_checks(origin, name, files, "check", &mut known)?;
    let cleanup = compile_checks(origin, name, cleanup, "cleanup", &mut known)?;
    Ok(Chain { name: name.to_string(), checks, cleanup })
}

fn compile_checks(
    origin: &Origin,
    name: &str,
    files: &[CheckFile],
    what: &str,
    known: &mut Vec<String>,
) -> Result<Vec<Check>> {
    let mut checks = vec![];
    for (i, file) in files.iter().enumerate() {
        let bad = |f: &str, why: String| -> anyhow::Error {
            let mut path = origin.checks.clone();
            if what == "cleanup" {
                path.pop();
                path.push(Seg::Key("cleanup"));
            }
            path.push(Seg::Index(i));
            let line = origin.at.line(&path).map(|l| format!(":{l}")).unwrap_or_default();
            Error::usage(format!(
                "{}{line}: smoke chain {name:?}, {what} {} ({:?}): {f}: {why}",
                origin.file.display(),
                i + 1,
                file.name
            ))
            .into()
        };
        let check = compile_check(file, &bad)?;
        for (field, t) in check.templates() {
            for v in t.vars() {
                if let Var::Capture(c) = v
                    && !known.contains(c)
                {
                    return Err(bad(
                        &field,
                        format!(
                            "unknown variable {{{{{c}}}}}: expected run_id, version, env.NAME or a value captured earlier in the chain"
                        ),
                    ));
                }
            }
        }
        known.extend(check.captures.iter().map(|(n, _)| n.clone()));
        checks.push(check);
    }
    Ok(checks)
}

type Bad<'a> = &'a dyn Fn(&str, String) -> anyhow::Error;

fn compile_check(f: &CheckFile, bad: Bad<'_>) -> Result<Check> {
    if f.name.trim().is_empty() {
        return Err(bad("name", "expected a name for the check".into()));
    }
    let RequestParts { method, path, query, headers, body } = compile_request(f, bad)?;
    Ok(Check {
        name: f.name.clone(),
        method,
        path,
        query,
        headers,
        body,
        follow_redirects: f.follow_redirects,
        cookies: f.cookies,
        assertions: compile_assertions(f, bad)?,
        p95_latency: latency(bad, "p95_latency", &f.p95_latency)?,
        captures: compile_captures(f, bad)?,
    })
}

fn template(bad: Bad<'_>, field: &str, text: &str) -> Result<Template> {
    Template::parse(text).map_err(|e| bad(field, e))
}
fn pattern(bad: Bad<'_>, field: &str, re: &str) -> Result<Pattern> {
    Pattern::parse(re).map_err(|e| bad(field, e))
}
fn json_path(bad: Bad<'_>, field: &str, p: &str) -> Result<JsonPathExpr> {
    JsonPathExpr::parse(p).map_err(|e| bad(field, e))
}
fn header(bad: Bad<'_>, field: &str, h: &str) -> Result<String> {
    HeaderName::parse(h).map(|h| h.0).map_err(|e| bad(field, e))
}
fn latency(bad: Bad<'_>, field: &str, d: &Option<String>) -> Result<Option<Duration>> {
    d.as_deref().map(|d| Dur::<1, 600_000>::parse(d).map(|d| d.0).map_err(|e| bad(field, e))).transpose()
}

/// A check's request, compiled.
struct RequestParts {
    method: reqwest::Method,
    path: Template,
    query: Vec<(String, Template)>,
    headers: Vec<(String, Template)>,
    body: Option<BodyTemplate>,
}

/// The request: method, path, query, headers, body.
fn compile_request(f: &CheckFile, bad: Bad<'_>) -> Result<RequestParts> {
    let method = match &f.method {
        None => reqwest::Method::GET,
        Some(m) => reqwest::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|_| bad("method", format!("invalid HTTP method {m:?}")))?,
    };
    if !f.path.starts_with('/') {
        return Err(bad("path", "expected a path starting with /".into()));
    }
    let path = template(bad, "path", &f.path)?;
    if path.literal_contains(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("path", "expected a path without spaces or control characters".into()));
    }
    let query = f
        .query
        .iter()
        .map(|(k, v)| Ok((k.clone(), template(bad, &format!("query.{k}"), v)?)))
        .collect::<Result<_>>()?;
    let mut headers = vec![];
    for (k, v) in &f.headers {
        let field = format!("headers.{k}");
        let t = template(bad, &field, v)?;
        if t.literal_contains(|c| c.is_control() && c != '\t') {
            return Err(bad(&field, "a header value cannot hold a newline or a control character".into()));
        }
        headers.push((header(bad, &field, k)?, t));
    }
    let body = match (&f.form, &f.json, &f.body) {
        (Some(form), None, None) => Some(BodyTemplate::Form(
            form.iter()
                .map(|(k, v)| Ok((k.clone(), template(bad, &format!("form.{k}"), v)?)))
                .collect::<Result<_>>()?,
        )),
        (None, Some(j), None) => Some(BodyTemplate::Json(JsonTemplate::from_toml(j).map_err(|e| bad("json", e))?)),
        (None, None, Some(b)) => Some(BodyTemplate::Raw(template(bad, "body", b)?)),
        (None, None, None) => None,
        _ => return Err(bad("form", "expected at most one of form, json, body".into())),
    };
    Ok(RequestParts { method, path, query, headers, body })
}

/// What the answer must show, in the order the file says it.
fn compile_assertions(f: &CheckFile, bad: Bad<'_>) -> Result<Vec<Assertion>> {
    let status = f.expect_status.clone().unwrap_or_else(|| vec![200]);
    if status.is_empty() || status.iter().any(|s| !(100..=599).contains(s)) {
        return Err(bad("expect_status", "expected HTTP status codes 100-599".into()));
    }
    let mut out = vec![Assertion::Status(status)];
    if let Some(t) = &f.body_contains {
        if t.is_empty() {
            return Err(bad(
                "body_contains",
                "an empty text is in every body, so the check could never fail; expected the text a good answer holds"
                    .into(),
            ));
        }
        out.push(Assertion::BodyContains(template(bad, "body_contains", t)?));
    }
    if let Some(re) = &f.body_matches {
        out.push(Assertion::BodyMatches(pattern(bad, "body_matches", re)?));
    }
    for (p, v) in &f.json_equals {
        let value = JsonTemplate::from_toml(v).map_err(|e| bad(&format!("json_equals.{p}"), e))?;
        out.push(Assertion::JsonEquals(json_path(bad, "json_equals", p)?, value));
    }
    for (h, v) in &f.header_equals {
        let field = format!("header_equals.{h}");
        out.push(Assertion::HeaderEquals(header(bad, &field, h)?, template(bad, &field, v)?));
    }
    for (h, re) in &f.header_matches {
        let field = format!("header_matches.{h}");
        out.push(Assertion::HeaderMatches(header(bad, &field, h)?, pattern(bad, &field, re)?));
    }
    if let Some(d) = latency(bad, "max_latency", &f.max_latency)? {
        out.push(Assertion::MaxLatency(d));
    }
    Ok(out)
}

fn compile_captures(f: &CheckFile, bad: Bad<'_>) -> Result<Vec<(String, CaptureFrom)>> {
    let mut out = vec![];
    for (name, c) in &f.capture {
        let field = format!("capture.{name}");
        let from = match (&c.json, &c.regex, &c.header) {
            (Some(p), None, None) => CaptureFrom::Json(json_path(bad, &field, p)?),
            (None, Some(re), None) => CaptureFrom::Regex(pattern(bad, &field, re)?),
            (None, None, Some(h)) => CaptureFrom::Header(header(bad, &field, h)?, None),
            (None, Some(re), Some(h)) => CaptureFrom::Header(header(bad, &field, h)?, Some(pattern(bad, &field, re)?)),
            _ => {
                return Err(bad(
                    &field,
                    "expected one of json, regex, header (or header with a regex on its value)".into(),
                ));
            }
        };
        if matches!(name.as_str(), "run_id" | "version") || name.starts_with("env.") {
            return Err(bad(&field, format!("{name:?} is a variable of its own; choose another name")));
        }
        out.push((name.clone(), from));
    }
    Ok(out)
}

/// The environment variables the chains name (`{{env.NAME}}`): each must be set when the
/// checks run, or the check would send an empty value.
pub fn env_vars(chains: &[Chain]) -> Vec<(String, String, String)> {
    let mut out = vec![];
    for chain in chains {
        for check in chain.checks.iter().chain(&chain.cleanup) {
            for (field, t) in check.templates() {
                for v in t.vars() {
                    if let Var::Env(name) = v {
                        out.push((
                            name.clone(),
                            format!("smoke chain {:?}, check {:?}", chain.name, check.name),
                            field.clone(),
                        ));
                    }
                }
            }
        }
    }
    out
}
