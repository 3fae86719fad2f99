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
    /// When a canary phase came first: when its share of the users first met the version.
    pub canary_from: Option<crate::clock::Millis>,
}

impl Switched {
    pub fn at(at: crate::clock::Millis) -> Self {
        Switched { at, canary_from: None }
    }
    /// When users first met the version: the canary's start, else the switch.
    pub fn took_traffic(&self) -> crate::clock::Millis {
        self.canary_from.unwrap_or(self.at)
    }
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

/// How a deploy goes: the check before traffic, a canary phase, and whether the replaced
/// version is kept warm.
#[derive(Default)]
pub struct DeployOptions<'p> {
    pub pre: Option<&'p PreTraffic<'p>>,
    pub keep_previous: bool,
    /// Send a share of the users to the candidate first, and check it each round.
    pub canary: Option<&'p Canary<'p>>,
    /// Asked once the candidate runs on the environment's own data and before the switch, with
    /// when that start began: whether the version users are served still serves them.
    pub watch: Option<&'p Watch<'p>>,
}

/// See [`DeployOptions::watch`].
pub type Watch<'p> = dyn Fn(crate::clock::Millis) -> Result<()> + 'p;

/// A canary phase: `percent` of the environment's requests go to the candidate for `bake`,
/// with `round` run every `interval` (the smoke chains against the candidate's own address
/// where the platform has one, else the environment's; Datadog monitors). The platform adds
/// what it sees itself (locally, the candidate's own 5xx answers to users; on EB, the
/// environment's health). A failed round takes the candidate's share to 0 at once.
pub struct Canary<'p> {
    pub percent: u8,
    pub bake: std::time::Duration,
    pub interval: std::time::Duration,
    /// The candidate's 5xx share of its answers to users may exceed the stable version's by
    /// this many percentage points before a round fails.
    pub error_margin: f64,
    /// What a bake ending on too few user requests does (where the platform counts them).
    pub not_enough: crate::platform::local::settings::NotEnough,
    /// The longest the bake is extended to.
    pub max_bake: std::time::Duration,
    /// How much slower the candidate may be, where the platform measures it (0: not judged).
    pub latency_margin: std::time::Duration,
    pub round: &'p PreTraffic<'p>,
}

/// A canary phase that failed: its share of the users met the candidate from `took_traffic_at`
/// until `stopped_at`, when its share was 0 again (the previous version serves them all).
#[derive(Debug, Clone)]
pub struct CanaryAborted {
    pub percent: u8,
    pub took_traffic_at: crate::clock::Millis,
    /// When the failing verdict was reached.
    pub failed_at: crate::clock::Millis,
    /// When no new request reached the candidate any more.
    pub stopped_at: crate::clock::Millis,
    pub why: String,
}

pub use crate::ledger::Released;

/// How a deploy ended, as a value: the caller records and reports each outcome, and the
/// platform never turns one into an error for the caller to sort back out. An error of
/// [`Platform::deploy`] is a fault (exit 3) or an interruption, never a verdict.
#[derive(Debug)]
pub enum Deployed {
    /// Users are switched to the version.
    Live(Switched),
    /// Its check before traffic failed: it was stopped and never took traffic; what served
    /// before still does. Carries the check's verdict.
    StoppedBeforeTraffic(anyhow::Error),
    /// Its canary failed: its share of the users is 0 again.
    CanaryAborted(CanaryAborted),
    /// It did not build, start or become healthy; nothing of it is left running. Whether
    /// users met it depends on the platform (an in-place deploy stops the old version first):
    /// the caller asks [`Platform::live`].
    Unhealthy(anyhow::Error),
    /// Its release command failed: nothing of it was started. Never returned by a platform's
    /// `deploy`: the session runs the release before it.
    ReleaseFailed(Released),
}

impl Deployed {
    /// A deploy's result with the platform's verdict errors (did not build, start or become
    /// healthy) classed as [`Deployed::Unhealthy`]; other errors stay errors.
    pub fn classed(r: Result<Deployed>) -> Result<Deployed> {
        match r {
            Err(e) if crate::error::kind_of(&e) == crate::error::Kind::Verdict => Ok(Deployed::Unhealthy(e)),
            other => other,
        }
    }

    /// The verdict error of an outcome other than [`Deployed::Live`], for a caller that has
    /// nothing to record beyond it (a restore, deploy-staging).
    pub fn live_or_verdict(self, label: &str, env: &str) -> Result<Switched> {
        match self {
            Deployed::Live(s) => Ok(s),
            Deployed::StoppedBeforeTraffic(e) | Deployed::Unhealthy(e) => Err(e),
            Deployed::CanaryAborted(a) => {
                Err(crate::error::Error::verdict(format!("{label} failed its canary in {env} at {}%", a.percent))
                    .caused_by(anyhow::anyhow!("{}", a.why)))
            }
            Deployed::ReleaseFailed(r) => Err(crate::error::Error::verdict(format!(
                "{label}'s release failed in {env} ({}); {label} was not started",
                r.exit
            ))
            .caused_by(anyhow::anyhow!("{}", r.tail))),
        }
    }
}

pub trait Platform {
    /// Makes a version deployable; built once, so later deploys and rollbacks of it start at once.
    /// Idempotent: a version the platform already holds is not rebuilt.
    fn register(&self, version: &Version, bundle: &Path) -> Result<()>;

    /// What `env` runs now.
    fn live(&self, env: &Environment) -> Result<Option<Live>>;

    /// Replaces what `env` runs with `label` and waits until it is healthy; returns how it ended
    /// ([`Deployed`]): switched (and when), stopped before traffic, its canary aborted, or
    /// unhealthy (`env` then runs nothing of it).
    ///
    /// `pre`, where the platform can, runs against the healthy candidate at its own address
    /// before it takes any user traffic; its verdict stops the deploy there
    /// ([`Deployed::StoppedBeforeTraffic`]): the candidate is stopped and the previous version
    /// keeps serving. A platform that cannot do this says so
    /// (a warning) and deploys without it.
    ///
    /// `keep_previous`: the version switched away from may be kept running without traffic
    /// (the platform's warm previous), so switching back is instant. A rollback passes false:
    /// the version it replaces is the bad one.
    fn deploy(&self, env: &Environment, label: &str, how: &DeployOptions<'_>) -> Result<Deployed>;

    /// `label`'s release command (its schema migrations), where the platform runs one; `None`
    /// when the version has none. A platform whose deploys run releases themselves (Elastic
    /// Beanstalk's `container_commands` and predeploy hooks) returns `None`.
    fn release_command(&self, _env: &Environment, _label: &str) -> Result<Option<String>> {
        Ok(None)
    }

    /// Runs `label`'s release `command` in `env`: in the environment's working copy of the
    /// version, with the app's variables and data, in its own process group, within its time
    /// limit, its output in the environment's log. `None` in a dry run (the plan is printed).
    fn release(&self, env: &Environment, label: &str, _command: &str) -> Result<Option<Released>> {
        Err(crate::could_not_act!("{}: this platform runs no release of {label}", env.name))
    }

    /// A rollback rehearsal: starts `label` in `env` on a copy of the environment's data, beside
    /// what serves and without traffic, runs `check` against it at its own address, and stops
    /// it. The inner result is the rehearsal's (a start that does not become healthy fails it).
    /// `None` when the platform cannot copy the environment's data (a database server).
    fn rehearse(&self, _env: &Environment, _label: &str, _check: &PreTraffic<'_>) -> Result<Option<Result<()>>> {
        Ok(None)
    }

    /// Why a copy of `env`'s data would not hold all of it, if it would not: the platform copies
    /// no data, or the app reaches a database server. Said before a check on a copy, and
    /// instead of a rehearsal that would run on the shared data.
    fn data_not_copied(&self, _env: &Environment) -> Option<String> {
        Some("this platform cannot copy an environment's data".into())
    }

    /// Whether `env` can run a canary phase (`promote --canary`); a usage error (exit 2) says
    /// why not. Asked before anything changes.
    fn can_canary(&self, env: &Environment, _bake: std::time::Duration) -> Result<()> {
        Err(crate::usage!("--canary: {}: this platform cannot share requests between two versions", env.name))
    }

    /// What a stopped run left unfinished in the environment (a canary's split, a start), as a
    /// sentence for `status`; `None` when nothing is.
    fn unfinished(&self, _env: &Environment) -> Result<Option<String>> {
        Ok(None)
    }

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
