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
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformConfig {
    #[serde(default)]
    pub kind: PlatformKind,
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
}

impl Default for Deploy {
    fn default() -> Self {
        Deploy { health_path: health_path(), health_timeout: health_timeout(), stop_grace: stop_grace(), command: None }
    }
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
    #[serde(skip)]
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smoke {
    /// How long to wait for the environment to serve the expected version.
    #[serde(default = "smoke_deadline")]
    pub deadline: Dur,
    #[serde(default = "smoke_interval")]
    pub interval: Dur,
    /// Path answering the live version label (plain text or JSON `{"version": ...}`).
    #[serde(default = "version_path")]
    pub version_path: String,
    #[serde(default)]
    pub checks: Vec<Check>,
}

impl Default for Smoke {
    fn default() -> Self {
        Smoke { deadline: smoke_deadline(), interval: smoke_interval(), version_path: version_path(), checks: vec![] }
    }
}
fn smoke_deadline() -> Dur {
    Dur(Duration::from_secs(60))
}
fn smoke_interval() -> Dur {
    Dur(Duration::from_millis(200))
}
fn version_path() -> String {
    "/version".into()
}

/// One request of the smoke chain and what its answer must show. Text fields may use
/// `{{run_id}}` (unique per run) and `{{version}}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub name: String,
    #[serde(default = "get")]
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub form: Option<BTreeMap<String, String>>,
    pub json: Option<toml::Value>,
    pub body: Option<String>,
    #[serde(default = "ok_status")]
    pub expect_status: Vec<u16>,
    pub body_contains: Option<String>,
    #[serde(default)]
    pub header_equals: BTreeMap<String, String>,
    pub max_latency: Option<Dur>,
}
fn get() -> String {
    "GET".into()
}
fn ok_status() -> Vec<u16> {
    vec![200]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sla {
    /// Downtime allowed per calendar year.
    #[serde(default = "allowed_downtime")]
    pub allowed_downtime: Dur,
    /// Environments whose incidents spend the budget.
    #[serde(default = "production")]
    pub environments: Vec<String>,
}

impl Default for Sla {
    fn default() -> Self {
        Sla { allowed_downtime: allowed_downtime(), environments: production() }
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
    /// Case-insensitive regex of interesting lines (default: error levels, exceptions,
    /// tracebacks, HTTP 5xx).
    pub pattern: Option<String>,
    #[serde(default = "three")]
    pub context: usize,
}

impl Default for Logs {
    fn default() -> Self {
        Logs { pattern: None, context: three() }
    }
}
fn three() -> usize {
    3
}

/// `label` is a valid version label: `[A-Za-z0-9._-]{1,100}` (Elastic Beanstalk's limit).
pub fn validate_label(label: &str) -> Result<()> {
    let ok = !label.is_empty()
        && label.len() <= 100
        && label.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!("invalid version label {label:?}: expected 1 to 100 characters of A-Z a-z 0-9 . _ -"))
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
            let at = e.span().map(|s| format!(":{}", line_of(text, s.start))).unwrap_or_default();
            Error::usage(format!("{}{at}: {}", path.display(), e.message().trim()))
        })?;
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
        for (i, check) in self.smoke.checks.iter().enumerate() {
            let field = |f: &str| format!("smoke.checks[{i}] ({}).{f}", check.name);
            if !check.path.starts_with('/') {
                return Err(self.bad(&field("path"), "expected a path starting with /"));
            }
            if reqwest::Method::from_bytes(check.method.as_bytes()).is_err() {
                return Err(self.bad(&field("method"), format!("invalid HTTP method {:?}", check.method)));
            }
            let bodies = [check.form.is_some(), check.json.is_some(), check.body.is_some()];
            if bodies.iter().filter(|b| **b).count() > 1 {
                return Err(self.bad(&field("form"), "expected at most one of form, json, body"));
            }
            if check.expect_status.iter().any(|s| !(100..=599).contains(s)) {
                return Err(self.bad(&field("expect_status"), "expected HTTP status codes 100-599"));
            }
        }
        if let Some(p) = &self.logs.pattern
            && let Err(e) = regex::Regex::new(p)
        {
            return Err(self.bad("logs.pattern", format!("invalid regex: {}", one_line(&e.to_string()))));
        }
        Ok(())
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
    fn labels() {
        assert!(validate_label("v1.2_rc-3").is_ok());
        assert!(validate_label("").is_err());
        assert!(validate_label("a b").is_err());
        assert!(validate_label(&"x".repeat(101)).is_err());
    }
}
