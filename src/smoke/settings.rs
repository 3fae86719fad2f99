//! The `[[smoke.suites]]` and `[[smoke.metrics]]` tables as the file writes them: types and
//! defaults only, so the configuration reads them without the code that runs them.

use crate::config::values::{Argv, Dur, HttpUrl, Text};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// When a suite runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// smoke-check's first round, through the environment's address.
    Smoke,
    /// Every later round of `smoke-check --watch`.
    Bake,
    /// promote's check before traffic, at the candidate's own address.
    PreTraffic,
    /// A canary's first round, at the candidate's own address.
    Canary,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Smoke => "smoke",
            Phase::Bake => "bake",
            Phase::PreTraffic => "pre_traffic",
            Phase::Canary => "canary",
        }
    }
}

/// One suite as the file writes it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    pub name: Text,
    /// argv, no shell.
    pub command: Argv,
    /// The JUnit report(s) it writes, a glob relative to `dir`.
    pub junit: Text,
    /// Where it runs, relative to the config file (default: the app's source dir).
    pub dir: Option<PathBuf>,
    #[serde(default = "default_timeout")]
    pub timeout: Dur<1_000, 86_400_000>,
    #[serde(default = "default_phases")]
    pub phases: Vec<Phase>,
}

fn default_timeout() -> Dur<1_000, 86_400_000> {
    Dur::secs(600)
}
fn default_phases() -> Vec<Phase> {
    vec![Phase::Smoke, Phase::PreTraffic]
}

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
    /// The query (Datadog with a formula: the named `queries` instead).
    pub query: Option<Text>,
    /// Datadog v2: the formula over the named queries (`"100 * errors / hits"`).
    pub formula: Option<Text>,
    /// Datadog v2: the queries a formula names, by name.
    #[serde(default)]
    pub queries: std::collections::BTreeMap<String, Text>,
    /// Prometheus: a range query over the window (the mean of its points), not an instant one.
    #[serde(default)]
    pub range: bool,
    /// Prometheus' range query: the step between points.
    #[serde(default = "default_step")]
    pub step: Dur<1_000, 3_600_000>,
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
    pub no_data: NoData,
    /// `no_data = "extend"`: the longest a bake is extended to while the metric has no data.
    #[serde(default = "default_extend")]
    pub extend_up_to: Dur<1_000, 86_400_000>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default = "default_metric_phases")]
    pub phases: Vec<Phase>,
    #[serde(default = "default_interval")]
    pub interval: Dur<1_000, 3_600_000>,
    #[serde(default = "default_window")]
    pub window: Dur<1_000, 86_400_000>,
}

/// What a metric with no data does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NoData {
    /// No verdict: the round neither passes nor fails on it, and says so.
    #[default]
    #[serde(alias = "pass")]
    Ignore,
    /// A verdict against the version.
    Fail,
    /// A bake goes on until the metric has data, up to `extend_up_to`; still none then is
    /// inconclusive (exit 4, nothing marked bad).
    Extend,
}

fn default_step() -> Dur<1_000, 3_600_000> {
    Dur::secs(15)
}
fn default_extend() -> Dur<1_000, 86_400_000> {
    Dur::secs(900)
}
fn default_ratio() -> f64 {
    1.5
}
fn default_metric_phases() -> Vec<Phase> {
    vec![Phase::Canary, Phase::Bake]
}
fn default_interval() -> Dur<1_000, 3_600_000> {
    Dur::secs(30)
}
fn default_window() -> Dur<1_000, 86_400_000> {
    Dur::secs(300)
}
