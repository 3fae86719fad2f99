//! The Elastic Beanstalk platform, driven through the `aws` CLI (v1 or v2).
//!
//! - A version is the bundle zip uploaded to S3 under a key naming its commit, then
//!   `create-application-version --process`, polled until processed. A label EB already holds
//!   with the same key is reused; with another key it is refused (labels name one bundle).
//! - A deploy never touches an environment that is not `Ready` (someone else's update). It reads
//!   the live label, calls `update-environment`, then polls `describe-environments` (backing
//!   off from `poll` to `poll_max`) and streams `describe-events` since the update began.
//!   Success needs all of: `Ready`, the target label, an accepted health, no ERROR/FATAL event,
//!   and (with enhanced health) every instance's own Deployment record on the label — a rolling
//!   deploy can end Ready with an instance EB skipped. Each change of status, health and how
//!   many instances run the label is printed as it is seen. Health Red for `health_grace` while
//!   EB is still updating (a rolling batch that fails users, which EB would wait on for its
//!   rolling timeout) aborts the update: EB puts the old version back. Ready on the old label
//!   is a failure (EB rolled back); a deadline passed is exit 3, never a success.
//! - Blue/green (`standby` + `cname`): the version goes to the environment not owning the CNAME,
//!   then `swap-environment-cnames` and a wait until the CNAME is seen on it. A rollback to what
//!   the other environment still runs healthy is a swap only: seconds, no redeploy.
//! - Logs: `request-environment-info`, then `retrieve-environment-info` until every instance has
//!   a new entry; each presigned URL is downloaded (reqwest) under
//!   `<state>/elasticbeanstalk/logs/<env>/<time>/<instance>/` and bundles are unpacked there, so
//!   every file collect-logs reads names its instance.

mod aws;
pub mod settings;

use super::{Live, Platform, Switched};
use crate::config::Environment;
use crate::effects::Effects;
use crate::http::Request;
use crate::ledger::Version;
use crate::{could_not_act, usage, verdict};
use anyhow::{Context, Result};
use aws::{Aws, AwsError};
use serde::Deserialize;
use settings::{EbEnvironment, EbPlatform};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub struct ElasticBeanstalk<'a> {
    fx: &'a Effects,
    /// Where fetched logs go.
    state_dir: &'a Path,
    /// The config file, named in errors about its values.
    config_file: &'a Path,
    cfg: &'a EbPlatform,
    aws: Aws<'a>,
    bucket: OnceLock<String>,
    /// Environments found to have basic health (no per-instance records), warned about once.
    basic_health: std::sync::Mutex<HashSet<String>>,
}

/// An environment as `describe-environments` shows it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EnvDesc {
    environment_name: String,
    #[serde(default)]
    version_label: Option<String>,
    status: String,
    #[serde(default)]
    health: Option<String>,
    #[serde(rename = "CNAME", default)]
    cname: Option<String>,
}

impl EnvDesc {
    fn label(&self) -> &str {
        self.version_label.as_deref().unwrap_or("(none)")
    }
    fn health(&self) -> &str {
        self.health.as_deref().unwrap_or("Grey")
    }
    fn owns(&self, cname: &str) -> bool {
        let have = self.cname.as_deref().unwrap_or_default().to_ascii_lowercase();
        let want = cname.to_ascii_lowercase();
        have == want || have.strip_prefix(&want).is_some_and(|rest| rest.starts_with('.'))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Event {
    event_date: String,
    message: String,
    #[serde(default)]
    severity: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AppVersion {
    #[serde(default)]
    source_bundle: Option<S3Location>,
    #[serde(default)]
    status: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct S3Location {
    s3_bucket: String,
    s3_key: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InfoEntry {
    #[serde(default)]
    ec2_instance_id: Option<String>,
    #[serde(default)]
    sample_timestamp: Option<String>,
    message: String,
}

/// One instance as `describe-instances-health` shows it: its id and most recent deployment.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InstanceHealth {
    instance_id: String,
    #[serde(default)]
    deployment: Option<InstanceDeployment>,
    /// What the instance answered users over its last `Duration` seconds (enhanced health).
    #[serde(default)]
    application_metrics: Option<ApplicationMetrics>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ApplicationMetrics {
    #[serde(default)]
    duration: Option<u64>,
    #[serde(default)]
    request_count: Option<u64>,
    #[serde(default)]
    status_codes: Option<StatusCodes>,
    #[serde(default)]
    latency: Option<LatencyPercentiles>,
}

/// An instance's response-time percentiles over its window, in seconds.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LatencyPercentiles {
    #[serde(default)]
    p50: Option<f64>,
    #[serde(default)]
    p95: Option<f64>,
}

/// A version's answers in one report of enhanced health: its counts, and its latency
/// percentiles as the request-weighted mean of its instances' (EB gives percentiles per
/// instance, never the answers themselves, so this is an estimate, said as one).
#[derive(Debug, Clone, Copy, Default)]
struct Answered {
    stream: crate::judge::Stream,
    /// Requests behind the percentiles, and their weighted sums (ms).
    timed: u64,
    p50_sum: f64,
    p95_sum: f64,
}

impl Answered {
    fn p50_ms(&self) -> f64 {
        if self.timed == 0 { 0.0 } else { self.p50_sum / self.timed as f64 }
    }
    fn p95_ms(&self) -> f64 {
        if self.timed == 0 { 0.0 } else { self.p95_sum / self.timed as f64 }
    }
}

/// Whether one report shows the candidate slower than the stable version by at least
/// `floor_ms` on its median or p95, both sides having answered enough requests to have
/// percentiles worth reading. `None`: too few requests to say.
fn slower_in_report(candidate: &Answered, stable: &Answered, floor_ms: f64) -> Option<bool> {
    let enough = crate::judge::LATENCY_MIN as u64;
    if floor_ms <= 0.0 || candidate.timed < enough || stable.timed < enough {
        return None;
    }
    Some(candidate.p95_ms() - stable.p95_ms() >= floor_ms || candidate.p50_ms() - stable.p50_ms() >= floor_ms)
}

#[derive(Debug, Clone, Default, Deserialize)]
struct StatusCodes {
    #[serde(rename = "Status5xx", default)]
    status_5xx: Option<u64>,
}

/// Each version's answers to users in one report of enhanced health, summed over its
/// instances, and the seconds the report covers.
fn answered_by_version(list: &[InstanceHealth]) -> (std::collections::BTreeMap<String, Answered>, u64) {
    let mut out: std::collections::BTreeMap<String, Answered> = Default::default();
    let mut window = 0;
    for i in list {
        let Some(m) = &i.application_metrics else { continue };
        window = window.max(m.duration.unwrap_or(0));
        let a = out.entry(i.label().to_string()).or_default();
        let n = m.request_count.unwrap_or(0);
        a.stream.requests += n;
        a.stream.errors += m.status_codes.as_ref().and_then(|c| c.status_5xx).unwrap_or(0).min(n);
        if let Some(LatencyPercentiles { p50: Some(p50), p95: Some(p95) }) = m.latency
            && n > 0
            && p50.is_finite()
            && p95.is_finite()
        {
            a.timed += n;
            a.p50_sum += p50 * 1000.0 * n as f64;
            a.p95_sum += p95 * 1000.0 * n as f64;
        }
    }
    (out, window)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InstanceDeployment {
    #[serde(default)]
    version_label: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

impl InstanceHealth {
    fn label(&self) -> &str {
        self.deployment.as_ref().and_then(|d| d.version_label.as_deref()).unwrap_or("(none)")
    }
    fn deployment_status(&self) -> &str {
        self.deployment.as_ref().and_then(|d| d.status.as_deref()).unwrap_or("no deployment record")
    }
    /// EB's record says this instance runs `label`, deployed.
    fn runs(&self, label: &str) -> bool {
        self.deployment
            .as_ref()
            .is_some_and(|d| d.version_label.as_deref() == Some(label) && d.status.as_deref() == Some("Deployed"))
    }
}

/// `describe-instances-health` pages followed at most (a page holds tens of instances).
const MAX_INSTANCE_PAGES: usize = 100;

/// Log files are downloaded up to this size each.
const MAX_LOG_DOWNLOAD: u64 = 512 * 1024 * 1024;

impl<'a> ElasticBeanstalk<'a> {
    pub fn new(fx: &'a Effects, config: &'a crate::config::Config, state_dir: &'a Path) -> Result<Self> {
        let cfg = config.elasticbeanstalk()?;
        Ok(ElasticBeanstalk {
            fx,
            state_dir,
            config_file: &config.path,
            cfg,
            aws: Aws::new(fx, cfg),
            bucket: OnceLock::new(),
            basic_health: Default::default(),
        })
    }

    fn eb_env<'e>(&self, env: &'e Environment) -> Result<&'e EbEnvironment> {
        env.elasticbeanstalk.as_ref().ok_or_else(|| {
            usage!("{}: environments.{}.elasticbeanstalk: expected a table", self.config_file.display(), env.name)
        })
    }

    fn app(&self) -> &str {
        &self.cfg.application
    }

    /// The named EB environments, in the order asked; a missing one is "could not act".
    fn describe(&self, names: &[&str]) -> Result<Vec<EnvDesc>> {
        let mut args = vec!["--application-name", self.app(), "--no-include-deleted", "--environment-names"];
        args.extend(names);
        let out = self.aws.read("elasticbeanstalk", "describe-environments", &args)?;
        let all: Vec<EnvDesc> = serde_json::from_value(out["Environments"].clone())
            .context("reading describe-environments' Environments")?;
        names
            .iter()
            .map(|n| {
                all.iter().find(|e| e.environment_name == *n).cloned().ok_or_else(|| {
                    could_not_act!("Elastic Beanstalk application {} has no environment named {n}", self.app())
                })
            })
            .collect()
    }

    fn describe_one(&self, name: &str) -> Result<EnvDesc> {
        Ok(self.describe(&[name])?.remove(0))
    }

    /// The environment that serves users: the only one, or the one owning the blue/green CNAME.
    /// Returns it and, for blue/green, the standby.
    fn active(&self, e: &EbEnvironment) -> Result<(EnvDesc, Option<EnvDesc>)> {
        let (Some(standby), Some(cname)) = (&e.standby, &e.cname) else {
            return Ok((self.describe_one(&e.environment)?, None));
        };
        let mut both = self.describe(&[&e.environment, standby])?;
        let (b, a) = (both.remove(1), both.remove(0));
        match (a.owns(cname), b.owns(cname)) {
            (true, false) => Ok((a, Some(b))),
            (false, true) => Ok((b, Some(a))),
            _ => Err(could_not_act!(
                "neither or both of {} ({}) and {} ({}) own the CNAME {cname}; check environments.*.elasticbeanstalk.cname",
                a.environment_name,
                a.cname.as_deref().unwrap_or("no CNAME"),
                b.environment_name,
                b.cname.as_deref().unwrap_or("no CNAME")
            )),
        }
    }

    fn accepted(&self, d: &EnvDesc) -> bool {
        self.cfg.accepted_health.iter().any(|h| h.as_str() == d.health())
    }

    fn key(&self, version: &Version) -> String {
        let prefix = self.cfg.key_prefix.as_deref().unwrap_or(self.app()).trim_matches('/');
        // The commit fixes the bundle (`git archive` is deterministic) and is known in a dry run.
        format!("{prefix}/{}-{}.zip", version.label, crate::git::short(&version.commit))
    }

    /// The upload bucket: configured, or the one EB creates, `elasticbeanstalk-<region>-<account>`.
    fn bucket(&self) -> Result<String> {
        if let Some(b) = self.bucket.get() {
            return Ok(b.clone());
        }
        let b = match &self.cfg.bucket {
            Some(b) => b.to_string(),
            None => {
                let region = self.region()?;
                let who = self.aws.read("sts", "get-caller-identity", &[])?;
                let account = who["Account"].as_str().ok_or_else(|| {
                    could_not_act!("aws sts get-caller-identity gave no Account; set platform.elasticbeanstalk.bucket")
                })?;
                format!("elasticbeanstalk-{region}-{account}")
            }
        };
        Ok(self.bucket.get_or_init(|| b).clone())
    }

    fn region(&self) -> Result<String> {
        if let Some(r) = &self.cfg.region {
            return Ok(r.to_string());
        }
        for var in ["AWS_REGION", "AWS_DEFAULT_REGION"] {
            if let Some(r) = self.fx.env.get(var) {
                return Ok(r.to_string());
            }
        }
        let mut argv = self.cfg.aws.0.clone();
        argv.extend(["configure".into(), "get".into(), "region".into()]);
        if let Some(p) = &self.cfg.profile {
            argv.extend(["--profile".into(), p.to_string()]);
        }
        match self.fx.exec.read(&crate::exec::Cmd::new(argv)) {
            Ok(r) if !r.is_empty() => Ok(r),
            _ => Err(usage!(
                "{}: platform.elasticbeanstalk.region: no region configured here or for the aws CLI; \
                 set region (or bucket)",
                self.config_file.display()
            )),
        }
    }

    fn app_version(&self, label: &str) -> Result<Option<AppVersion>> {
        let out = self.aws.read(
            "elasticbeanstalk",
            "describe-application-versions",
            &["--application-name", self.app(), "--version-labels", label],
        )?;
        let mut all: Vec<AppVersion> = serde_json::from_value(out["ApplicationVersions"].clone())
            .context("reading describe-application-versions' ApplicationVersions")?;
        Ok(if all.is_empty() { None } else { Some(all.remove(0)) })
    }

    /// Polls the version until EB has processed it (status compared case-insensitively).
    fn wait_processed(&self, label: &str) -> Result<()> {
        let deadline = Instant::now() + self.cfg.deploy_timeout.0;
        let mut pause = self.cfg.poll.0.min(Duration::from_secs(2));
        let mut missing = 0;
        loop {
            match self.app_version(label)? {
                // Just created, not yet visible: EB's reads lag its writes for a moment.
                None if missing < 5 => missing += 1,
                None => return Err(could_not_act!("version {label} vanished from EB application {}", self.app())),
                Some(v) => match v.status.as_deref().unwrap_or("processed").to_ascii_lowercase().as_str() {
                    "processed" => return Ok(()),
                    "failed" => {
                        return Err(verdict!(
                            "Elastic Beanstalk could not process version {label} (status FAILED): \
                             the bundle is not a valid application; see the application's events"
                        ));
                    }
                    _ => {}
                },
            }
            if Instant::now() + pause > deadline {
                return Err(could_not_act!("version {label} is still being processed after {}", self.timeout()));
            }
            self.pause(&mut pause, || format!("version {label} is left being processed by EB"))?;
        }
    }

    /// Sleeps `pause` (waking for SIGINT/SIGTERM; `state` says what is left), then grows it by
    /// half, up to `poll_max`: every polling loop of the platform backs off the same way.
    fn pause(&self, pause: &mut Duration, state: impl Fn() -> String) -> Result<()> {
        self.fx.nap(*pause, state)?;
        *pause = (*pause * 3 / 2).min(self.cfg.poll_max.0);
        Ok(())
    }

    fn timeout(&self) -> String {
        humantime::format_duration(self.cfg.deploy_timeout.0).to_string()
    }

    /// New events of `name` since `since` (oldest first), printed as they arrive; ERROR and
    /// FATAL ones are added to `errors`.
    fn stream_events(
        &self,
        name: &str,
        since: &str,
        seen: &mut HashSet<(String, String)>,
        errors: &mut Vec<String>,
    ) -> Result<()> {
        let out = self.aws.read(
            "elasticbeanstalk",
            "describe-events",
            &["--application-name", self.app(), "--environment-name", name, "--start-time", since],
        )?;
        let mut events: Vec<Event> =
            serde_json::from_value(out["Events"].clone()).context("reading describe-events' Events")?;
        events.reverse();
        for ev in events {
            if !seen.insert((ev.event_date.clone(), ev.message.clone())) {
                continue;
            }
            let severity = ev.severity.as_deref().unwrap_or("INFO");
            self.fx.ui.status(format!("{name}: {severity} {}", ev.message));
            if matches!(severity, "ERROR" | "FATAL") {
                errors.push(ev.message);
            }
        }
        Ok(())
    }

    /// Each instance of `name` with its most recent deployment (`describe-instances-health`,
    /// every page); `None` when the environment has basic health, said once.
    fn instances(&self, name: &str) -> Result<Option<Vec<InstanceHealth>>> {
        if self.basic_health.lock().expect("basic health").contains(name) {
            return Ok(None);
        }
        let mut all = vec![];
        let mut token: Option<String> = None;
        for _ in 0..MAX_INSTANCE_PAGES {
            let mut args = vec![
                "--environment-name",
                name,
                "--attribute-names",
                "HealthStatus",
                "Deployment",
                "ApplicationMetrics",
            ];
            if let Some(t) = token.as_deref() {
                args.extend(["--next-token", t]);
            }
            let out = match self.aws.read("elasticbeanstalk", "describe-instances-health", &args) {
                Err(e)
                    if e.downcast_ref::<AwsError>()
                        .is_some_and(|a| a.code.as_deref() == Some("InvalidRequestException")) =>
                {
                    self.fx.ui.warn(format!(
                        "{name} has basic health: EB keeps no per-instance deployment record, so an instance a rolling deploy skipped is not seen here (enable enhanced health to have it checked)"
                    ));
                    self.basic_health.lock().expect("basic health").insert(name.to_string());
                    return Ok(None);
                }
                other => other?,
            };
            if out.is_null() {
                // A dry run whose reads are not run.
                return Ok(None);
            }
            let page: Vec<InstanceHealth> = serde_json::from_value(out["InstanceHealthList"].clone())
                .context("reading describe-instances-health's InstanceHealthList")?;
            all.extend(page);
            match out["NextToken"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(Some(all)),
            }
        }
        Err(could_not_act!("{name}: describe-instances-health gave more than {MAX_INSTANCE_PAGES} pages"))
    }

    /// `name` as EB describes it, when Ready: an update in progress is never interrupted.
    fn ready(&self, name: &str) -> Result<EnvDesc> {
        let d = self.describe_one(name)?;
        if d.status != "Ready" {
            return Err(could_not_act!(
                "{name} is {} ({}), not Ready: another update is in progress; not interrupting it",
                d.status,
                d.health()
            ));
        }
        Ok(d)
    }

    /// `update-environment` to `label`, then wait until it has provably taken it.
    fn update_and_wait(&self, name: &str, label: &str) -> Result<()> {
        let d = self.ready(name)?;
        if d.version_label.as_deref() == Some(label) && self.accepted(&d) {
            self.fx.ui.status(format!("{name}: already runs {label} and is {}; nothing to deploy", d.health()));
            return Ok(());
        }
        let old = d.label().to_string();
        self.fx.ui.status(format!("{name}: runs {old} ({}); deploying {label}", d.health()));
        let args = ["--application-name", self.app(), "--environment-name", name, "--version-label", label];
        let mut tries = 0;
        let updated = loop {
            match self.aws.change("elasticbeanstalk", "update-environment", &args) {
                // Right after create-application-version EB may not see the label yet.
                Err(e)
                    if tries < 3
                        && e.downcast_ref::<AwsError>()
                            .is_some_and(|a| a.message.contains("No Application Version named")) =>
                {
                    tries += 1;
                    self.fx.ui.warn(format!("{name}: EB does not see {label} yet; asking again"));
                    self.fx.nap(self.cfg.retry_backoff.0, || format!("{name} was not changed"))?;
                }
                other => {
                    break other.map_err(|e| {
                        interrupted_leaving(e, || {
                            format!(
                                "{name} may be updating from {old} to {label}: the signal came while EB was being asked"
                            )
                        })
                    })?;
                }
            }
        };
        let Some(updated) = updated else {
            self.fx.ui.plan(format!(
                "# would poll describe-environments and describe-events for {name} until Ready on {label} with health {}",
                self.cfg.accepted_health.iter().map(|h| h.as_str()).collect::<Vec<_>>().join("|")
            ));
            return Ok(());
        };
        let since = updated["DateUpdated"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| crate::clock::rfc3339(crate::clock::now_ms() - 1000));
        self.wait_deployed(name, label, &old, &since).map_err(|e| {
            interrupted_leaving(e, || {
                format!("{name} is left updating from {old} to {label}; EB carries on without us")
            })
        })
    }

    fn wait_deployed(&self, name: &str, label: &str, old: &str, since: &str) -> Result<()> {
        let deadline = Instant::now() + self.cfg.deploy_timeout.0;
        let mut pause = self.cfg.poll.0;
        let mut seen = HashSet::new();
        let mut errors = vec![];
        let mut ready_at: Option<Instant> = None;
        let mut red_since: Option<Instant> = None;
        let mut said = String::new();
        loop {
            // Status first, then the events: everything EB logged up to that status is judged.
            let d = self.describe_one(name)?;
            self.stream_events(name, since, &mut seen, &mut errors)?;
            let instances = self.instances(name)?;
            let on = instances.as_ref().map(|all| (all.iter().filter(|i| i.runs(label)).count(), all.len()));
            let now = format!(
                "{name}: {}, health {}{}",
                d.status,
                d.health(),
                on.map(|(n, of)| format!("; {label} on {n} of {of} instance(s)")).unwrap_or_default()
            );
            if now != said {
                self.fx.ui.status(&now);
                said = now;
            }
            if d.status == "Ready" {
                if d.version_label.as_deref() != Some(label) {
                    return Err(verdict!(
                        "{name} went back to Ready on {}, not {label}: Elastic Beanstalk did not deploy it{}",
                        d.label(),
                        first_error(&errors)
                    ));
                }
                if !errors.is_empty() {
                    return Err(verdict!(
                        "{name} runs {label} but Elastic Beanstalk reported {} error event(s) during the deploy{}",
                        errors.len(),
                        first_error(&errors)
                    ));
                }
                let since_ready = *ready_at.get_or_insert_with(Instant::now);
                let late = since_ready.elapsed() >= self.cfg.health_grace.0;
                let behind: Vec<&InstanceHealth> = instances.iter().flatten().filter(|i| !i.runs(label)).collect();
                if !behind.is_empty() {
                    if late || d.health() == "Red" {
                        let named: Vec<String> = behind
                            .iter()
                            .take(5)
                            .map(|i| format!("{} runs {} ({})", i.instance_id, i.label(), i.deployment_status()))
                            .collect();
                        return Err(verdict!(
                            "{name} is Ready on {label}, but {} of {} instance(s) do not run it: {}{}",
                            behind.len(),
                            instances.as_ref().map_or(0, Vec::len),
                            named.join(", "),
                            if behind.len() > named.len() { ", ..." } else { "" }
                        ));
                    }
                } else if self.accepted(&d) {
                    self.fx.ui.status(format!("{name}: Ready on {label}, health {}", d.health()));
                    return Ok(());
                } else if d.health() == "Red" || late {
                    return Err(verdict!(
                        "{name} runs {label} but its health is {} (accepted: {})",
                        d.health(),
                        self.cfg.accepted_health.iter().map(|h| h.as_str()).collect::<Vec<_>>().join(", ")
                    ));
                }
            } else if d.status.starts_with("Terminat") {
                return Err(could_not_act!("{name} is {} while deploying {label}", d.status));
            } else if d.health() == "Red" {
                // Users reach what EB has deployed so far; EB itself may wait on a failing batch
                // for its rolling timeout (30 minutes by default).
                let red = *red_since.get_or_insert_with(Instant::now);
                if red.elapsed() >= self.cfg.health_grace.0 {
                    return Err(self.abort_red_update(name, label, old, on, &errors));
                }
            } else {
                red_since = None;
            }
            if Instant::now() + pause > deadline {
                return Err(crate::error::Error::could_not_act(format!(
                    "{name} is still {} ({}) after {}: gave up waiting for {label} (it was {old})",
                    d.status,
                    d.health(),
                    self.timeout()
                ))
                .with_hint(
                    "the update was not aborted and may still finish; look at the environment before deploying again",
                )
                .into());
            }
            self.pause(&mut pause, String::new)?;
        }
    }

    /// Health Red for `health_grace` during an update: `abort-environment-update` (EB puts
    /// the old version back on the instances that took the new one), a wait until Ready again,
    /// and the failing verdict.
    fn abort_red_update(
        &self,
        name: &str,
        label: &str,
        old: &str,
        on: Option<(usize, usize)>,
        errors: &[String],
    ) -> anyhow::Error {
        let reached = on.map(|(n, of)| format!(" ({label} had reached {n} of {of} instance(s))")).unwrap_or_default();
        let grace = humantime::format_duration(self.cfg.health_grace.0);
        if let Err(e) = self.abort(name) {
            return crate::error::Error::could_not_act(format!(
                "{name}'s health stayed Red for {grace} while EB deployed {label}{reached}, and aborting the update failed: {e:#}"
            ))
            .with_hint("abort it with `aws elasticbeanstalk abort-environment-update`, then roll back")
            .into();
        }
        self.fx.ui.status(format!("{name}: health Red for {grace} during the update{reached}; update aborted"));
        let back = match self.ready_again(name, "rolling back the aborted update") {
            Ok(Some(d)) => format!("EB put {} back (health {})", d.label(), d.health()),
            Ok(None) => "EB was still rolling back when safedeploy stopped waiting".to_string(),
            Err(e) => return e,
        };
        verdict!(
            "{name}'s health stayed Red for {grace} while Elastic Beanstalk deployed {label}{reached}: the update was aborted and {back} (it was {old}){}",
            first_error(errors)
        )
    }

    /// A canary through EB's traffic splitting: `update-environment` with the TrafficSplitting
    /// deployment policy (NewVersionPercent = the share, EvaluationTime = the bake in whole
    /// minutes). While EB evaluates, each round runs the checks against the environment's
    /// address (users' traffic: both versions answer it) and reads EB's health and events; a
    /// failed round, or health Red, aborts the update (`abort-environment-update`), which sends
    /// every request back to the old instances. EB ending the evaluation decides success.
    fn deploy_split(
        &self,
        env: &Environment,
        name: &str,
        label: &str,
        c: &super::Canary<'_>,
    ) -> Result<super::Deployed> {
        self.can_canary(env, c.bake)?;
        let minutes = split_minutes(c.bake);
        let d = self.ready(name)?;
        let old = d.label().to_string();
        let (percent, minutes) = (c.percent.to_string(), minutes.to_string());
        let settings = [
            "Namespace=aws:elasticbeanstalk:command,OptionName=DeploymentPolicy,Value=TrafficSplitting".to_string(),
            format!("Namespace=aws:elasticbeanstalk:trafficsplitting,OptionName=NewVersionPercent,Value={percent}"),
            format!("Namespace=aws:elasticbeanstalk:trafficsplitting,OptionName=EvaluationTime,Value={minutes}"),
        ];
        let mut args = vec!["--application-name", self.app(), "--environment-name", name, "--version-label", label];
        args.push("--option-settings");
        args.extend(settings.iter().map(String::as_str));
        self.fx.ui.status(format!(
            "{name}: runs {old}; traffic splitting: {label} gets {percent}% of the requests for {minutes} min"
        ));
        let Some(updated) = self.aws.change("elasticbeanstalk", "update-environment", &args)? else {
            self.fx.ui.plan(format!(
                "# would run the smoke chains and read {name}'s health every round while EB evaluates {label}; a failed round: aws elasticbeanstalk abort-environment-update --environment-name {name}"
            ));
            return Ok(super::Deployed::Live(Switched::at(crate::clock::now_ms())));
        };
        let took = crate::clock::now_ms();
        let since =
            updated["DateUpdated"].as_str().map(str::to_string).unwrap_or_else(|| crate::clock::rfc3339(took - 1000));
        let deadline = Instant::now() + self.cfg.deploy_timeout.0 + c.bake;
        let (mut seen, mut errors) = (HashSet::new(), vec![]);
        let mut round = 0u32;
        // Each version's answers to users, from enhanced health's application metrics: one
        // report per window it covers, so no request is counted twice.
        let (mut candidate, mut stable) = (crate::judge::Stream::default(), crate::judge::Stream::default());
        let mut next_sample = Instant::now();
        let mut slow_reports = 0u32;
        let failed: String = loop {
            // Interrupted (a Jenkins abort): the split is aborted, so the old version serves all.
            if let Err(e) = self.fx.nap(c.interval, || {
                format!("the traffic split of {label} was aborted: {old}'s instances take every request again")
            }) {
                self.abort(name)?;
                return Err(e);
            }
            round += 1;
            let d = self.describe_one(name)?;
            self.stream_events(name, &since, &mut seen, &mut errors)?;
            if d.status == "Ready" {
                if d.version_label.as_deref() == Some(label) && self.accepted(&d) {
                    self.fx.ui.status(format!(
                        "{name}: EB ended the evaluation: {label} takes every request (health {})",
                        d.health()
                    ));
                    return Ok(super::Deployed::Live(Switched { at: crate::clock::now_ms(), canary_from: Some(took) }));
                }
                // EB's own health evaluation failed it and sent the traffic back.
                let why = format!(
                    "Elastic Beanstalk ended the traffic split on {} (health {}){}",
                    d.label(),
                    d.health(),
                    first_error(&errors)
                );
                let at = crate::clock::now_ms();
                let aborted = super::CanaryAborted {
                    percent: c.percent,
                    took_traffic_at: took,
                    failed_at: at,
                    stopped_at: at,
                    why,
                };
                return Ok(super::Deployed::CanaryAborted(aborted));
            }
            if d.health() == "Red" {
                break format!("{name}'s health is Red during the traffic split");
            }
            match (c.round)(&env.url.base()) {
                Ok(()) => self.fx.ui.status(format!(
                    "{name}: canary round {round} passed (EB: {}, health {})",
                    d.status,
                    d.health()
                )),
                Err(e) if crate::error::kind_of(&e) == crate::error::Kind::Verdict => break format!("{e:#}"),
                Err(e) => {
                    self.abort(name)?;
                    return Err(e);
                }
            }
            if Instant::now() >= next_sample
                && let Some(list) = self.instances(name)?
            {
                let (by_version, window) = answered_by_version(&list);
                next_sample = Instant::now() + Duration::from_secs(window.max(1));
                let none = Answered::default();
                let (c_now, s_now) = (by_version.get(label).unwrap_or(&none), by_version.get(&old).unwrap_or(&none));
                for (into, s) in [(&mut candidate, c_now), (&mut stable, s_now)] {
                    into.requests += s.stream.requests;
                    into.errors += s.stream.errors;
                }
                // Slower by the margin in two reports running: EB gives percentiles, not the
                // answers, so one report's blip is never a verdict.
                let margin = c.latency_margin.as_millis() as f64;
                match slower_in_report(c_now, s_now, margin) {
                    Some(true) => slow_reports += 1,
                    Some(false) => slow_reports = 0,
                    None => {}
                }
                if slow_reports >= 2 {
                    break format!(
                        "{label} answers users more slowly than {old} by over {} ms, by EB's application metrics in two reports running: p95 {:.0} ms vs {:.0} ms, p50 {:.0} ms vs {:.0} ms (each the request-weighted mean of its instances' percentiles over the last {window}s; {} and {} requests)",
                        margin,
                        c_now.p95_ms(),
                        s_now.p95_ms(),
                        c_now.p50_ms(),
                        s_now.p50_ms(),
                        c_now.timed,
                        s_now.timed
                    );
                }
                let e = crate::judge::errors(candidate, stable, c.error_margin / 100.0);
                if e.failed {
                    break format!(
                        "{label} answers users with server errors more often than {old} by over {} point(s), by EB's application metrics: {}",
                        c.error_margin,
                        e.describe()
                    );
                }
            }
            if Instant::now() > deadline {
                return Err(could_not_act!(
                    "{name} is still {} after {}: EB did not end the traffic split of {label}; it was not aborted",
                    d.status,
                    humantime::format_duration(self.cfg.deploy_timeout.0 + c.bake)
                ));
            }
        };
        let failed_at = crate::clock::now_ms();
        self.abort(name)?;
        let stopped_at = crate::clock::now_ms();
        self.fx.ui.status(format!(
            "{name}: canary aborted {} after the failing verdict: EB sends every request back to {old}'s instances",
            crate::clock::human(stopped_at - failed_at)
        ));
        // Until EB is Ready on the old version again, nothing more can be deployed there.
        self.ready_again(name, "ending the aborted traffic split")?;
        Ok(super::Deployed::CanaryAborted(super::CanaryAborted {
            percent: c.percent,
            took_traffic_at: took,
            failed_at,
            stopped_at,
            why: failed,
        }))
    }

    /// After an abort: polls `name` until it is Ready again (said), for up to `deploy_timeout`;
    /// `None` when it is not by then. `doing` says what EB is left doing if a signal comes.
    fn ready_again(&self, name: &str, doing: &str) -> Result<Option<EnvDesc>> {
        let mut pause = self.cfg.poll.0;
        let until = Instant::now() + self.cfg.deploy_timeout.0;
        while Instant::now() < until {
            let d = self.describe_one(name)?;
            if d.status == "Ready" {
                self.fx.ui.status(format!("{name}: Ready on {} again (health {})", d.label(), d.health()));
                return Ok(Some(d));
            }
            self.pause(&mut pause, || format!("{name} is left {doing}"))?;
        }
        Ok(None)
    }

    /// `abort-environment-update`: during traffic splitting, EB sends every request back to the
    /// old instances and terminates the new ones; during a deploy, it puts the old version back
    /// on the instances that took the new one.
    fn abort(&self, name: &str) -> Result<()> {
        self.aws.change("elasticbeanstalk", "abort-environment-update", &["--environment-name", name])?;
        Ok(())
    }

    /// Blue/green: put `label` on the standby (unless it already runs it healthy), then swap.
    /// The standby's own address: `preview_url` with `{cname}` its CNAME (default
    /// `http://{cname}`), checked to be a URL.
    fn standby_url(&self, e: &EbEnvironment, standby: &str) -> Result<String> {
        let desc = self.describe(&[standby])?;
        let cname = desc.first().and_then(|d| d.cname.clone()).unwrap_or_default();
        if cname.is_empty() && !self.fx.dry_run {
            return Err(could_not_act!("{standby} has no CNAME to check it at"));
        }
        let url = e.preview_url.as_deref().unwrap_or("http://{cname}").replace("{cname}", &cname);
        reqwest::Url::parse(&url).map_err(|err| crate::usage!("preview_url: {url:?} is not a URL: {err}"))?;
        Ok(url.trim_end_matches('/').to_string())
    }

    /// A deploy by the kind of environment: a traffic split (canary), a blue/green swap, or in
    /// place. Verdict errors are classed by [`ElasticBeanstalk::deploy`]'s caller.
    fn deploy_classed(
        &self,
        env: &Environment,
        label: &str,
        how: &super::DeployOptions<'_>,
    ) -> Result<super::Deployed> {
        let pre = how.pre;
        let e = self.eb_env(env)?;
        if let Some(c) = how.canary.filter(|_| e.standby.is_none()) {
            return self.deploy_split(env, &e.environment, label, c);
        }
        if e.standby.is_some() {
            if let Some(stopped) = self.deploy_swap(env, e, label, pre, how.watch)? {
                return Ok(stopped);
            }
        } else {
            if pre.is_some() {
                self.fx.ui.warn(format!(
                    "{}: an in-place deploy puts {label} in front of users as it rolls out, so it cannot be checked before traffic; configure a blue/green standby (environments.{}.elasticbeanstalk.standby) or EB traffic splitting",
                    env.name, env.name
                ));
            }
            self.update_and_wait(&e.environment, label)?
        }
        // Ready with an accepted health on the label (in place), or the CNAME seen on the
        // environment that runs it (blue/green): users reach it from here on.
        Ok(super::Deployed::Live(Switched::at(crate::clock::now_ms())))
    }

    /// A blue/green deploy: the standby gets the version, is checked at its own CNAME, then the
    /// CNAMEs swap. `Some` when it stopped before traffic.
    fn deploy_swap(
        &self,
        env: &Environment,
        e: &EbEnvironment,
        label: &str,
        pre: Option<&super::PreTraffic<'_>>,
        watch: Option<&super::Watch<'_>>,
    ) -> Result<Option<super::Deployed>> {
        let cname = e.cname.as_deref().unwrap_or_default();
        let (active, standby) = self.active(e)?;
        let standby = standby.ok_or_else(|| could_not_act!("{}: no standby environment", env.name))?;
        if active.version_label.as_deref() == Some(label) && active.status == "Ready" && self.accepted(&active) {
            self.fx.ui.status(format!("{}: {} already serves {label}", env.name, active.environment_name));
            return Ok(None);
        }
        let (from, to) = (&active.environment_name, &standby.environment_name);
        if standby.version_label.as_deref() == Some(label) && standby.status == "Ready" && self.accepted(&standby) {
            self.fx.ui.status(format!(
                "{}: {to} already runs {label} and is {}; swapping only",
                env.name,
                standby.health()
            ));
        } else {
            self.fx.ui.status(format!(
                "{}: {from} serves {}; deploying {label} to the standby {to}",
                env.name,
                active.label()
            ));
            let started = crate::clock::now_ms();
            self.update_and_wait(to, label)?;
            // The standby shares the active environment's database: what its deploy changed
            // there (container_commands, predeploy hooks), the active one meets now.
            if let Some(w) = watch {
                w(started)?;
            }
        }
        if let Some(check) = pre {
            // The standby runs the candidate at its own CNAME; users are on the active one.
            let url = self.standby_url(e, to)?;
            self.fx.ui.status(format!("{}: checking {label} on {to} ({url}) before the swap", env.name));
            match check(&url) {
                Err(e) if crate::error::kind_of(&e) == crate::error::Kind::Verdict => {
                    return Ok(Some(super::Deployed::StoppedBeforeTraffic(e)));
                }
                other => other?,
            }
        }
        self.fx.ui.status(format!("{}: swapping CNAMEs: {cname} moves from {from} to {to}", env.name));
        let swap = ["--source-environment-name", to.as_str(), "--destination-environment-name", from.as_str()];
        if self.aws.change("elasticbeanstalk", "swap-environment-cnames", &swap)?.is_none() {
            self.fx.ui.plan(format!("# would poll describe-environments until {to} owns {cname} and both are Ready"));
            return Ok(None);
        }
        let deadline = Instant::now() + self.cfg.deploy_timeout.0;
        let mut pause = self.cfg.poll.0;
        loop {
            let both = self.describe(&[to, from])?;
            if both[0].owns(cname) && both.iter().all(|d| d.status == "Ready") {
                self.fx.ui.status(format!("{}: {to} owns {cname}; {label} serves users", env.name));
                return Ok(None);
            }
            if Instant::now() + pause > deadline {
                return Err(could_not_act!(
                    "the CNAME swap of {from} and {to} did not complete within {}: {cname} is on {}",
                    self.timeout(),
                    if both[0].owns(cname) { to } else { from }
                ));
            }
            self.pause(&mut pause, || format!("the CNAME swap of {from} and {to} is left to EB"))?;
        }
    }

    /// What `retrieve-environment-info` holds now.
    fn retrieve(&self, name: &str) -> Result<Vec<InfoEntry>> {
        let kind = self.cfg.logs.as_str();
        let args = ["--environment-name", name, "--info-type", kind];
        let out = self.aws.read("elasticbeanstalk", "retrieve-environment-info", &args)?;
        serde_json::from_value(out["EnvironmentInfo"].clone()).context("reading retrieve-environment-info")
    }

    /// Polls until every instance has a sample that was not there before (`old`), up to
    /// `logs_timeout`; then goes on with what came, saying which instances did not answer.
    fn new_samples(
        &self,
        name: &str,
        instances: &[String],
        old: &HashSet<(Option<String>, Option<String>)>,
    ) -> Result<Vec<InfoEntry>> {
        let kind = self.cfg.logs.as_str();
        let deadline = Instant::now() + self.cfg.logs_timeout.0;
        let mut pause = self.cfg.poll.0.min(Duration::from_secs(3));
        let has = |fresh: &[InfoEntry], i: &str| fresh.iter().any(|e| e.ec2_instance_id.as_deref() == Some(i));
        loop {
            let mut fresh: Vec<InfoEntry> = self
                .retrieve(name)?
                .into_iter()
                .filter(|e| !old.contains(&(e.ec2_instance_id.clone(), e.sample_timestamp.clone())))
                .collect();
            // The newest sample of each instance.
            fresh.sort_by(|a, b| b.sample_timestamp.cmp(&a.sample_timestamp));
            let mut by_instance = HashSet::new();
            fresh.retain(|e| by_instance.insert(e.ec2_instance_id.clone()));
            if !fresh.is_empty() && instances.iter().all(|i| has(&fresh, i)) {
                return Ok(fresh);
            }
            if Instant::now() + pause > deadline {
                if fresh.is_empty() {
                    return Err(could_not_act!(
                        "{name}: no instance delivered its {kind} logs within {}",
                        humantime::format_duration(self.cfg.logs_timeout.0)
                    ));
                }
                let missing: Vec<&str> = instances.iter().filter(|i| !has(&fresh, i)).map(String::as_str).collect();
                self.fx.ui.warn(format!(
                    "{name}: no {kind} logs from {} within the deadline; going on without them",
                    missing.join(", ")
                ));
                return Ok(fresh);
            }
            self.pause(&mut pause, || format!("{name}'s logs were requested but not downloaded"))?;
        }
    }

    /// Downloads every sample under `<state>/elasticbeanstalk/logs/<env>/<time>/<instance>/`.
    fn fetch_all(&self, env: &Environment, name: &str, fresh: &[InfoEntry]) -> Result<Vec<PathBuf>> {
        let kind = self.cfg.logs.as_str();
        let stamp = crate::clock::rfc3339(crate::clock::now_ms()).replace([':', '.'], "");
        let root =
            crate::paths::child(&self.state_dir.join("elasticbeanstalk").join("logs"), &env.name, "environment")?
                .join(stamp);
        let mut files = vec![];
        for entry in fresh {
            let instance = entry.ec2_instance_id.clone().unwrap_or_else(|| "unknown-instance".into());
            // The id comes from EB's answer: it names a directory only if it is a plain name.
            let dir = crate::paths::child(&root, &instance, "the instance id EB returned")?;
            self.fetch(entry, &dir).with_context(|| format!("fetching the {kind} logs of {instance}"))?;
            files_under(&dir, &mut files)?;
        }
        self.fx.ui.status(format!(
            "{name}: {} log file(s) from {} instance(s) in {}",
            files.len(),
            fresh.len(),
            root.display()
        ));
        Ok(files)
    }

    /// Downloads one entry of `retrieve-environment-info` into `dir`, unpacking a bundle.
    fn fetch(&self, entry: &InfoEntry, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let bundle = self.cfg.logs == settings::LogKind::Bundle;
        let file = dir.join(if bundle { "bundle.zip" } else { "tail.log" });
        let req = Request::get(entry.message.clone()).timeout(Duration::from_secs(300));
        self.fx.http.download(&req, &file, MAX_LOG_DOWNLOAD)?;
        if bundle {
            let f = std::fs::File::open(&file)?;
            let mut zip = zip::ZipArchive::new(f)
                .map_err(|e| could_not_act!("the log bundle of {} is not a zip: {e}", dir.display()))?;
            zip.extract(dir).map_err(|e| could_not_act!("unpacking the log bundle in {}: {e}", dir.display()))?;
            std::fs::remove_file(&file)?;
        }
        Ok(())
    }
}

/// An interruption (SIGTERM from a Jenkins abort) while EB works on: says what is left, whether
/// it came during a pause or while an aws command ran.
/// EB's traffic splitting evaluates for this many whole minutes (EvaluationTime).
const SPLIT_MINUTES: (u64, u64) = (3, 600);

/// A bake as EB's EvaluationTime: whole minutes, rounded up.
fn split_minutes(bake: Duration) -> u64 {
    bake.as_secs().div_ceil(60)
}

fn interrupted_leaving(e: anyhow::Error, state: impl FnOnce() -> String) -> anyhow::Error {
    if crate::error::kind_of(&e) == crate::error::Kind::Interrupted {
        let message = format!("interrupted; {}", state());
        return crate::error::Error::interrupted(message).caused_by(e);
    }
    e
}

fn first_error(errors: &[String]) -> String {
    errors.first().map(|e| format!(" (first error event: {e})")).unwrap_or_default()
}

/// Every regular file under `dir`, sorted.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files_under(&p, out)?;
        } else if p.is_file() {
            out.push(p);
        }
    }
    Ok(())
}

impl Platform for ElasticBeanstalk<'_> {
    fn register(&self, version: &Version, bundle: &Path) -> Result<()> {
        let label = &version.label;
        let key = self.key(version);
        if let Some(existing) = self.app_version(label)? {
            // An adopted version (found live, never built here) is whatever EB holds.
            let same = version.commit.is_empty() || existing.source_bundle.as_ref().is_some_and(|s| s.s3_key == key);
            if !same {
                let at = existing
                    .source_bundle
                    .map(|s| format!("s3://{}/{}", s.s3_bucket, s.s3_key))
                    .unwrap_or_else(|| "no S3 bundle".into());
                return Err(crate::error::Error::usage(format!(
                    "EB application {} already has a version {label} from {at}, not this bundle ({key}); labels name one bundle",
                    self.app()
                ))
                .with_hint("choose a new label, e.g. include the build number")
                .into());
            }
            self.fx.ui.status(format!("{label}: already registered in EB application {}; reusing it", self.app()));
            return if self.fx.dry_run { Ok(()) } else { self.wait_processed(label) };
        }
        if version.commit.is_empty() {
            return Err(could_not_act!(
                "{label} was found live, never built by safedeploy, and EB application {} no longer holds it",
                self.app()
            ));
        }
        let bucket = self.bucket()?;
        let url = format!("s3://{bucket}/{key}");
        self.fx.ui.status(format!("{label}: uploading the bundle to {url}"));
        self.aws.change("s3", "cp", &[&bundle.to_string_lossy(), &url, "--only-show-errors"])?;
        let source = format!("S3Bucket={bucket},S3Key={key}");
        let description = format!("commit {}", version.commit);
        let created = self.aws.change(
            "elasticbeanstalk",
            "create-application-version",
            &[
                "--application-name",
                self.app(),
                "--version-label",
                label,
                "--source-bundle",
                &source,
                "--description",
                &description,
                "--process",
            ],
        )?;
        if created.is_none() {
            return Ok(());
        }
        self.wait_processed(label)?;
        self.fx.ui.status(format!("{label}: processed by Elastic Beanstalk"));
        Ok(())
    }

    fn live(&self, env: &Environment) -> Result<Option<Live>> {
        let (active, _) = self.active(self.eb_env(env)?)?;
        Ok(active
            .version_label
            .clone()
            .map(|label| Live { label, healthy: active.status == "Ready" && self.accepted(&active) }))
    }

    fn can_canary(&self, env: &Environment, bake: Duration) -> Result<()> {
        if self.eb_env(env)?.standby.is_some() {
            return Err(crate::usage!(
                "--canary: {} is blue/green: a CNAME swap moves every user at once (the standby is checked before it instead); EB's traffic splitting needs an in-place environment",
                env.name
            ));
        }
        let minutes = split_minutes(bake);
        if !(SPLIT_MINUTES.0..=SPLIT_MINUTES.1).contains(&minutes) {
            return Err(crate::usage!(
                "--bake: EB's traffic splitting evaluates for whole minutes, {} to {}; {} is {minutes} min",
                SPLIT_MINUTES.0,
                SPLIT_MINUTES.1,
                humantime::format_duration(bake)
            ));
        }
        Ok(())
    }

    fn deploy(&self, env: &Environment, label: &str, how: &super::DeployOptions<'_>) -> Result<super::Deployed> {
        super::Deployed::classed(self.deploy_classed(env, label, how))
    }

    fn stop(&self, env: &Environment) -> Result<()> {
        Err(crate::error::Error::could_not_act(format!(
            "{}: safedeploy does not stop Elastic Beanstalk environments",
            env.name
        ))
        .with_hint("stop serving with EB itself: `aws elasticbeanstalk terminate-environment`, or scale the environment to zero instances")
        .into())
    }

    fn logs(&self, env: &Environment) -> Result<Vec<PathBuf>> {
        let (active, _) = self.active(self.eb_env(env)?)?;
        let name = active.environment_name.as_str();
        let kind = self.cfg.logs.as_str();
        let resources =
            self.aws.read("elasticbeanstalk", "describe-environment-resources", &["--environment-name", name])?;
        let instances: Vec<String> = resources["EnvironmentResources"]["Instances"]
            .as_array()
            .map(|a| a.iter().filter_map(|i| i["Id"].as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        // Entries that exist before the request are old samples, whatever the clocks say.
        let old: HashSet<(Option<String>, Option<String>)> =
            self.retrieve(name)?.into_iter().map(|e| (e.ec2_instance_id, e.sample_timestamp)).collect();
        let args = ["--environment-name", name, "--info-type", kind];
        if self.aws.change("elasticbeanstalk", "request-environment-info", &args)?.is_none() {
            self.fx.ui.plan(format!(
                "# would poll retrieve-environment-info for {name} and download each instance's {kind} logs"
            ));
            return Ok(vec![]);
        }
        self.fx.ui.status(format!("{name}: asked {} instance(s) for their {kind} logs", instances.len()));
        let fresh = self.new_samples(name, &instances, &old)?;
        self.fetch_all(env, name, &fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(label: &str, requests: u64, p50: f64, p95: f64) -> InstanceHealth {
        serde_json::from_value(serde_json::json!({
            "InstanceId": format!("i-{label}-{requests}"),
            "Deployment": {"VersionLabel": label},
            "ApplicationMetrics": {"Duration": 10, "RequestCount": requests, "StatusCodes": {"Status5xx": 1},
                "Latency": {"P50": p50, "P95": p95}}
        }))
        .expect("an instance")
    }

    #[test]
    fn a_versions_percentiles_are_weighted_by_its_instances_requests() {
        let list = [instance("v2", 30, 0.1, 0.3), instance("v2", 10, 0.5, 0.7), instance("v1", 100, 0.05, 0.1)];
        let (by, window) = answered_by_version(&list);
        let v2 = by["v2"];
        assert_eq!((v2.stream.requests, v2.stream.errors, v2.timed, window), (40, 2, 40, 10));
        assert!((v2.p50_ms() - 200.0).abs() < 1e-9 && (v2.p95_ms() - 400.0).abs() < 1e-9, "{v2:?}");
        // Slower by the margin on the p95 (or the median); too few requests is no answer; a
        // margin of 0 judges nothing.
        assert_eq!(slower_in_report(&v2, &by["v1"], 100.0), Some(true));
        assert_eq!(slower_in_report(&v2, &by["v1"], 301.0), Some(false));
        assert_eq!(slower_in_report(&by["v1"], &v2, 100.0), Some(false));
        let (few, _) = answered_by_version(&[instance("v2", 29, 0.9, 0.9)]);
        assert_eq!(slower_in_report(&few["v2"], &by["v1"], 100.0), None);
        assert_eq!(slower_in_report(&v2, &by["v1"], 0.0), None);
    }
}
