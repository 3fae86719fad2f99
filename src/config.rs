//! `safedeploy.toml`: parsed strictly (unknown fields are errors) into plain data, then
//! validated. Every problem is one line naming the file, the line or field, and what was
//! expected; all are usage errors (exit 2), found before anything is changed.

use crate::error::Error;
use anyhow::Result;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const FILE_NAME: &str = "safedeploy.toml";

/// A duration written as text in the config: `"30s"`, `"2m"`, `"1h 30m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map(Dur).map_err(|e| {
            serde::de::Error::custom(format!("invalid duration {s:?} ({e}); expected e.g. \"30s\" or \"5m\""))
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub app: App,
    #[serde(default)]
    pub platform: PlatformConfig,
    #[serde(default)]
    pub build: Build,
    pub gate: Option<Gate>,
    #[serde(default)]
    pub deploy: Deploy,
    pub environments: BTreeMap<String, Environment>,
    #[serde(default)]
    pub smoke: Smoke,
    #[serde(default)]
    pub sla: Sla,
    #[serde(default)]
    pub logs: Logs,
    /// The config file, and the directory relative paths are resolved against.
    #[serde(skip)]
    pub path: PathBuf,
    #[serde(skip)]
    pub dir: PathBuf,
    /// Values of the file under secret-looking names (an app's `API_TOKEN`, an `X-Api-Key`
    /// header): masked wherever they appear.
    #[serde(skip)]
    pub secrets: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    pub name: String,
    /// The app's source inside the git repository, relative to this file: what a version bundles.
    #[serde(default = "dot")]
    pub source_dir: PathBuf,
}

fn dot() -> PathBuf {
    PathBuf::from(".")
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PlatformKind {
    /// Versions unpacked under the state dir; each environment a supervised local process.
    #[default]
    Local,
    /// AWS Elastic Beanstalk, driven through the `aws` CLI.
    ElasticBeanstalk,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformConfig {
    #[serde(default)]
    pub kind: PlatformKind,
    /// `[platform.elasticbeanstalk]`: needed when `kind = "elasticbeanstalk"`.
    pub elasticbeanstalk: Option<EbPlatform>,
}

/// The Elastic Beanstalk application and how the platform talks to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EbPlatform {
    /// The EB application whose versions and environments the tools drive.
    pub application: String,
    /// `--region` for every aws command; default: the aws CLI's own (AWS_REGION, profile).
    pub region: Option<String>,
    /// `--profile` for every aws command; default: the aws CLI's own.
    pub profile: Option<String>,
    /// The aws CLI as argv (v1 or v2).
    #[serde(default = "aws_command")]
    pub aws: Vec<String>,
    /// Where bundles are uploaded; default `elasticbeanstalk-<region>-<account>`, the bucket EB
    /// itself creates.
    pub bucket: Option<String>,
    /// Key prefix of the bundles in the bucket; default: the application's name.
    pub key_prefix: Option<String>,
    /// Health values that count as healthy after a deploy.
    #[serde(default = "accepted_health")]
    pub accepted_health: Vec<String>,
    /// First pause between polls of a deploy; grows by half each time up to `poll_max`.
    #[serde(default = "eb_poll")]
    pub poll: Dur,
    #[serde(default = "eb_poll_max")]
    pub poll_max: Dur,
    /// How long a deploy (or a CNAME swap) may take before the tool gives up waiting (exit 3).
    #[serde(default = "eb_deploy_timeout")]
    pub deploy_timeout: Dur,
    /// Once the environment is Ready on the new version, how long its health may take to reach
    /// an accepted value (Red fails at once).
    #[serde(default = "eb_health_grace")]
    pub health_grace: Dur,
    /// Throttled or transient aws calls are retried this many times, backing off from `retry_backoff`.
    #[serde(default = "eb_retries")]
    pub retries: u32,
    #[serde(default = "eb_retry_backoff")]
    pub retry_backoff: Dur,
    /// What collect-logs asks EB for: `bundle` (all log files) or `tail` (their last lines).
    #[serde(default = "eb_log_type")]
    pub logs: String,
    /// How long to wait for the instances' logs after requesting them.
    #[serde(default = "eb_logs_timeout")]
    pub logs_timeout: Dur,
}

fn aws_command() -> Vec<String> {
    vec!["aws".into()]
}
fn accepted_health() -> Vec<String> {
    vec!["Green".into()]
}
fn eb_poll() -> Dur {
    Dur(Duration::from_secs(10))
}
fn eb_poll_max() -> Dur {
    Dur(Duration::from_secs(30))
}
fn eb_deploy_timeout() -> Dur {
    Dur(Duration::from_secs(30 * 60))
}
fn eb_health_grace() -> Dur {
    Dur(Duration::from_secs(120))
}
fn eb_retries() -> u32 {
    5
}
fn eb_retry_backoff() -> Dur {
    Dur(Duration::from_secs(2))
}
fn eb_log_type() -> String {
    "bundle".into()
}
fn eb_logs_timeout() -> Dur {
    Dur(Duration::from_secs(180))
}

/// `[environments.X.elasticbeanstalk]`: the EB environment(s) behind a named environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EbEnvironment {
    /// The EB environment deployed by redeploying a label.
    pub environment: String,
    /// Blue/green: the second EB environment. A deploy goes to whichever of the two does not
    /// own `cname`, then the CNAMEs are swapped; a rollback swaps back.
    pub standby: Option<String>,
    /// Blue/green: the CNAME users reach (e.g. `urlshort-prod.us-east-1.elasticbeanstalk.com`,
    /// or its first label); the environment owning it is the live one.
    pub cname: Option<String>,
}

/// How a version is built once, when it is registered (local platform).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Build {
    /// A shell line run in the unpacked version's directory.
    pub command: Option<String>,
    /// Directories (relative to the version, or absolute) put first on the app's PATH.
    #[serde(default)]
    pub path: Vec<String>,
    #[serde(default = "build_timeout")]
    pub timeout: Dur,
}

impl Default for Build {
    fn default() -> Self {
        Build { command: None, path: vec![], timeout: build_timeout() }
    }
}
fn build_timeout() -> Dur {
    Dur(Duration::from_secs(600))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    /// The test command as argv (no shell), run in `dir`.
    pub command: Vec<String>,
    /// The JUnit XML report(s) the command writes, relative to `dir`; a glob takes several.
    pub junit: String,
    /// Where the command runs, relative to this file (default: the app's source dir).
    pub dir: Option<PathBuf>,
    #[serde(default = "gate_timeout")]
    pub timeout: Dur,
    #[serde(default = "one")]
    pub min_tests: u64,
    /// Change policy: source files (globs relative to `dir`) changed since the base must come
    /// with a changed test file. Empty: the policy is off.
    #[serde(default)]
    pub source: Vec<String>,
    /// What counts as a test file (globs relative to `dir`).
    #[serde(default = "test_globs")]
    pub tests: Vec<String>,
    /// Coverage report the command writes (Cobertura XML or lcov), relative to `dir`.
    pub coverage: Option<PathBuf>,
    /// Diff coverage: the percentage of measured changed lines the tests must execute.
    pub min_diff_coverage: Option<f64>,
}

fn test_globs() -> Vec<String> {
    [
        "tests/**",
        "test/**",
        "**/test_*.py",
        "**/*_test.py",
        "**/conftest.py",
        "**/*_test.go",
        "**/*.test.*",
        "**/*.spec.*",
        "src/test/**",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn gate_timeout() -> Dur {
    Dur(Duration::from_secs(1800))
}
fn one() -> u64 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    #[serde(default = "health_path")]
    pub health_path: String,
    /// How long a new version has to answer its health path with a 2xx.
    #[serde(default = "health_timeout")]
    pub health_timeout: Dur,
    /// How long a stopped version gets between SIGTERM and SIGKILL.
    #[serde(default = "stop_grace")]
    pub stop_grace: Dur,
    /// The web command; default: the version's `Procfile` `web:` line.
    pub command: Option<String>,
    /// Local platform: the reverse proxy that owns each environment's port, so a new version
    /// takes traffic only once healthy and the old one drains (`"nginx"`, a name or path), or
    /// `"none"`: stop the old version, then start the new one on the port (drops requests).
    #[serde(default = "proxy")]
    pub proxy: String,
}

impl Default for Deploy {
    fn default() -> Self {
        Deploy {
            health_path: health_path(),
            health_timeout: health_timeout(),
            stop_grace: stop_grace(),
            command: None,
            proxy: proxy(),
        }
    }
}
fn proxy() -> String {
    "nginx".into()
}
fn health_path() -> String {
    "/health".into()
}
fn health_timeout() -> Dur {
    Dur(Duration::from_secs(60))
}
fn stop_grace() -> Dur {
    Dur(Duration::from_secs(10))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// Base URL the checks use; on the local platform also where the app listens.
    pub url: String,
    /// Extra environment variables for the app.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Elastic Beanstalk platform: the EB environment(s) behind this one (ignored by `local`).
    pub elasticbeanstalk: Option<EbEnvironment>,
    #[serde(skip)]
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smoke {
    /// How long to wait for the environment to serve the expected version.
    #[serde(default = "smoke_deadline")]
    pub deadline: Dur,
    /// Pause between polls while waiting for the version.
    #[serde(default = "smoke_interval")]
    pub interval: Dur,
    /// Pause before the first poll.
    #[serde(default = "zero")]
    pub initial_delay: Dur,
    /// Consecutive answers with the expected version before the checks run (a rolling update
    /// can mix versions behind a load balancer).
    #[serde(default = "two")]
    pub consecutive: u32,
    /// Path answering the live version label (plain text or JSON `{"version": ...}`).
    #[serde(default = "version_path")]
    pub version_path: String,
    /// Total time limit of one request.
    #[serde(default = "request_timeout")]
    pub timeout: Dur,
    /// One chain of checks, run in order.
    #[serde(default)]
    pub checks: Vec<Check>,
    /// Independent chains, run side by side; each chain's checks run in order.
    #[serde(default)]
    pub chains: Vec<Chain>,
    /// A file (relative to this one) holding more `[[checks]]` and `[[chains]]`.
    pub include: Option<PathBuf>,
    /// Datadog monitors that must be OK in each round of a `--watch`.
    pub datadog: Option<Datadog>,
}

impl Default for Smoke {
    fn default() -> Self {
        Smoke {
            deadline: smoke_deadline(),
            interval: smoke_interval(),
            initial_delay: zero(),
            consecutive: two(),
            version_path: version_path(),
            timeout: request_timeout(),
            checks: vec![],
            chains: vec![],
            include: None,
            datadog: None,
        }
    }
}
fn smoke_deadline() -> Dur {
    Dur(Duration::from_secs(60))
}
fn smoke_interval() -> Dur {
    Dur(Duration::from_millis(200))
}
fn zero() -> Dur {
    Dur(Duration::ZERO)
}
fn two() -> u32 {
    2
}
fn request_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}
fn version_path() -> String {
    "/version".into()
}

/// Checks that run in order; later ones may use what earlier ones captured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chain {
    pub name: String,
    pub checks: Vec<Check>,
}

/// The shape of `smoke.include`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmokeFile {
    #[serde(default)]
    pub checks: Vec<Check>,
    #[serde(default)]
    pub chains: Vec<Chain>,
}

/// One request of a chain and what its answer must show. Text fields may use `{{run_id}}`
/// (unique per run), `{{version}}`, `{{env.NAME}}` and values captured by earlier checks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub name: String,
    #[serde(default = "get")]
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub form: Option<BTreeMap<String, String>>,
    pub json: Option<toml::Value>,
    pub body: Option<String>,
    /// Redirects are not followed unless a check asks.
    #[serde(default)]
    pub follow_redirects: bool,
    #[serde(default = "ok_status")]
    pub expect_status: Vec<u16>,
    pub body_contains: Option<String>,
    /// A regex the body must match.
    pub body_matches: Option<String>,
    /// JSONPath → the value it must select (the first match).
    #[serde(default)]
    pub json_equals: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub header_equals: BTreeMap<String, String>,
    /// Header → a regex its value must match.
    #[serde(default)]
    pub header_matches: BTreeMap<String, String>,
    pub max_latency: Option<Dur>,
    /// With `--samples N`: the 95th percentile of the N latencies.
    pub p95_latency: Option<Dur>,
    /// Values later checks of the chain can use as `{{name}}`.
    #[serde(default)]
    pub capture: BTreeMap<String, Capture>,
}
fn get() -> String {
    "GET".into()
}
fn ok_status() -> Vec<u16> {
    vec![200]
}

/// Where a captured value comes from: exactly one of a JSONPath into the body, a regex on the
/// body (its first group, else the whole match), or a header.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capture {
    pub json: Option<String>,
    pub regex: Option<String>,
    pub header: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Datadog {
    /// The Datadog site; the API is `https://api.SITE`.
    #[serde(default = "dd_site")]
    pub site: String,
    /// The API's base URL, instead of the one the site implies.
    pub api_url: Option<String>,
    pub monitors: Vec<u64>,
    /// Environment variables holding the keys.
    #[serde(default = "dd_api_key_env")]
    pub api_key_env: String,
    #[serde(default = "dd_app_key_env")]
    pub app_key_env: String,
}
fn dd_site() -> String {
    "datadoghq.com".into()
}
fn dd_api_key_env() -> String {
    "DD_API_KEY".into()
}
fn dd_app_key_env() -> String {
    "DD_APP_KEY".into()
}

impl Datadog {
    pub fn api_base(&self) -> String {
        self.api_url.clone().unwrap_or_else(|| format!("https://api.{}", self.site)).trim_end_matches('/').to_string()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sla {
    /// Downtime allowed per period.
    #[serde(default = "allowed_downtime")]
    pub allowed_downtime: Dur,
    /// `"calendar year"` (UTC; the default) or a rolling window such as `"90d"`.
    #[serde(default)]
    pub period: Period,
    /// Environments whose incidents spend the budget.
    #[serde(default = "production")]
    pub environments: Vec<String>,
}

impl Default for Sla {
    fn default() -> Self {
        Sla { allowed_downtime: allowed_downtime(), period: Period::CalendarYear, environments: production() }
    }
}

/// The period an SLA budget is counted over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Period {
    #[default]
    CalendarYear,
    Rolling(Duration),
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if matches!(s.trim(), "calendar year" | "calendar-year" | "year") {
            return Ok(Period::CalendarYear);
        }
        let text = s.trim().strip_prefix("rolling").unwrap_or(s.trim()).trim();
        match humantime::parse_duration(text) {
            Ok(d) if !d.is_zero() => Ok(Period::Rolling(d)),
            _ => Err(serde::de::Error::custom(format!(
                "invalid period {s:?}; expected \"calendar year\" or a rolling window such as \"90d\""
            ))),
        }
    }
}

impl Period {
    /// Where the period that contains `now` starts.
    pub fn start(&self, now: crate::clock::Millis) -> crate::clock::Millis {
        match self {
            Period::CalendarYear => crate::clock::year_start(now),
            Period::Rolling(d) => now - d.as_millis() as i64,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Period::CalendarYear => "calendar year".into(),
            Period::Rolling(d) => format!("rolling {}", humantime::format_duration(*d)),
        }
    }
}
fn allowed_downtime() -> Dur {
    Dur(Duration::from_secs(15 * 60))
}
fn production() -> Vec<String> {
    vec!["production".into()]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logs {
    /// Regex of interesting lines (default: error levels, exceptions, tracebacks, HTTP 5xx).
    pub pattern: Option<String>,
    #[serde(default = "three")]
    pub context: usize,
    /// Where the platform runs the app: cut off traceback paths to find the repository path.
    #[serde(default = "app_prefixes")]
    pub app_prefixes: Vec<String>,
    /// With `--datadog-payload`: how far before the alert the window starts.
    #[serde(default = "lookback")]
    pub alert_lookback: Dur,
    /// Datadog `env:` tag values → environment names, where they differ.
    #[serde(default)]
    pub datadog_environments: BTreeMap<String, String>,
    /// The alert transitions rollback acts on; any other (`Warn`, `No Data`, `Renotify`,
    /// `Recovered`) is acknowledged and changes nothing.
    #[serde(default = "alert_transitions")]
    pub alert_transitions: Vec<String>,
    /// `--notify`: the variables holding the Slack webhook URL and the Datadog API key.
    #[serde(default = "slack_env")]
    pub slack_webhook_env: String,
    #[serde(default = "dd_api_key_env")]
    pub datadog_api_key_env: String,
    /// The Datadog API for events (default: smoke.datadog's, else api.datadoghq.com).
    pub datadog_api_url: Option<String>,
}

impl Default for Logs {
    fn default() -> Self {
        Logs {
            pattern: None,
            context: three(),
            app_prefixes: app_prefixes(),
            alert_lookback: lookback(),
            datadog_environments: BTreeMap::new(),
            alert_transitions: alert_transitions(),
            slack_webhook_env: slack_env(),
            datadog_api_key_env: dd_api_key_env(),
            datadog_api_url: None,
        }
    }
}
fn alert_transitions() -> Vec<String> {
    vec!["Triggered".into(), "Re-Triggered".into()]
}
fn lookback() -> Dur {
    Dur(Duration::from_secs(30 * 60))
}
fn slack_env() -> String {
    "SLACK_WEBHOOK_URL".into()
}
fn app_prefixes() -> Vec<String> {
    vec!["/var/app/current/".into()]
}
fn three() -> usize {
    3
}

/// `label` is a valid version label: `[A-Za-z0-9][A-Za-z0-9._-]{0,99}` (Elastic Beanstalk's
/// limit is 100). It starts with a letter or digit, so it is never `.`, `..` or an option.
pub fn validate_label(label: &str) -> Result<()> {
    let ok = label.len() <= 100
        && label.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && label.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "invalid version label {label:?}: expected 1 to 100 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit"
        ))
        .into())
    }
}

impl Config {
    /// Finds `safedeploy.toml`: the given path, else the current directory or its parents.
    pub fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
        if let Some(p) = explicit {
            if p.is_file() {
                return Ok(p.to_path_buf());
            }
            return Err(Error::usage(format!("{}: config file not found", p.display())).into());
        }
        let cwd = std::env::current_dir()?;
        for dir in cwd.ancestors() {
            let candidate = dir.join(FILE_NAME);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
        Err(Error::usage(format!("no {FILE_NAME} in {} or its parents", cwd.display()))
            .with_hint("pass --config PATH or set SAFEDEPLOY_CONFIG")
            .into())
    }

    pub fn load(path: &Path) -> Result<Config> {
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::usage(format!("{}: cannot read: {e}", path.display())))?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            let at = line.map(|l| format!(":{l}")).unwrap_or_default();
            // A value under a secret-looking key is never echoed, not even in a type error.
            let secret = e.span().is_some_and(|s| key_before(text, s.start).is_some_and(crate::redact::is_secret_name));
            let message = if secret { mask_quoted(e.message().trim()) } else { e.message().trim().to_string() };
            Error::usage(format!("{}{at}: {message}", path.display()))
        })?;
        if let Ok(raw) = text.parse::<toml::Table>() {
            secret_values(&toml::Value::Table(raw), false, &mut cfg.secrets);
        }
        cfg.path = path.to_path_buf();
        cfg.dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if cfg.dir.as_os_str().is_empty() {
            cfg.dir = PathBuf::from(".");
        }
        for (name, env) in cfg.environments.iter_mut() {
            env.name = name.clone();
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn bad(&self, field: &str, what: impl std::fmt::Display) -> anyhow::Error {
        Error::usage(format!("{}: {field}: {what}", self.path.display())).into()
    }

    fn validate_elasticbeanstalk(&self) -> Result<()> {
        if self.platform.kind != PlatformKind::ElasticBeanstalk {
            return Ok(());
        }
        let Some(eb) = &self.platform.elasticbeanstalk else {
            return Err(self.bad(
                "platform.elasticbeanstalk",
                "kind = \"elasticbeanstalk\" needs a [platform.elasticbeanstalk] table with application = NAME",
            ));
        };
        let eb_name =
            |s: &str| s.len() >= 4 && s.len() <= 40 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if eb.application.trim().is_empty() || eb.application.len() > 100 {
            return Err(self.bad("platform.elasticbeanstalk.application", "expected the EB application's name"));
        }
        if eb.aws.is_empty() {
            return Err(self.bad("platform.elasticbeanstalk.aws", "expected the aws CLI as a non-empty argv list"));
        }
        if eb.accepted_health.is_empty()
            || eb.accepted_health.iter().any(|h| !matches!(h.as_str(), "Green" | "Yellow" | "Grey" | "Red"))
        {
            return Err(self.bad(
                "platform.elasticbeanstalk.accepted_health",
                format!("expected values among Green, Yellow, Grey, Red, got {:?}", eb.accepted_health),
            ));
        }
        if !matches!(eb.logs.as_str(), "bundle" | "tail") {
            return Err(self
                .bad("platform.elasticbeanstalk.logs", format!("expected \"bundle\" or \"tail\", got {:?}", eb.logs)));
        }
        if eb.poll.0.is_zero() || eb.poll_max.0 < eb.poll.0 {
            return Err(self.bad("platform.elasticbeanstalk.poll_max", "expected poll > 0 and poll_max >= poll"));
        }
        for (name, env) in &self.environments {
            let field = format!("environments.{name}.elasticbeanstalk");
            let Some(e) = &env.elasticbeanstalk else {
                return Err(self.bad(&field, "expected a table with environment = EB_ENVIRONMENT_NAME"));
            };
            for (k, v) in [("environment", Some(&e.environment)), ("standby", e.standby.as_ref())] {
                if let Some(v) = v
                    && !eb_name(v)
                {
                    return Err(self.bad(
                        &format!("{field}.{k}"),
                        format!("expected an EB environment name (4-40 of A-Z a-z 0-9 -), got {v:?}"),
                    ));
                }
            }
            match (&e.standby, &e.cname) {
                (Some(s), _) if *s == e.environment => {
                    return Err(
                        self.bad(&format!("{field}.standby"), "expected a different environment than `environment`")
                    );
                }
                (Some(_), None) => {
                    return Err(self.bad(&format!("{field}.cname"), "blue/green (standby) needs the CNAME users reach"));
                }
                (None, Some(_)) => {
                    return Err(self.bad(&format!("{field}.cname"), "a CNAME only means something with a standby"));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The `[platform.elasticbeanstalk]` table (validated to exist for that platform).
    pub fn elasticbeanstalk(&self) -> Result<&EbPlatform> {
        self.platform
            .elasticbeanstalk
            .as_ref()
            .ok_or_else(|| self.bad("platform.elasticbeanstalk", "expected a table with application = NAME"))
    }

    fn validate(&self) -> Result<()> {
        if self.app.name.trim().is_empty() {
            return Err(self.bad("app.name", "expected a non-empty name"));
        }
        if self.environments.is_empty() {
            return Err(self.bad("environments", "expected at least one environment, e.g. [environments.staging]"));
        }
        for (name, env) in &self.environments {
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(self.bad(&format!("environments.{name}"), "expected a name of A-Z a-z 0-9 - _"));
            }
            match reqwest::Url::parse(&env.url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => {
                    return Err(self.bad(
                        &format!("environments.{name}.url"),
                        format!("expected an http(s) URL, got {:?}", env.url),
                    ));
                }
            }
        }
        self.validate_elasticbeanstalk()?;
        if !self.deploy.health_path.starts_with('/') {
            return Err(self.bad("deploy.health_path", "expected a path starting with /"));
        }
        if let Some(gate) = &self.gate {
            if gate.command.is_empty() {
                return Err(self.bad("gate.command", "expected a non-empty argv list"));
            }
            if let Err(e) = glob::Pattern::new(&gate.junit) {
                return Err(self.bad("gate.junit", format!("invalid glob: {e}")));
            }
            for (field, globs) in [("gate.source", &gate.source), ("gate.tests", &gate.tests)] {
                for g in globs.iter() {
                    if let Err(e) = globset::Glob::new(g) {
                        return Err(self.bad(field, format!("invalid glob {g:?}: {e}")));
                    }
                }
            }
            if let Some(min) = gate.min_diff_coverage {
                if !(0.0..=100.0).contains(&min) {
                    return Err(self.bad("gate.min_diff_coverage", format!("expected a percentage 0-100, got {min}")));
                }
                if gate.coverage.is_none() {
                    return Err(
                        self.bad("gate.min_diff_coverage", "needs gate.coverage, the report the command writes")
                    );
                }
            }
        }
        self.smoke_chains()?;
        if let Some(p) = &self.logs.pattern
            && let Err(e) = regex::Regex::new(p)
        {
            return Err(self.bad("logs.pattern", format!("invalid regex: {}", one_line(&e.to_string()))));
        }
        Ok(())
    }

    /// Every chain of smoke checks — `smoke.checks` as one chain named "checks", then
    /// `smoke.chains`, then the include file's — validated: methods, regexes, JSONPaths,
    /// captures, and that every `{{variable}}` is known where it is used.
    pub fn smoke_chains(&self) -> Result<Vec<Chain>> {
        let mut chains = vec![];
        let mut add = |origin: &Path, checks: &[Check], more: &[Chain]| {
            if !checks.is_empty() {
                chains.push((origin.to_path_buf(), Chain { name: "checks".into(), checks: checks.to_vec() }));
            }
            chains.extend(more.iter().cloned().map(|c| (origin.to_path_buf(), c)));
        };
        add(&self.path, &self.smoke.checks, &self.smoke.chains);
        if let Some(inc) = &self.smoke.include {
            let path = self.dir.join(inc);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                Error::usage(format!("{}: smoke.include {}: cannot read: {e}", self.path.display(), path.display()))
            })?;
            let file: SmokeFile = toml::from_str(&text).map_err(|e| {
                let at = e.span().map(|s| format!(":{}", line_of(&text, s.start))).unwrap_or_default();
                Error::usage(format!("{}{at}: {}", path.display(), e.message().trim()))
            })?;
            add(&path, &file.checks, &file.chains);
        }
        let mut names = std::collections::HashSet::new();
        for (origin, chain) in &chains {
            if !names.insert(chain.name.clone()) {
                return Err(Error::usage(format!(
                    "{}: smoke chain {:?} is defined twice",
                    origin.display(),
                    chain.name
                ))
                .into());
            }
            let mut known: Vec<String> = vec!["run_id".into(), "version".into()];
            for (i, check) in chain.checks.iter().enumerate() {
                let bad = |f: &str, what: String| -> anyhow::Error {
                    Error::usage(format!(
                        "{}: smoke chain {:?}, check {} ({:?}): {f}: {what}",
                        origin.display(),
                        chain.name,
                        i + 1,
                        check.name
                    ))
                    .into()
                };
                validate_check(check, &known, &bad)?;
                known.extend(check.capture.keys().cloned());
            }
        }
        if let Some(dd) = &self.smoke.datadog {
            if dd.monitors.is_empty() {
                return Err(self.bad("smoke.datadog.monitors", "expected at least one monitor id"));
            }
            if reqwest::Url::parse(&dd.api_base()).is_err() {
                return Err(self.bad("smoke.datadog.api_url", format!("expected a URL, got {:?}", dd.api_base())));
            }
        }
        Ok(chains.into_iter().map(|(_, c)| c).collect())
    }

    /// The named environment, or a usage error listing the known ones.
    pub fn environment(&self, name: &str) -> Result<&Environment> {
        self.environments.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.environments.keys().map(String::as_str).collect();
            Error::usage(format!("{}: unknown environment {name:?}; known: {}", self.path.display(), known.join(", ")))
                .into()
        })
    }

    /// The app's source directory (absolute, or relative to the cwd).
    pub fn source_dir(&self) -> PathBuf {
        // `components` drops the `.` segments, so paths read `app/reports`, not `app/./reports`.
        self.dir.join(&self.app.source_dir).components().collect()
    }
}

/// The `{{name}}` variables a text uses.
pub fn variables(text: &str) -> Vec<String> {
    let mut out = vec![];
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        out.push(after[..end].trim().to_string());
        rest = &after[end + 2..];
    }
    out
}

fn validate_check(check: &Check, known: &[String], bad: &dyn Fn(&str, String) -> anyhow::Error) -> Result<()> {
    if !check.path.starts_with('/') {
        return Err(bad("path", "expected a path starting with /".into()));
    }
    if reqwest::Method::from_bytes(check.method.as_bytes()).is_err() {
        return Err(bad("method", format!("invalid HTTP method {:?}", check.method)));
    }
    if [check.form.is_some(), check.json.is_some(), check.body.is_some()].iter().filter(|b| **b).count() > 1 {
        return Err(bad("form", "expected at most one of form, json, body".into()));
    }
    if check.expect_status.is_empty() || check.expect_status.iter().any(|s| !(100..=599).contains(s)) {
        return Err(bad("expect_status", "expected HTTP status codes 100-599".into()));
    }
    let regex = |f: &str, re: &str| {
        regex::Regex::new(re).map(|_| ()).map_err(|e| bad(f, format!("invalid regex: {}", one_line(&e.to_string()))))
    };
    let json_path = |f: &str, p: &str| {
        serde_json_path::JsonPath::parse(p).map(|_| ()).map_err(|e| bad(f, format!("invalid JSONPath {p:?}: {e}")))
    };
    if let Some(re) = &check.body_matches {
        regex("body_matches", re)?;
    }
    for (h, re) in &check.header_matches {
        regex(&format!("header_matches.{h}"), re)?;
    }
    for p in check.json_equals.keys() {
        json_path("json_equals", p)?;
    }
    for (name, c) in &check.capture {
        let f = format!("capture.{name}");
        match (&c.json, &c.regex, &c.header) {
            (Some(p), None, None) => json_path(&f, p)?,
            (None, Some(re), None) => regex(&f, re)?,
            (None, None, Some(_)) => {}
            _ => return Err(bad(&f, "expected exactly one of json, regex, header".into())),
        }
    }
    let mut texts: Vec<(String, String)> =
        vec![("path".into(), check.path.clone()), ("body".into(), check.body.clone().unwrap_or_default())];
    texts.extend(check.query.iter().map(|(k, v)| (format!("query.{k}"), v.clone())));
    texts.extend(check.headers.iter().map(|(k, v)| (format!("headers.{k}"), v.clone())));
    texts.extend(check.form.iter().flatten().map(|(k, v)| (format!("form.{k}"), v.clone())));
    texts.extend(check.json.iter().map(|j| ("json".to_string(), j.to_string())));
    texts.extend(check.body_contains.iter().map(|v| ("body_contains".to_string(), v.clone())));
    texts.extend(check.header_equals.iter().map(|(k, v)| (format!("header_equals.{k}"), v.clone())));
    texts.extend(check.json_equals.iter().map(|(k, v)| (format!("json_equals.{k}"), v.to_string())));
    for (field, text) in texts {
        for var in variables(&text) {
            if !(known.contains(&var) || var.starts_with("env.")) {
                return Err(bad(
                    &field,
                    format!(
                        "unknown variable {{{{{var}}}}}: expected run_id, version, env.NAME or a value captured earlier in the chain"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Every value under a secret-looking key, at any depth (strings, and numbers as written).
fn secret_values(v: &toml::Value, secret: bool, out: &mut Vec<String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                secret_values(v, secret || crate::redact::is_secret_name(k), out);
            }
        }
        toml::Value::Array(a) => a.iter().for_each(|v| secret_values(v, secret, out)),
        toml::Value::String(s) if secret => out.push(s.clone()),
        toml::Value::Integer(i) if secret => out.push(i.to_string()),
        toml::Value::Float(f) if secret => out.push(f.to_string()),
        _ => {}
    }
}

/// The key whose value starts at `offset` (`KEY = value`, also inside an inline table).
fn key_before(text: &str, offset: usize) -> Option<&str> {
    let before = text.get(..offset)?;
    let before = before.trim_end().strip_suffix('=')?.trim_end();
    let start = before
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '"' | '\'' | '.')))
        .map_or(0, |i| i + 1);
    Some(before[start..].trim_matches(['"', '\'']))
}

/// A message with its `quoted` parts masked.
fn mask_quoted(message: &str) -> String {
    let mut out = String::new();
    for (i, part) in message.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        out.push_str(if i % 2 == 1 { crate::redact::MASK } else { part });
    }
    out
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[app]\nname = \"demo\"\n[environments.staging]\nurl = \"http://127.0.0.1:8101\"\n";

    #[test]
    fn the_example_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/url-shortener");
        for name in ["safedeploy.toml", "safedeploy.elasticbeanstalk.toml"] {
            let c = Config::load(&dir.join(name)).expect(name);
            assert_eq!(c.app.name, "url-shortener");
        }
        let eb = Config::load(&dir.join("safedeploy.elasticbeanstalk.toml")).expect("eb");
        assert_eq!(eb.platform.kind, PlatformKind::ElasticBeanstalk);
        let prod = eb.environments["production"].elasticbeanstalk.as_ref().expect("production");
        assert_eq!(prod.standby.as_deref(), Some("urlshort-green"));
        assert_eq!(eb.elasticbeanstalk().expect("table").poll_max, Dur(Duration::from_secs(30)));
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse(MINIMAL, Path::new("x/safedeploy.toml")).expect("parses");
        assert_eq!(c.deploy.health_path, "/health");
        assert_eq!(c.environments["staging"].name, "staging");
        assert_eq!(c.dir, PathBuf::from("x"));
        assert_eq!(c.sla.allowed_downtime, Dur(Duration::from_secs(900)));
    }

    #[test]
    fn unknown_field_names_file_line_and_field() {
        let text = format!("{MINIMAL}colour = \"red\"\n");
        let e = Config::parse(&text, Path::new("s.toml")).expect_err("rejects");
        let msg = e.to_string();
        assert!(msg.starts_with("s.toml:5: unknown field `colour`"), "{msg}");
    }

    #[test]
    fn bad_url_names_field() {
        let text = MINIMAL.replace("http://127.0.0.1:8101", "ftp:/x");
        let e = Config::parse(&text, Path::new("s.toml")).expect_err("rejects");
        assert_eq!(e.to_string(), "s.toml: environments.staging.url: expected an http(s) URL, got \"ftp:/x\"");
    }

    #[test]
    fn a_secret_in_a_type_error_is_not_echoed() {
        let text = MINIMAL.replace("url =", "env = { DB_PASSWORD = 90817263 }\nurl =");
        let e = Config::parse(&text, Path::new("s.toml")).expect_err("rejects");
        assert_eq!(e.to_string(), "s.toml:4: invalid type: integer `****`, expected a string");
        assert_eq!(key_before("a = { B_TOKEN = ", 16), Some("B_TOKEN"));
        assert_eq!(key_before("\"X-Api-Key\" = ", 14), Some("X-Api-Key"));
        // Other type errors keep what they say.
        let e =
            Config::parse(&MINIMAL.replace("url =", "env = { PLAIN = 5 }\nurl ="), Path::new("s.toml")).expect_err("x");
        assert!(e.to_string().contains("`5`"), "{e}");
    }

    #[test]
    fn labels() {
        assert!(validate_label("v1.2_rc-3").is_ok());
        assert!(validate_label("").is_err());
        assert!(validate_label("a b").is_err());
        assert!(validate_label(&"x".repeat(101)).is_err());
        assert!(validate_label(&"x".repeat(100)).is_ok());
        for bad in [".", "..", "-rf", "--help", "_x", ".hidden", "a/b", "a\nb", "é"] {
            assert!(validate_label(bad).is_err(), "{bad}");
        }
    }
}
