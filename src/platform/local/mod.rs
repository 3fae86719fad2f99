//! The local platform, the embedded default: nothing to install or start by hand.
//!
//! - A version is its bundle unpacked under `<state>/local/versions/<label>/` and built there
//!   once (the configured build command, e.g. a venv from the version's own requirements), so a
//!   bad dependency fails the build and a rollback to a built version starts at once.
//! - An environment runs its own working copy of the version (`<env>/work/`, see [`workcopy`]):
//!   staging and production never share the app's files.
//! - An environment is one process group, started from the version's `Procfile` `web:` line (or
//!   `deploy.command`) with `PORT`, `SAFEDEPLOY_VERSION`, `SAFEDEPLOY_ENV` and
//!   `SAFEDEPLOY_DATA_DIR` set, under `safedeploy-supervisor`, which timestamps every output line
//!   into `<state>/local/envs/<env>/app.log`. The group is detached from the caller and carries
//!   neither the Jenkins process-tree cookies nor secret-looking variables of the caller.
//! - Deploy, behind the proxy (default, `deploy.proxy = "nginx"`): start the new version on a
//!   port of its own beside the old one → wait until its health path answers 2xx (failing
//!   early when it exits; the old version serves meanwhile and keeps serving if it fails) →
//!   switch the environment's nginx to it and let the old workers drain → stop the old version.
//!   Every step is recorded first (`starting.json`, `state.json`, `retiring.json`), so a run
//!   killed at any point leaves a state the next deploy cleans up.
//! - Deploy with `deploy.proxy = "none"`: stop the old group (TERM, grace, KILL) → start the
//!   new one on the environment's port → wait until healthy (requests are dropped meanwhile).

mod answer;
mod canary;
mod nginx;
mod process;
mod records;
mod restart;
mod supervisor;
mod switch;
pub use nginx::VERSION_HEADER;
mod ports;
pub mod settings;
mod sockdiag;
mod workcopy;

use process::*;
use records::{Record, Slot};
pub use supervisor::supervise;

use super::{Live, Platform, Switched};
use crate::config::Environment;
use crate::effects::Effects;
use crate::exec::Cmd;
use crate::http::{Poll, Request};
use crate::ledger::Version;
use crate::redact::is_secret_name;
use crate::{could_not_act, usage, verdict};
use anyhow::{Context, Result};
use nginx::Nginx;
use serde::{Deserialize, Serialize};
use settings::{Build, Deploy, Proxy};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub const SUPERVISOR: &str = "safedeploy-supervisor";
const BUILT_MARKER: &str = ".safedeploy-built";
/// The prefix of a data dir's snapshot made for a check before traffic, in the environment's dir.
const CHECK_DATA: &str = "check-data-";

pub struct Local<'a> {
    fx: &'a Effects,
    deploy: &'a Deploy,
    build: &'a Build,
    environments: &'a std::collections::BTreeMap<String, Environment>,
    /// The app's source, where a dry run reads a version's Procfile from its commit.
    source_dir: PathBuf,
    root: PathBuf,
    /// Processes this run started, kept so they can be reaped (a zombie still counts as alive).
    children: Mutex<Vec<duct::Handle>>,
    /// In a dry run nothing is unpacked: the Procfile of each registered version, read from its
    /// commit, stands in for the unpacked one.
    planned_procfiles: Mutex<std::collections::HashMap<String, String>>,
    /// The variables the config names as holding a webhook or a key: never the app's.
    withheld: Vec<&'a str>,
}

/// What runs in an environment, as recorded by the platform.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct EnvState {
    label: String,
    /// The supervisor's pid, which is also the process group id.
    pid: i32,
    port: u16,
    started_at: String,
    /// Its working copy under `<env>/work/` (none for a record written before copies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dir: Option<PathBuf>,
}

/// The version kept running without traffic after a switch (`warm.json`), until `until`; its
/// supervisor ends its group then by itself (see [`retire_file`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Warm {
    state: EnvState,
    until: crate::clock::Millis,
}

/// The file that tells a version's supervisor when to end its group: the working copy's path
/// plus `.retire-at`, holding a time in ms. Written when the version is kept warm, removed when
/// it is switched back to.
fn retire_file(dir: &Path) -> PathBuf {
    PathBuf::from(format!("{}.retire-at", dir.display()))
}

/// What a health wait needs to know.
struct Health<'h> {
    env: &'h Environment,
    label: &'h str,
    /// Where the version answers: the environment's URL, or its own port behind the proxy.
    base: &'h str,
    /// The port it listens on, and its process group (`None` in a dry run): an answer there is
    /// the version's only when the listener is one of its processes.
    port: u16,
    group: Option<i32>,
    child: Option<&'h duct::Handle>,
    /// Its working copy.
    dir: &'h Path,
    /// Where in app.log this start's output begins.
    log_from: u64,
    /// What an interruption leaves behind.
    left: &'h str,
}

impl<'a> Local<'a> {
    pub fn new(fx: &'a Effects, config: &'a crate::config::Config, state_dir: &Path) -> Self {
        Local {
            fx,
            deploy: &config.deploy,
            build: &config.build,
            environments: &config.environments,
            source_dir: config.source_dir(),
            root: state_dir.join("local"),
            children: Mutex::new(vec![]),
            planned_procfiles: Mutex::new(Default::default()),
            withheld: config.secret_vars(),
        }
    }

    /// `<state>/local/versions/<label>/`, proven to be under `versions/`.
    fn version_dir(&self, label: &str) -> Result<PathBuf> {
        crate::paths::child(&self.root.join("versions"), label, "version label")
    }
    /// `<state>/local/envs/<env>/`, proven to be under `envs/`.
    fn env_dir(&self, env: &str) -> Result<PathBuf> {
        crate::paths::child(&self.root.join("envs"), env, "environment")
    }
    /// The warm previous, if it still runs (a record whose group is gone is forgotten).
    fn read_warm(&self, env: &str) -> Result<Option<Warm>> {
        // A record that cannot be read is no reason to block a rollback: the version it named
        // (if any) retires itself at its window's end (its retire file), and the rollback starts
        // the version afresh.
        let w = match self.read_record::<Warm>(env, Slot::Warm) {
            Ok(w) => w,
            Err(e) => {
                // Left in place for whoever looks; the next switch writes the record anew.
                self.fx
                    .ui
                    .warn(format!("{env}: {e:#}; no warm previous is used, a rollback starts the version afresh"));
                None
            }
        };
        let Some(w) = w else { return Ok(None) };
        // A record naming what serves now is stale: a run switched back to it and was stopped
        // before it could forget the record.
        let serves = self.read_state(env)?.is_some_and(|s| s.pid == w.state.pid);
        // Past its window it is retiring (or should have: its retire file is not to be
        // trusted): it is no target to switch back to.
        // Still running past its window: the next run that holds the environment's lock stops
        // it (the tidy-up plan, `records::tidy_plan`); until then the record is kept.
        if !serves && self.is_supervisor(w.state.pid) && self.group_alive(w.state.pid) {
            let overdue = crate::clock::now_ms() >= w.until;
            return Ok((!overdue).then_some(w));
        }
        if !self.fx.dry_run {
            self.record(env, Record::Warm(None))?;
        }
        Ok(None)
    }

    /// The warm previous when it is `label` and serves on its own port: switching to it needs
    /// no start. Its retirement is called off first, for certain: when its supervisor has
    /// already taken the retire file (it is retiring), it is no target, and the version starts
    /// afresh. A warm copy that does not answer is not waited on either: the version starts
    /// afresh and the copy is stopped after the switch (the warm record is retired then).
    fn warm_for(&self, env: &Environment, label: &str) -> Result<Option<EnvState>> {
        let Some(w) = self.read_warm(&env.name)?.filter(|w| w.state.label == label) else { return Ok(None) };
        if self.fx.dry_run {
            self.fx.ui.plan(format!("# would switch back to {label}, kept warm on port {}", w.state.port));
            return Ok(None);
        }
        // Its supervisor takes the retire file when it retires: removing it first is what
        // makes the version ours again, and a step like any other record's write.
        let call_off = |dir: &Path| {
            self.fx.exec.effect(
                || format!("call off {label}'s retirement in {}: remove {}", env.name, retire_file(dir).display()),
                || Ok(std::fs::remove_file(retire_file(dir))),
            )
        };
        if let Some(dir) = &w.state.dir
            && let Some(Err(e)) = call_off(dir)?
        {
            self.fx.ui.warn(format!(
                "{}: {label}, kept warm, is already retiring ({}); starting it afresh",
                env.name,
                if e.kind() == std::io::ErrorKind::NotFound {
                    "its retire file is gone".to_string()
                } else {
                    e.to_string()
                }
            ));
            return Ok(None);
        }
        let healthy = self.answers_health(w.state.port) && ports::held_by_group(w.state.port, w.state.pid);
        if healthy {
            return Ok(Some(w.state));
        }
        self.fx.ui.warn(format!(
            "{}: {label}, kept warm, does not answer on port {}; starting it afresh (the copy is stopped after the switch)",
            env.name, w.state.port
        ));
        Ok(None)
    }

    /// The proxy that owns the environment's port, unless `deploy.proxy = "none"`.
    fn proxy(&self, env: &Environment) -> Result<Option<Nginx<'a>>> {
        let Proxy::Nginx(name) = &self.deploy.proxy else { return Ok(None) };
        let program = match nginx::locate(name, self.fx.env.path()) {
            Ok(p) => p,
            // A dry run prints the plan even where nginx is not installed.
            Err(_) if self.fx.dry_run => PathBuf::from(name),
            Err(e) => return Err(e),
        };
        Ok(Some(Nginx::new(self.fx, program, &self.env_dir(&env.name)?, self.deploy.stop_grace.0)))
    }
    pub fn log_file(&self, env: &str) -> Result<PathBuf> {
        Ok(self.env_dir(env)?.join("app.log"))
    }

    fn read_state(&self, env: &str) -> Result<Option<EnvState>> {
        self.read_record(env, Slot::Serving)
    }

    /// The environment's port (its URL is checked to be plain http on this machine at load).
    fn port_of(&self, env: &Environment) -> Result<u16> {
        env.url.0.port_or_known_default().ok_or_else(|| usage!("environments.{}.url: no port in {}", env.name, env.url))
    }

    /// The ports of every configured environment on this machine: never handed to an app.
    fn environment_ports(&self) -> std::collections::HashSet<u16> {
        self.environments.values().filter_map(|e| self.port_of(e).ok()).collect()
    }
}

impl Platform for Local<'_> {
    fn register(&self, version: &Version, bundle: &Path) -> Result<()> {
        let label = &version.label;
        let dir = self.version_dir(label)?;
        if dir.join(BUILT_MARKER).is_file() {
            return Ok(());
        }
        let ui = &self.fx.ui;
        // While the build runs, its process group is kept here (beside the version's dir).
        let build_group = self.root.join("versions/.builds").join(label);
        ui.status(format!("local: unpacking and building {label}"));
        self.fx.exec.effect(
            || format!("unpack {} into {}", bundle.display(), dir.display()),
            || {
                if dir.exists() {
                    // A build a killed run left half done: its processes first, then its files.
                    if crate::exec::end_recorded_group(&build_group, &dir) {
                        self.fx.ui.warn(format!("local: stopped the build of {label} a stopped run left running"));
                    }
                    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
                }
                std::fs::create_dir_all(&dir)?;
                let file =
                    std::fs::File::open(bundle).with_context(|| format!("opening bundle {}", bundle.display()))?;
                tar::Archive::new(file).unpack(&dir).with_context(|| format!("unpacking {}", bundle.display()))?;
                workcopy::write_manifest(&dir)
            },
        )?;
        let cleanup = || {
            let _ = self.fx.exec.effect(|| format!("remove {}", dir.display()), || Ok(std::fs::remove_dir_all(&dir)?));
        };
        if self.fx.dry_run && self.deploy.command.is_none() {
            // Nothing was unpacked: read the Procfile from the commit (a read, so it runs).
            let src = self.source_dir.clone();
            let show =
                Cmd::new(["git", "-C", &src.to_string_lossy(), "show", &format!("{}:./Procfile", version.commit)]);
            let text = self.fx.exec.read(&show).unwrap_or_default();
            if let Ok(mut m) = self.planned_procfiles.lock() {
                m.insert(label.clone(), text);
            }
        }
        if let Err(e) = self.web_command(label) {
            cleanup();
            return Err(e);
        }
        if let Some(build) = &self.build.command {
            if let Some(parent) = build_group.parent().filter(|_| !self.fx.dry_run) {
                std::fs::create_dir_all(parent)?;
            }
            let cmd = Cmd::shell(build).dir(&dir).timeout(self.build.timeout.0).group_file(&build_group);
            let started = Instant::now();
            if let Err(e) = self.fx.exec.run(&cmd) {
                cleanup();
                if crate::error::classified(&e).is_some() {
                    return Err(e);
                }
                return Err(crate::error::Error::verdict(format!("version {label} failed to build")).caused_by(e));
            }
            ui.detail(format!("local: built {label} in {:.1}s", started.elapsed().as_secs_f64()));
        }
        self.fx.exec.effect(
            || format!("mark {label} built"),
            || Ok(std::fs::write(dir.join(BUILT_MARKER), &version.checksum)?),
        )?;
        Ok(())
    }

    fn live(&self, env: &Environment) -> Result<Option<Live>> {
        let proxy_up = match self.proxy(env) {
            Ok(Some(n)) => n.pid().is_some() || !n.dir().join("nginx.conf").exists(),
            _ => true,
        };
        let Some(s) = self.read_state(&env.name)? else { return Ok(None) };
        let running = self.is_supervisor(s.pid) && self.group_alive(s.pid) && proxy_up;
        // Present is not healthy: a hung version (stopped, deadlocked) holds its port and
        // answers nothing. Asked on its own port, so the answer is the version's.
        Ok(Some(Live { healthy: running && self.answers_health(s.port), label: s.label }))
    }

    fn tidy(&self, env: &Environment) -> Result<()> {
        if let Some(nginx) = self.proxy(env)? {
            self.tidy_behind(env, &nginx)?;
        }
        self.prune_copies(env);
        Ok(())
    }

    fn release_command(&self, _env: &Environment, label: &str) -> Result<Option<String>> {
        self.release_line(label)
    }

    fn release(&self, env: &Environment, label: &str, line: &str) -> Result<Option<super::Released>> {
        let line = line.to_string();
        let name = env.name.as_str();
        let dir = self.version_dir(label)?;
        let work = self.working_copy(env, label, &dir)?;
        self.fx.exec.create_dir(&self.env_dir(name)?.join("data"))?;
        let cmd = self.supervised(env, label, &work, &line, None, None)?;
        let log = self.log_file(name)?;
        let log_from = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let limit = self.deploy.release_timeout.0;
        self.fx.ui.status(format!("{name}: running {label}'s release before it starts: {line}"));
        let started_at = crate::clock::now_ms();
        let Some(handle) = self.fx.exec.spawn_detached(&cmd, &log)? else { return Ok(None) };
        let group = handle.pids().first().copied().unwrap_or(0) as i32;
        let deadline = Instant::now() + limit;
        let exit = loop {
            if let Some(out) = handle.try_wait().context("waiting for the release")? {
                break (crate::exec::describe(&out.status), out.status.success());
            }
            if self.fx.interrupted.load(Ordering::SeqCst) {
                crate::procs::end_group(group, self.deploy.stop_grace.0);
                let _ = handle.wait();
                self.prune_copies(env);
                return Err(crate::error::Error::interrupted(format!(
                    "interrupted during {label}'s release in {name}: it was stopped part-way, so the data may be partly migrated; {label} was not started"
                ))
                .into());
            }
            if Instant::now() >= deadline {
                crate::procs::end_group(group, self.deploy.stop_grace.0);
                let _ = handle.wait();
                break (format!("stopped after its time limit of {}", humantime::format_duration(limit)), false);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let ended_at = crate::clock::now_ms();
        self.prune_copies(env);
        let tail = log_tail(&log, log_from, 12);
        Ok(Some(super::Released { command: line, started_at, ended_at, exit: exit.0, ok: exit.1, tail }))
    }

    fn data_not_copied(&self, env: &Environment) -> Option<String> {
        database_server(env, &self.fx.env)
            .map(|var| format!("its app reaches a database server ({var}), which is not copied"))
    }

    fn rehearse(&self, env: &Environment, label: &str, check: &super::PreTraffic<'_>) -> Result<Option<Result<()>>> {
        let dir = self.version_dir(label)?;
        if self.fx.dry_run {
            self.fx.ui.plan(format!(
                "# would start {label} on a copy of {}'s data and run the smoke chains against it",
                env.name
            ));
            return Ok(None);
        }
        if !dir.join(BUILT_MARKER).is_file() {
            return Err(could_not_act!(
                "version {label} is not built on the local platform ({} is missing)",
                dir.display()
            ));
        }
        let work = self.working_copy(env, label, &dir)?;
        let serving = self.read_state(&env.name)?.map(|s| s.label);
        let result = self.on_a_copy(env, label, &work, serving.as_deref(), check, "as a rollback would meet it");
        self.prune_copies(env);
        match result {
            // Not healthy on that data: the rehearsal's verdict, not a fault.
            Err(e) if crate::error::kind_of(&e) == crate::error::Kind::Verdict => Ok(Some(Err(e))),
            other => other.map(Some),
        }
    }

    fn deploy(&self, env: &Environment, label: &str, how: &super::DeployOptions<'_>) -> Result<super::Deployed> {
        let pre = how.pre;
        let port = self.port_of(env)?;
        let dir = self.version_dir(label)?;
        if !self.fx.dry_run && !dir.join(BUILT_MARKER).is_file() {
            return Err(could_not_act!(
                "version {label} is not built on the local platform ({} is missing)",
                dir.display()
            ));
        }
        let nginx = self.proxy(env)?;
        let reuse = match &nginx {
            Some(_) => self.warm_for(env, label)?,
            None => None,
        };
        let work = match reuse.as_ref().and_then(|w| w.dir.clone()) {
            Some(d) => d,
            None => self.working_copy(env, label, &dir)?,
        };
        let switched = match nginx {
            Some(nginx) => self.deploy_switch(env, label, &work, &nginx, how, reuse),
            None => {
                if pre.is_some() {
                    self.fx.ui.warn(format!(
                        "{}: {label} cannot be checked before it takes traffic with deploy.proxy = \"none\" (it starts on the environment's own port); use the proxy",
                        env.name
                    ));
                }
                self.deploy_restart(env, label, port, &work).map(super::Deployed::Live)
            }
        };
        self.prune_copies(env);
        super::Deployed::classed(switched)
    }

    /// Stops the app (and what a killed run left starting or retiring) and the environment's
    /// nginx: nothing of it runs and its port is free.
    fn stop(&self, env: &Environment) -> Result<()> {
        let proxy = self.proxy(env)?;
        if let Some(nginx) = &proxy {
            self.tidy_behind(env, nginx)?;
        }
        self.stop_app(env)?;
        if let Some(nginx) = &proxy {
            nginx.stop()?;
        }
        self.prune_copies(env);
        Ok(())
    }

    fn can_canary(&self, env: &Environment, _bake: Duration) -> Result<()> {
        match self.deploy.proxy {
            Proxy::Nginx(_) => Ok(()),
            Proxy::None => Err(usage!(
                "--canary: {} cannot share its requests between two versions with deploy.proxy = \"none\" (the app owns the environment's port); use the proxy",
                env.name
            )),
        }
    }

    fn unfinished(&self, env: &Environment) -> Result<Option<String>> {
        let name = env.name.as_str();
        let serving = self.read_state(name)?.map(|s| s.label).unwrap_or_else(|| "what is recorded as serving".into());
        if let Some(c) = self.read_record::<EnvState>(name, Slot::Canary)? {
            let share = self
                .proxy(env)?
                .and_then(|n| n.share_of(c.port))
                .map(|p| format!("{p}% of the requests still go to {}", c.label))
                .unwrap_or_else(|| format!("requests may still be shared with {}", c.label));
            return Ok(Some(format!(
                "a run was stopped during the canary of {}: {share}; the next promote or rollback sends every request to {serving} first",
                c.label
            )));
        }
        if let Some(s) = self.read_record::<EnvState>(name, Slot::Starting)? {
            return Ok(Some(format!(
                "a run was stopped while starting {}; the next promote or rollback stops it",
                s.label
            )));
        }
        Ok(None)
    }

    fn warm_previous(&self, env: &Environment) -> Result<Option<(String, crate::clock::Millis)>> {
        Ok(self.read_warm(&env.name)?.map(|w| (w.state.label, w.until)))
    }

    fn version_signal(&self, _env: &Environment) -> super::VersionSignal {
        match self.deploy.proxy {
            Proxy::Nginx(_) => super::VersionSignal::Header(nginx::VERSION_HEADER),
            Proxy::None => super::VersionSignal::Platform,
        }
    }

    /// The app's output, and nginx's access and error logs: a 500 the app did not log is in
    /// the access log.
    fn logs(&self, env: &Environment) -> Result<Vec<PathBuf>> {
        let nginx = self.env_dir(&env.name)?.join("nginx");
        let files = [self.log_file(&env.name)?, nginx.join("access.log"), nginx.join("error.log")];
        Ok(files.into_iter().filter(|f| f.is_file()).collect())
    }
}

/// A check before traffic that failed, the candidate already stopped: its verdict stops the
/// deploy there ([`super::Deployed::StoppedBeforeTraffic`]); an interruption says what was
/// left; any other error stays one.
fn not_taken(e: anyhow::Error, label: &str, env: &str, serving: Option<&str>) -> Result<super::Deployed> {
    match crate::error::kind_of(&e) {
        crate::error::Kind::Verdict => Ok(super::Deployed::StoppedBeforeTraffic(e)),
        crate::error::Kind::Interrupted => Err(e.context(format!(
            "{label} was stopped before it took traffic and not switched to; {env} still serves {}",
            serving.unwrap_or("nothing")
        ))),
        _ => Err(e),
    }
}

/// The variable of `env`'s that points its app at a database server (a URL whose scheme names
/// one: PostgreSQL, MySQL, MariaDB, MongoDB, Redis, SQL Server), if one does: data that a copy
/// of the data dir does not hold.
fn database_server(env: &Environment, shell: &crate::environ::Environ) -> Option<String> {
    const SCHEMES: &[&str] = &[
        "postgres",
        "postgresql",
        "mysql",
        "mariadb",
        "mongodb",
        "mongodb+srv",
        "redis",
        "rediss",
        "mssql",
        "sqlserver",
        "cockroachdb",
    ];
    env.env.iter().find_map(|(k, v)| {
        let value = v.text().or_else(|| shell.get(v.from_env()?))?;
        let scheme = value.split_once("://")?.0.to_ascii_lowercase();
        let base = scheme.split('+').next().unwrap_or_default();
        (SCHEMES.contains(&base) || SCHEMES.contains(&scheme.as_str())).then(|| k.clone())
    })
}

/// The command of a Procfile's `kind:` line (`web`, `release`), if it has one.
pub fn procfile_line(text: &str, kind: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(kind)?.strip_prefix(':'))
        .map(|c| c.trim().to_string())
        .find(|c| !c.is_empty())
}

/// How long a health probe of a live version may take before it counts as hung.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How many ports a version behind the proxy is started on before the platform gives up.
const PORT_ATTEMPTS: usize = 3;

pub(crate) use crate::procs::stat as proc_stat;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_server_the_app_reaches_is_named_and_a_file_or_web_url_is_not() {
        let env = |vars: &[(&str, &str)]| Environment {
            url: crate::config::HttpUrl::parse("http://127.0.0.1:8000").expect("url"),
            env: vars
                .iter()
                .map(|(k, v)| (k.to_string(), crate::config::appenv::AppValue::Text(v.to_string())))
                .collect(),
            elasticbeanstalk: None,
            name: "production".into(),
        };
        // the app's variables; the one naming a database server
        type Row = (&'static [(&'static str, &'static str)], Option<&'static str>);
        let rows: [Row; 6] = [
            (&[("DATABASE_URL", "postgresql+psycopg://app@db:5432/blog")], Some("DATABASE_URL")),
            (&[("DB", "postgres://db/x")], Some("DB")),
            (&[("CACHE", "redis://cache:6379/0")], Some("CACHE")),
            (&[("MYSQL", "mysql+pymysql://u@h/d")], Some("MYSQL")),
            (&[("DATABASE_URL", "sqlite:////data/blog.db"), ("API", "https://api.example.com")], None),
            (&[], None),
        ];
        for (vars, want) in rows {
            assert_eq!(database_server(&env(vars), &crate::environ::Environ::default()).as_deref(), want, "{vars:?}");
        }
    }
}
