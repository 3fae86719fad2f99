//! `safedeploy.toml`: found, read once and parsed strictly (unknown fields are errors) into
//! typed values, then checked as a whole. Every problem is one line naming the file, the line,
//! the field and what is accepted; all are usage errors (exit 2), found before anything is
//! changed, so a configuration mistake is never a verdict against a version.
//!
//! This module owns the top of the file — `[app]`, `[platform]`, `[environments.*]` — and the
//! rules that span sections; each section's schema lives with what uses it: `[smoke]` in
//! `smoke::spec`, `[gate]` in `gate::settings`, `[build]` and `[deploy]` in
//! `platform::local::settings`, the Elastic Beanstalk tables in
//! `platform::elasticbeanstalk::settings`, `[sla]` in `sla`, `[logs]` in `logs::settings`.

pub mod appenv;
pub mod fields;
pub mod locate;
pub mod values;

pub use locate::{Locator, Seg, line_of, read_file, toml_error};

use crate::error::Error;
use crate::gate::settings::Gate;
use crate::logs::settings::Logs;
use crate::platform::elasticbeanstalk::settings::{EbEnvironment, EbPlatform};
use crate::platform::local::settings::{Build, Deploy};
use crate::sla::settings::Sla;
use crate::smoke::spec::{Chain, Smoke};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
pub use values::*;

pub const FILE_NAME: &str = "safedeploy.toml";

#[derive(Debug, Clone, Deserialize, Serialize)]
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
    /// Every smoke chain — `smoke.checks` as one chain named "checks", `smoke.chains`, then the
    /// include file's — compiled and checked.
    #[serde(skip)]
    pub chains: Vec<Chain>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    pub name: Text,
    /// The app's source inside the git repository, relative to this file: what a version
    /// bundles. Default: this file's directory.
    #[serde(default)]
    pub source_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PlatformKind {
    /// Versions unpacked under the state dir; each environment a supervised local process.
    #[default]
    Local,
    /// AWS Elastic Beanstalk, driven through the `aws` CLI.
    ElasticBeanstalk,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformConfig {
    #[serde(default)]
    pub kind: PlatformKind,
    /// `[platform.elasticbeanstalk]`: needed when `kind = "elasticbeanstalk"`.
    pub elasticbeanstalk: Option<EbPlatform>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// Base URL the checks use; on the local platform also where the app listens.
    pub url: HttpUrl,
    /// Extra environment variables for the app (see [`appenv`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, appenv::AppValue>,
    /// Elastic Beanstalk platform: the EB environment(s) behind this one (ignored by `local`).
    pub elasticbeanstalk: Option<EbEnvironment>,
    #[serde(skip)]
    pub name: String,
}

impl Environment {
    /// The variables the app gets from the config, for one start: placeholders expanded,
    /// `from_env` values read from `shell`. A `from_env` variable the shell does not set (or
    /// sets empty) is a usage error naming the field: the app would start without its secret.
    pub fn app_vars(
        &self,
        shell: &crate::environ::Environ,
        p: &appenv::Placeholders<'_>,
    ) -> Result<Vec<(String, String)>> {
        self.env
            .iter()
            .map(|(k, v)| match v {
                appenv::AppValue::FromEnv(var) => shell.get(var).map(|x| (k.clone(), x.to_string())).ok_or_else(|| {
                    Error::usage(format!(
                        "environments.{}.env.{k}: from_env = {var:?}, which the deploying shell does not set (or sets empty); nothing was changed",
                        self.name
                    ))
                    .with_hint(format!(
                        "set {var} for this run (in Jenkins: withCredentials([string(credentialsId: '...', variable: '{var}')]))"
                    ))
                    .into()
                }),
                text => Ok((k.clone(), text.expand(p).unwrap_or_default())),
            })
            .collect()
    }

    /// [`Environment::app_vars`]' check alone, before anything is changed.
    pub fn check_app_vars(&self, shell: &crate::environ::Environ) -> Result<()> {
        let p = appenv::Placeholders { data_dir: "", port: "", env: "", version: "" };
        self.app_vars(shell, &p).map(drop)
    }
}

impl Config {
    /// Finds `safedeploy.toml`: the given path, else the current directory or its parents.
    pub fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
        if let Some(p) = explicit {
            if p.is_file() {
                return Ok(p.to_path_buf());
            }
            return Err(Error::usage(format!("{}: config file not found (or not a file)", p.display())).into());
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

    /// Every default and no environment: what `collect-logs --input` reads plain files with
    /// where there is no config, as the grep pipeline it replaces needs none. `dir` stands in
    /// for the config's directory.
    pub fn defaults(dir: &Path) -> Config {
        Config {
            app: App { name: Text("app".into()), source_dir: None },
            platform: Default::default(),
            build: Default::default(),
            gate: None,
            deploy: Default::default(),
            environments: BTreeMap::new(),
            smoke: Default::default(),
            sla: Sla { environments: vec![], ..Default::default() },
            logs: Default::default(),
            path: dir.join(FILE_NAME),
            dir: dir.to_path_buf(),
            secrets: vec![],
            chains: vec![],
        }
    }

    pub fn load(path: &Path) -> Result<Config> {
        let text = read_file(path, "config")?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| toml_error(&e, text, path))?;
        cfg.path = path.to_path_buf();
        cfg.dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if cfg.dir.as_os_str().is_empty() {
            cfg.dir = PathBuf::from(".");
        }
        for (name, env) in cfg.environments.iter_mut() {
            env.name = name.clone();
        }
        if let Ok(raw) = toml::de::DeTable::parse(text) {
            secret_values(raw.get_ref(), false, &mut cfg.secrets);
        }
        let at = Locator::new(text, &cfg.path);
        // The default SLA environment, production, applies where there is one; a list that is
        // written must name environments that exist.
        if !at.has(&[Seg::Key("sla"), Seg::Key("environments")]) {
            let envs = &cfg.environments;
            cfg.sla.environments.retain(|e| envs.contains_key(e));
        }
        cfg.chains = crate::smoke::spec::compile(&cfg.smoke, &cfg.dir, &at)?;
        cfg.validate(&at)?;
        Ok(cfg)
    }

    /// The rules that span sections (each section checks its own values as they are read).
    fn validate(&self, at: &Locator) -> Result<()> {
        use Seg::Key;
        if self.environments.is_empty() {
            return Err(
                at.bad(&[Key("environments")], "expected at least one environment, e.g. [environments.staging]")
            );
        }
        for name in self.environments.keys() {
            if name.is_empty()
                || name.starts_with('-')
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(at.bad(
                    &[Key("environments"), Key(name)],
                    "expected a name of A-Z a-z 0-9 - _, not starting with -",
                ));
            }
        }
        for env in &self.sla.environments {
            if !self.environments.contains_key(env) {
                let known: Vec<&str> = self.environments.keys().map(String::as_str).collect();
                return Err(at.bad(
                    &[Key("sla"), Key("environments")],
                    format!(
                        "{env:?} names no environment (known: {}); the SLA guard would not apply",
                        known.join(", ")
                    ),
                ));
            }
        }
        if self.chains.is_empty() {
            return Err(at.bad(&[Key("smoke")],
                "expected at least one smoke check ([[smoke.chains]] with [[smoke.chains.checks]]): zero checks can never pass",
            ));
        }
        self.deploy.validate(at)?;
        match self.platform.kind {
            PlatformKind::Local => {
                let urls: Vec<(&str, &HttpUrl)> = self.environments.iter().map(|(n, e)| (n.as_str(), &e.url)).collect();
                crate::platform::local::settings::validate(&urls, &self.build, &self.deploy, at)?;
            }
            PlatformKind::ElasticBeanstalk => {
                let envs: Vec<(&str, Option<&EbEnvironment>)> =
                    self.environments.iter().map(|(n, e)| (n.as_str(), e.elasticbeanstalk.as_ref())).collect();
                crate::platform::elasticbeanstalk::settings::validate(
                    self.platform.elasticbeanstalk.as_ref(),
                    &envs,
                    at,
                )?;
            }
        }
        if let Some(gate) = &self.gate {
            gate.validate(at)?;
        }
        let names: Vec<&str> = self.environments.keys().map(String::as_str).collect();
        crate::logs::settings::validate(&self.logs, &names, at)?;
        Ok(())
    }

    /// The `[platform.elasticbeanstalk]` table (validated to exist for that platform).
    pub fn elasticbeanstalk(&self) -> Result<&EbPlatform> {
        self.platform.elasticbeanstalk.as_ref().ok_or_else(|| {
            Error::usage(format!(
                "{}: platform.elasticbeanstalk: expected a table with application = NAME",
                self.path.display()
            ))
            .into()
        })
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
        let rel = self.app.source_dir.clone().unwrap_or_else(|| PathBuf::from("."));
        // `components` drops the `.` segments, so paths read `app/reports`, not `app/./reports`.
        self.dir.join(rel).components().collect()
    }

    /// The variables the config names as holding a webhook or a key: masked wherever their
    /// values appear, and never handed to the app, whatever their names.
    pub fn secret_vars(&self) -> Vec<&str> {
        let mut named = vec![self.logs.slack_webhook_env.as_str(), self.logs.datadog_api_key_env.as_str()];
        if let Some(dd) = &self.smoke.datadog {
            named.extend([dd.api_key_env.as_str(), dd.app_key_env.as_str()]);
        }
        // What an environment hands its app from the deploying shell: masked, and handed to
        // the app only under the name the config gives it.
        for env in self.environments.values() {
            named.extend(env.env.values().filter_map(appenv::AppValue::from_env));
        }
        named
    }

    /// The effective configuration, every default shown (`safedeploy check`), with what it
    /// must not show masked whatever its length: values under secret-looking names, and what
    /// smoke checks send in headers (the same headers a run never prints).
    pub fn effective(&self) -> Result<String> {
        Ok(toml::to_string_pretty(&self.effective_value()?)?)
    }

    /// [`Config::effective`] as a value (for `check --json`).
    pub fn effective_value(&self) -> Result<toml::Value> {
        let mut v = toml::Value::try_from(self)?;
        mask_secrets(&mut v, false);
        Ok(v)
    }
}

/// Every value under a secret-looking key, at any depth (strings, and numbers as written).
fn secret_values(t: &toml::de::DeTable<'_>, secret: bool, out: &mut Vec<String>) {
    use toml::de::DeValue;
    fn value(v: &DeValue<'_>, secret: bool, out: &mut Vec<String>) {
        match v {
            DeValue::Table(t) => secret_values(t, secret, out),
            DeValue::Array(a) => a.iter().for_each(|v| value(v.get_ref(), secret, out)),
            DeValue::String(s) if secret => out.push(s.to_string()),
            DeValue::Integer(i) if secret => out.push(i.as_str().to_string()),
            DeValue::Float(f) if secret => out.push(f.as_str().to_string()),
            _ => {}
        }
    }
    for (k, v) in t.iter() {
        // `{ from_env = "NAME" }` names where a secret comes from; the name is no secret.
        if *k.get_ref() == "from_env" {
            continue;
        }
        // A capture's name (`session_cookie`) says what it holds at run time, not that where
        // it is read from (`header = "set-cookie"`) is a secret.
        if *k.get_ref() == "capture"
            && let DeValue::Table(captures) = v.get_ref()
        {
            captures.iter().for_each(|(_, c)| value(c.get_ref(), secret, out));
            continue;
        }
        value(v.get_ref(), secret || crate::redact::is_secret_name(k.get_ref()), out);
    }
}

/// Masks, in an effective configuration, every scalar under a secret-looking name (at any
/// depth below it) and every header value a check sends. A capture's own name (`cookie`) does
/// not hide where it is read from.
fn mask_secrets(v: &mut toml::Value, secret: bool) {
    use toml::Value;
    match v {
        Value::Table(t) => {
            for (k, x) in t.iter_mut() {
                if k == "capture" {
                    if let Value::Table(captures) = x {
                        captures.iter_mut().for_each(|(_, c)| mask_secrets(c, false));
                    }
                } else if k == "headers"
                    && let Value::Table(headers) = x
                {
                    for (name, value) in headers.iter_mut() {
                        if !crate::http::harmless_header(name) {
                            *value = Value::String(crate::redact::MASK.into());
                        }
                    }
                } else if k != "from_env" {
                    mask_secrets(x, secret || (crate::redact::is_secret_name(k) && !k.ends_with("_env")));
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|x| mask_secrets(x, secret)),
        Value::String(_) | Value::Integer(_) | Value::Float(_) if secret => {
            *v = Value::String(crate::redact::MASK.into());
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
