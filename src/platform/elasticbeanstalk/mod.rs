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
mod logs;
mod model;
pub mod settings;
mod traffic;
mod update;
mod versions;

use model::*;

use super::{Live, Platform, Switched};
use crate::config::Environment;
use crate::effects::Effects;
use crate::http::Request;
use crate::ledger::Version;
use crate::{could_not_act, usage, verdict};
use anyhow::{Context, Result};
use aws::{Aws, AwsError};
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
