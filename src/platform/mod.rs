//! Where environments run. One trait; the operations (deploy, promote, rollback, smoke,
//! collect-logs) never know which platform they drive. `local` is the embedded default;
//! `elasticbeanstalk` drives AWS Elastic Beanstalk through the aws CLI.

pub mod elasticbeanstalk;
pub mod local;

use crate::config::{Config, Environment, PlatformKind};
use crate::effects::Effects;
use crate::ledger::Version;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// What an environment runs now, as the platform sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Live {
    pub label: String,
    /// It serves: its processes run and its health path answers (locally), or the environment
    /// is Ready with an accepted health (Elastic Beanstalk). A process that is present but
    /// hung is not healthy. In a dry run (no request is sent) the processes alone decide.
    pub healthy: bool,
}

/// When a deploy put the new version in front of users: from `at` on, it serves through the
/// environment's address. What follows (the old version stopped after its grace) is not
/// downtime, and a restore is timed to here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switched {
    pub at: crate::clock::Millis,
}

/// How smoke-check tells which version answers when the app has no version route of its own
/// (`smoke.version_path` unset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSignal {
    /// A response header the platform's proxy adds to every answer it forwards: the label of
    /// the version it sent the request to.
    Header(&'static str),
    /// The platform's own report ([`Platform::live`]: the label, healthy), together with
    /// answers of the environment's address that are not server errors.
    Platform,
}

/// A check of a candidate at its own base URL, before it takes any user traffic.
pub type PreTraffic<'p> = dyn Fn(&str) -> Result<()> + 'p;

/// How a deploy goes: the check before traffic, and whether the replaced version is kept warm.
#[derive(Default)]
pub struct DeployOptions<'p> {
    pub pre: Option<&'p PreTraffic<'p>>,
    pub keep_previous: bool,
}

pub trait Platform {
    /// Makes a version deployable; built once, so later deploys and rollbacks of it start at once.
    /// Idempotent: a version the platform already holds is not rebuilt.
    fn register(&self, version: &Version, bundle: &Path) -> Result<()>;

    /// What `env` runs now.
    fn live(&self, env: &Environment) -> Result<Option<Live>>;

    /// Replaces what `env` runs with `label` and waits until it is healthy; returns when users
    /// were switched to it. A version that does not become healthy is a verdict error; `env` is
    /// then left running nothing of it.
    ///
    /// `pre`, where the platform can, runs against the healthy candidate at its own address
    /// before it takes any user traffic; its error stops the deploy there: the candidate is
    /// stopped and the previous version keeps serving. A platform that cannot do this says so
    /// (a warning) and deploys without it.
    ///
    /// `keep_previous`: the version switched away from may be kept running without traffic
    /// (the platform's warm previous), so switching back is instant. A rollback passes false:
    /// the version it replaces is the bad one.
    fn deploy(&self, env: &Environment, label: &str, how: &DeployOptions<'_>) -> Result<Switched>;

    /// The version kept running without traffic for an instant switch back, and until when.
    fn warm_previous(&self, _env: &Environment) -> Result<Option<(String, crate::clock::Millis)>> {
        Ok(None)
    }

    /// Finishes or undoes what a run killed part-way left (processes started or to be stopped);
    /// called with the environment's lock held, before `live` is trusted. Nothing by default.
    fn tidy(&self, _env: &Environment) -> Result<()> {
        Ok(())
    }

    /// Stops everything `env` runs (`safedeploy stop`). Not every platform can: the default
    /// says so (exit 3).
    fn stop(&self, env: &Environment) -> Result<()> {
        Err(crate::error::Error::could_not_act(format!("{}: this platform cannot stop an environment", env.name))
            .with_hint("stop it with the platform's own tools")
            .into())
    }

    /// How a request through the environment's address names the version that answered it.
    fn version_signal(&self, _env: &Environment) -> VersionSignal {
        VersionSignal::Platform
    }

    /// The environment's log files, oldest first.
    fn logs(&self, env: &Environment) -> Result<Vec<PathBuf>>;
}

/// The platform the config names, driven through `fx`.
pub fn for_config<'a>(fx: &'a Effects, config: &'a Config, state_dir: &'a Path) -> Result<Box<dyn Platform + 'a>> {
    match config.platform.kind {
        PlatformKind::Local => Ok(Box::new(local::Local::new(fx, config, state_dir))),
        PlatformKind::ElasticBeanstalk => Ok(Box::new(elasticbeanstalk::ElasticBeanstalk::new(fx, config, state_dir)?)),
    }
}
