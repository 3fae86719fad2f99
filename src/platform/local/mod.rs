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
mod nginx;
pub use nginx::VERSION_HEADER;
mod ports;
pub mod settings;
mod workcopy;

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
    fn state_file(&self, env: &str) -> Result<PathBuf> {
        Ok(self.env_dir(env)?.join("state.json"))
    }
    /// Behind the proxy: a version being started, not yet serving.
    fn starting_file(&self, env: &str) -> Result<PathBuf> {
        Ok(self.env_dir(env)?.join("starting.json"))
    }
    /// Behind the proxy: versions that served before the last switch, to be stopped.
    fn retiring_file(&self, env: &str) -> Result<PathBuf> {
        Ok(self.env_dir(env)?.join("retiring.json"))
    }
    /// Behind the proxy: a candidate taking a canary's share of the requests beside what
    /// `state.json` names.
    fn canary_file(&self, env: &str) -> Result<PathBuf> {
        Ok(self.env_dir(env)?.join("canary.json"))
    }
    /// Behind the proxy: the previous version, kept running without traffic.
    fn warm_file(&self, env: &str) -> Result<PathBuf> {
        Ok(self.env_dir(env)?.join("warm.json"))
    }

    /// The warm previous, if it still runs (a record whose group is gone is forgotten).
    fn read_warm(&self, env: &str) -> Result<Option<Warm>> {
        let file = self.warm_file(env)?;
        // A record that cannot be read is no reason to block a rollback: the version it named
        // (if any) retires itself at its window's end (its retire file), and the rollback starts
        // the version afresh.
        let w = match self.read_json::<Warm>(&file) {
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
        // it (`stop_overdue_warm`); until then the record is kept, not forgotten.
        if !serves && self.is_supervisor(w.state.pid) && self.group_alive(w.state.pid) {
            let overdue = crate::clock::now_ms() >= w.until;
            return Ok((!overdue).then_some(w));
        }
        if !self.fx.dry_run {
            self.write_json::<Warm>(&self.warm_file(env)?, None)?;
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
        if let Some(dir) = &w.state.dir
            && let Err(e) = std::fs::remove_file(retire_file(dir))
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

    fn read_json<T: serde::de::DeserializeOwned>(&self, path: &Path) -> Result<Option<T>> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .with_context(|| format!("reading {} (delete it if the environment is stopped)", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes (atomically) or removes a state file.
    fn write_json<T: Serialize>(&self, path: &Path, value: Option<&T>) -> Result<()> {
        match value {
            Some(v) => {
                let tmp = path.with_extension("json.tmp");
                std::fs::write(&tmp, serde_json::to_vec_pretty(v)?)?;
                std::fs::rename(&tmp, path)?;
            }
            None => match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            },
        }
        Ok(())
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
        self.read_json(&self.state_file(env)?)
    }

    fn write_state(&self, env: &str, state: Option<&EnvState>) -> Result<()> {
        self.write_json(&self.state_file(env)?, state)
    }

    /// Whether `pid` is still one of our supervisors (guards against pid reuse).
    fn is_supervisor(&self, pid: i32) -> bool {
        self.reap();
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(SUPERVISOR))
            .unwrap_or(false)
    }

    /// Whether any process of the group is still running. Zombies do not count: an orphaned
    /// supervisor waits for PID 1 to reap it, which some container inits do slowly.
    fn group_alive(&self, pgid: i32) -> bool {
        self.reap();
        !crate::procs::members(pgid).is_empty()
    }

    fn reap(&self) {
        if let Ok(mut children) = self.children.lock() {
            children.retain(|h| matches!(h.try_wait(), Ok(None)));
        }
    }

    /// TERM to the group, up to the grace period, then KILL. The group is stopped when it is
    /// ours: its supervisor runs, or its processes work in this platform's directories (a
    /// supervisor killed with -9 leaves its app running in the group).
    fn stop_group(&self, env: &str, state: &EnvState) -> Result<()> {
        let grace = self.deploy.stop_grace.0;
        let pid = state.pid;
        self.fx.exec.effect(
            || format!("stop {env} ({}): kill -TERM -- -{pid}, then -KILL after {}s", state.label, grace.as_secs()),
            || {
                if !(self.is_supervisor(pid) || crate::procs::group_works_under(pid, &self.root)) {
                    return Ok(());
                }
                self.reap();
                if crate::procs::end_group(pid, grace) {
                    self.fx.ui.warn(format!(
                        "{env}: {} ignored SIGTERM for {}s; it was killed",
                        state.label,
                        grace.as_secs()
                    ));
                }
                self.reap();
                Ok(())
            },
        )?;
        Ok(())
    }

    /// The environment's port (its URL is checked to be plain http on this machine at load).
    fn port_of(&self, env: &Environment) -> Result<u16> {
        env.url.0.port_or_known_default().ok_or_else(|| usage!("environments.{}.url: no port in {}", env.name, env.url))
    }

    /// The ports of every configured environment on this machine: never handed to an app.
    fn environment_ports(&self) -> std::collections::HashSet<u16> {
        self.environments.values().filter_map(|e| self.port_of(e).ok()).collect()
    }

    /// The web command: `deploy.command`, else the version's `Procfile` `web:` line.
    /// Read from the built version (a working copy holds the same Procfile, and in a dry run
    /// none is made).
    fn web_command(&self, label: &str) -> Result<String> {
        if let Some(c) = &self.deploy.command {
            return Ok(c.to_string());
        }
        let dir = self.version_dir(label)?;
        let planned = self.planned_procfiles.lock().ok().and_then(|m| m.get(label).cloned());
        let text = match planned {
            Some(text) if !dir.exists() => text,
            _ => std::fs::read_to_string(dir.join("Procfile")).unwrap_or_default(),
        };
        if text.trim().is_empty() {
            return Err(usage!(
                "version {label} has no Procfile: expected a `web: COMMAND` line in Procfile (or set deploy.command)"
            ));
        }
        procfile_line(&text, "web").ok_or_else(|| usage!("version {label}: Procfile has no `web: COMMAND` line"))
    }

    /// The release command: `deploy.release`, else the version's `Procfile` `release:` line;
    /// `None` when it has neither.
    fn release_line(&self, label: &str) -> Result<Option<String>> {
        if let Some(c) = &self.deploy.release {
            return Ok(Some(c.to_string()));
        }
        let dir = self.version_dir(label)?;
        let planned = self.planned_procfiles.lock().ok().and_then(|m| m.get(label).cloned());
        let text = match planned {
            Some(text) if !dir.exists() => text,
            _ => std::fs::read_to_string(dir.join("Procfile")).unwrap_or_default(),
        };
        Ok(procfile_line(&text, "release"))
    }

    fn supervisor_path() -> Result<PathBuf> {
        let exe = std::env::current_exe().context("locating this executable")?;
        let sup = exe.with_file_name(SUPERVISOR);
        if sup.is_file() {
            Ok(sup)
        } else {
            Err(crate::error::Error::could_not_act(format!("{} not found", sup.display()))
                .with_hint("install every safedeploy binary side by side (cargo install --path .)")
                .into())
        }
    }

    /// Whether the version on `port` answers its health path with a 2xx there, on its own port
    /// (so the answer is the version's), within [`PROBE_TIMEOUT`]: a hung version does not. In a
    /// dry run no request is sent and this says yes.
    fn answers_health(&self, port: u16) -> bool {
        let url = format!("http://127.0.0.1:{port}{}", self.deploy.health_path);
        match self.fx.http.probe(&Request::get(url).timeout(PROBE_TIMEOUT)) {
            Some(Ok(r)) => (200..300).contains(&r.status),
            Some(Err(_)) => false,
            None => true,
        }
    }

    /// The app's PATH: its build paths (relative ones in its working copy `dir`), then the
    /// system directories. Never the deploying shell's PATH: a dependency the build forgot
    /// must fail the start, not run on the agent's copy of it.
    fn app_path(&self, dir: &Path) -> Vec<String> {
        let build = self.build.path.iter().map(|p| dir.join(p.as_str()).to_string_lossy().into_owned());
        build.chain(self.deploy.system_path.iter().map(|d| d.to_string())).collect()
    }

    /// The app's command: the supervisor running the web line, with the app's environment.
    /// `data`: a copy of the environment's data dir to run on instead of it.
    fn app_command(&self, env: &Environment, label: &str, dir: &Path, port: u16, data: Option<&Path>) -> Result<Cmd> {
        let web = self.web_command(label)?;
        self.supervised(env, label, dir, &web, Some(port), data)
    }

    /// A shell line of the app's (its web line, its release) under the supervisor, in its
    /// working copy `dir`, with the app's environment; `port` for a web line; `data` for a
    /// copy of the environment's data dir. The config's variables for the app come last, their
    /// `${…}` expanded with the same values the app gets.
    fn supervised(
        &self,
        env: &Environment,
        label: &str,
        dir: &Path,
        line: &str,
        port: Option<u16>,
        data: Option<&Path>,
    ) -> Result<Cmd> {
        let web = line;
        let data = match data {
            Some(d) => d.to_path_buf(),
            None => self.env_dir(&env.name)?.join("data"),
        };
        let path = self.app_path(dir);
        let mut cmd = Cmd::new([
            Self::supervisor_path()?.to_string_lossy().into_owned(),
            "--".into(),
            "sh".into(),
            "-c".into(),
            exec_line(web),
        ])
        .dir(dir);
        // The app inherits the caller's environment but for its secrets (by name, and those the
        // config names as safedeploy's own keys) and safedeploy's own settings; what the config
        // gives it comes on top.
        let (kept, removed): (Vec<_>, Vec<_>) = self.fx.env.vars().partition(|(k, _)| {
            !(is_secret_name(k) || k.starts_with("SAFEDEPLOY_") || self.withheld.contains(&k.as_str()))
        });
        cmd = cmd
            .base_env(
                kept.into_iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                removed.into_iter().map(|(k, _)| k.clone()).collect(),
            )
            .env("SAFEDEPLOY_VERSION", label)
            .env("SAFEDEPLOY_ENV", &env.name)
            .env("SAFEDEPLOY_DATA_DIR", data.to_string_lossy())
            .env("SAFEDEPLOY_RETIRE_FILE", retire_file(dir).to_string_lossy())
            .env("SAFEDEPLOY_STOP_GRACE_MS", self.deploy.stop_grace.0.as_millis().to_string())
            .env("PATH", path.join(":"));
        let port = port.map(port_text).unwrap_or_default();
        if !port.is_empty() {
            cmd = cmd.env("PORT", &port);
        }
        let data = data.to_string_lossy();
        let at = crate::config::appenv::Placeholders { data_dir: &data, port: &port, env: &env.name, version: label };
        for (k, v) in env.app_vars(&self.fx.env, &at)? {
            cmd = cmd.env(k, v);
        }
        Ok(cmd)
    }

    /// Polls `base` + the health path until a 2xx, failing early when the process exits.
    /// `left` says what an interruption leaves behind.
    fn wait_healthy(&self, h: Health<'_>) -> Result<()> {
        let Health { env, label, base, port, group, child, dir, log_from, left } = h;
        let deploy = &self.deploy;
        let url = format!("{}{}", base.trim_end_matches('/'), deploy.health_path);
        let req = Request::get(&url).timeout(Duration::from_secs(2));
        let started = Instant::now();
        let deadline = started + deploy.health_timeout.0;
        let mut exited = None;
        let mut last_status = Instant::now();
        let mut steady = answer::Steady::default();
        let mut settled = None;
        let answer = self.fx.http.poll(&req, Duration::from_millis(100), deadline, |a| {
            if self.fx.interrupted.load(Ordering::SeqCst) {
                return Poll::Abort(
                    crate::error::Error::interrupted(format!(
                        "interrupted while waiting for {label} to become healthy in {}; {left}",
                        env.name
                    ))
                    .into(),
                );
            }
            if matches!(a, Ok(r) if (200..300).contains(&r.status)) {
                return Poll::Done;
            }
            if let Some(Ok(Some(out))) = child.map(|h| h.try_wait()) {
                exited = Some(crate::exec::describe(&out.status));
                return Poll::Done;
            }
            if let Some(s) = steady.see(a, Instant::now()) {
                settled = Some(s);
                return Poll::Done;
            }
            if last_status.elapsed() >= Duration::from_secs(5) {
                last_status = Instant::now();
                self.fx.ui.status(format!(
                    "{}: waiting for {label} to answer {} with a 2xx ({}s of {}s); it answered {}",
                    env.name,
                    deploy.health_path,
                    started.elapsed().as_secs(),
                    deploy.health_timeout.0.as_secs(),
                    answer::describe(a)
                ));
            }
            Poll::Again
        })?;
        let Some(answer) = answer else { return Ok(()) };
        if let Some((said, polls, held)) = settled {
            return Err(self.steady_answer(env, label, port, &said, polls, held));
        }
        let log = self.log_file(&env.name)?;
        let tail = || log_tail(&log, log_from, 12);
        let taken = |holders: &ports::Listeners| PortTaken {
            port,
            label: label.to_string(),
            holder: if holders.any() { holders.describe() } else { "another process".into() },
        };
        if let Some(status) = exited {
            let holders = ports::listeners(port);
            if says_port_in_use(&tail()) || holders.any() {
                return Err(taken(&holders).into());
            }
            let said = tail();
            if let Some(missing) = missing_command(&said) {
                return Err(crate::error::Error::verdict(format!(
                    "{label} exited during start-up in {} ({status}): `{missing}` is not on the app's PATH ({}); its last output:{said}",
                    env.name,
                    self.app_path(dir).join(":"),
                ))
                .with_hint(format!(
                    "the app runs on what its build installed and on deploy.system_path: install {missing} in the build (for Python, add it to requirements.txt), or add its directory to build.path"
                ))
                .into());
            }
            return Err(verdict!("{label} exited during start-up in {} ({status}); its last output:{said}", env.name));
        }
        match answer {
            Ok(r) if (200..300).contains(&r.status) => match group {
                // The answer counts only if it came from the version's own processes.
                Some(g) if !ports::listeners(port).all_of(g) => Err(taken(&ports::listeners(port)).into()),
                _ => Ok(()),
            },
            Ok(r) => Err(verdict!(
                "{label} did not become healthy in {} within {}s: GET {url} answered {} {}{}",
                env.name,
                deploy.health_timeout.0.as_secs(),
                r.status,
                r.body_start(),
                tail()
            )),
            Err(e) => Err(verdict!(
                "{label} did not become healthy in {} within {}s: {e}{}",
                env.name,
                deploy.health_timeout.0.as_secs(),
                tail()
            )),
        }
    }

    /// A version whose health path answers the same redirect or client error poll after poll:
    /// a verdict when the version serving the environment answers that path with a 2xx (the
    /// candidate broke its health route), else a configuration mistake (exit 2, nothing marked
    /// bad): the path is no health route for any version.
    fn steady_answer(
        &self,
        env: &Environment,
        label: &str,
        port: u16,
        said: &str,
        polls: u32,
        held: Duration,
    ) -> anyhow::Error {
        let path = &self.deploy.health_path;
        let how = format!("{said}, the same {polls} times over {}s", held.as_secs());
        let serving = self.read_state(&env.name).ok().flatten().filter(|s| s.label != label && s.port != port);
        if let Some(s) = serving.filter(|s| self.answers_health(s.port)) {
            return verdict!(
                "{label} did not become healthy in {}: GET {path} answered {how}, where {} answers it 2xx: {label} broke its health route",
                env.name,
                s.label
            );
        }
        crate::error::Error::usage(format!(
            "deploy.health_path {:?}: {label} answered {how} in {}, and no version there answers it 2xx: it is not a health route; {label} is stopped and not marked bad",
            &**path,
            env.name
        ))
        .with_hint("point deploy.health_path at a route that answers 200 without a login (safedeploy init prints one for the app's framework)")
        .into()
    }

    /// What a killed run left behind the proxy: a start that never served is stopped; versions
    /// left to retire are stopped once nginx is sure to point at the recorded one.
    fn tidy_behind(&self, env: &Environment, nginx: &Nginx<'_>) -> Result<()> {
        let name = env.name.as_str();
        let serving = self.read_state(name)?;
        if let Some(candidate) = self.read_json::<EnvState>(&self.canary_file(name)?)? {
            // Killed during a canary: nginx may still share the requests with the candidate.
            // It goes back to what is recorded as serving before anything is stopped.
            if let Some(s) = serving.as_ref().filter(|_| nginx.pid().is_some()) {
                self.fx.ui.warn(format!(
                    "{name}: a run was stopped during the canary of {}; sending every request to {} again",
                    candidate.label, s.label
                ));
                let listen = nginx::listen_of(&env.url.0, self.port_of(env)?);
                let r = nginx.switch(&listen, s.port, &s.label)?;
                nginx.drain(r);
            }
            self.fx.exec.effect(
                || format!("forget {name}'s unfinished canary"),
                || self.write_json::<EnvState>(&self.canary_file(name)?, None),
            )?;
        }
        if let Some(stale) = self.read_json::<EnvState>(&self.starting_file(name)?)? {
            // Killed after recording it as serving, before forgetting the start: it serves.
            if serving.as_ref().map(|s| s.pid) != Some(stale.pid) {
                self.fx.ui.warn(format!("{name}: stopping {}, left starting by a run that was stopped", stale.label));
                self.stop_group(name, &stale)?;
            }
            self.fx.exec.effect(
                || format!("forget {name}'s unfinished start"),
                || self.write_json::<EnvState>(&self.starting_file(name)?, None),
            )?;
        }
        self.stop_overdue_warm(name)?;
        let retiring: Vec<EnvState> = self.read_json(&self.retiring_file(name)?)?.unwrap_or_default();
        if retiring.is_empty() {
            return Ok(());
        }
        if let Some(s) = &serving {
            // The switch may not have happened: make it happen before stopping anything.
            let listen = nginx::listen_of(&env.url.0, self.port_of(env)?);
            if let Some(r) = self.point_nginx(nginx, &listen, s.port, &s.label)? {
                nginx.drain(r);
            }
        }
        let warm = self.read_warm(name)?.map(|w| w.state.pid);
        for o in retiring.iter().filter(|o| Some(o.pid) != warm) {
            self.fx.ui.warn(format!("{name}: stopping {}, left to retire by a run that was stopped", o.label));
            self.stop_group(name, o)?;
        }
        self.fx.exec.effect(
            || format!("forget {name}'s retired versions"),
            || self.write_json::<Vec<EnvState>>(&self.retiring_file(name)?, None),
        )?;
        Ok(())
    }

    /// A warm version still running well past its window (its supervisor did not retire it:
    /// the retire file was removed or rewritten by someone else) is stopped, and forgotten.
    fn stop_overdue_warm(&self, name: &str) -> Result<()> {
        let Ok(Some(w)) = self.read_json::<Warm>(&self.warm_file(name)?) else { return Ok(()) };
        let overdue = crate::clock::now_ms() >= w.until + self.deploy.stop_grace.0.as_millis() as i64 + 1000;
        let serves = self.read_state(name)?.is_some_and(|s| s.pid == w.state.pid);
        if !overdue || serves {
            return Ok(());
        }
        if self.is_supervisor(w.state.pid) && self.group_alive(w.state.pid) {
            self.fx.ui.warn(format!(
                "{name}: {}, kept warm until {}, still runs; stopping it",
                w.state.label,
                crate::clock::rfc3339(w.until)
            ));
            self.stop_group(name, &w.state)?;
        }
        self.fx.exec.effect(
            || format!("forget {name}'s warm previous"),
            || self.write_json::<Warm>(&self.warm_file(name)?, None),
        )?;
        Ok(())
    }

    /// Points the environment's nginx at `port`: a graceful reload when it runs (returned, so
    /// its old workers can be drained), else a start.
    fn point_nginx(&self, nginx: &Nginx<'_>, listen: &str, port: u16, label: &str) -> Result<Option<nginx::Reloaded>> {
        if nginx.pid().is_some() {
            nginx.switch(listen, port, label).map(Some)
        } else {
            let h = nginx.start(listen, port, label)?;
            self.keep(h);
            Ok(None)
        }
    }

    /// Keeps a started process so it can be reaped.
    fn keep(&self, handle: Option<duct::Handle>) {
        if let Some(h) = handle
            && let Ok(mut c) = self.children.lock()
        {
            c.push(h);
        }
    }

    /// `deploy.proxy = "none"`: stop the old group, start the new one on the environment's port.
    fn deploy_restart(&self, env: &Environment, label: &str, port: u16, dir: &Path) -> Result<Switched> {
        let cmd = self.app_command(env, label, dir, port, None)?;
        if let Some(old) = self.read_state(&env.name)? {
            self.stop_group(&env.name, &old)?;
        }
        self.fx.exec.create_dir(&self.env_dir(&env.name)?.join("data"))?;
        self.fx.exec.effect(|| format!("record {} as stopped", env.name), || self.write_state(&env.name, None))?;
        if !self.fx.dry_run && std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            return Err(could_not_act!(
                "port {port} of {} is held by {}, which safedeploy did not start; {} stays stopped",
                env.name,
                ports::listeners(port).describe(),
                env.name
            ));
        }
        let log = self.log_file(&env.name)?;
        let log_from = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        self.fx.ui.status(format!("{}: starting {label} on port {port}", env.name));
        let handle = self.fx.exec.spawn_detached(&cmd, &log)?;
        if let Some(h) = &handle {
            let pid = h.pids().first().copied().unwrap_or(0) as i32;
            let started_at = crate::clock::rfc3339(crate::clock::now_ms());
            let dir = Some(dir.to_path_buf());
            self.write_state(&env.name, Some(&EnvState { label: label.to_string(), pid, port, started_at, dir }))?;
        }
        let left = format!("{label} is left running, unverified");
        let group = handle.as_ref().map(|h| h.pids().first().copied().unwrap_or(0) as i32);
        let result = self.wait_healthy(Health {
            env,
            label,
            base: &env.url.base(),
            port,
            group,
            child: handle.as_ref(),
            dir,
            log_from,
            left: &left,
        });
        self.keep(handle);
        let result = result.map_err(|e| match e.downcast::<PortTaken>() {
            // The environment's own port: there is no other to try.
            Ok(t) => could_not_act!("{t}; {} is left stopped", env.name),
            Err(e) => e,
        });
        match result {
            // Leave nothing half-alive behind: a version that failed its start is stopped.
            Err(e)
                if !self.fx.dry_run
                    && matches!(crate::error::kind_of(&e), crate::error::Kind::Verdict | crate::error::Kind::Usage) =>
            {
                self.stop_app(env)?;
                Err(e)
            }
            // It answers on the environment's own port: it serves users from now on.
            other => other.map(|()| Switched::at(crate::clock::now_ms())),
        }
    }

    /// Behind the proxy: start beside the old version, switch once healthy, then stop the old.
    fn deploy_switch(
        &self,
        env: &Environment,
        label: &str,
        dir: &Path,
        nginx: &Nginx<'_>,
        how: &super::DeployOptions<'_>,
        reuse: Option<EnvState>,
    ) -> Result<super::Deployed> {
        let pre = how.pre;
        let port = self.port_of(env)?;
        let name = env.name.as_str();
        let listen = nginx::listen_of(&env.url.0, port);
        self.tidy_behind(env, nginx)?;
        let mut old = self.read_state(name)?;
        if let Some(o) = old.as_ref().filter(|o| o.port == port) {
            // Started without the proxy, on the environment's own port: it must give the port up.
            self.fx
                .ui
                .warn(format!("{name}: {} holds port {port} itself; stopping it so nginx can take the port", o.label));
            self.stop_group(name, o)?;
            old = None;
        }
        let data = self.env_dir(name)?.join("data");
        self.fx.exec.create_dir(&data)?;
        let serving = old.as_ref().map(|o| o.label.as_str());
        let reverting = reuse.is_some();
        let mut checked = false;
        let slot = match reuse {
            Some(w) => {
                self.fx.ui.status(format!("{name}: switching back to {label}, kept warm on port {}", w.port));
                Some(w)
            }
            None => {
                if let (Some(check), false) = (pre, self.fx.dry_run) {
                    if let Some(stopped) = self.check_on_a_copy(env, label, dir, serving, check)? {
                        return Ok(stopped);
                    }
                    checked = true;
                }
                let started = crate::clock::now_ms();
                let slot = self.start_beside(env, label, dir, serving, None)?;
                // On the environment's own data now: what its start changed there, the version
                // users are served meets before the switch.
                if let (Some(watch), Some(s)) = (how.watch, &slot)
                    && let Err(e) = watch(started)
                {
                    self.stop_group(name, s)?;
                    self.write_json::<EnvState>(&self.starting_file(name)?, None)?;
                    return Err(e);
                }
                slot
            }
        };
        let Some(slot) = slot else {
            if pre.is_some() {
                self.fx.ui.plan(format!(
                    "# would run the smoke chains against {label} on its own port, before it takes traffic"
                ));
            }
            if let Some(c) = how.canary {
                self.fx.ui.plan(format!(
                    "# would send {}% of the requests to {label} for {} (the rest to {}), checking it every {}; a failed round sends them all back",
                    c.percent,
                    humantime::format_duration(c.bake),
                    serving.unwrap_or("nothing"),
                    humantime::format_duration(c.interval)
                ));
            }
            // A dry run: the rest of the plan, each step printed by its chokepoint.
            self.point_nginx(nginx, &listen, 0, label)?;
            let switched = self.serves_through(env, label)?;
            if let Some(o) = &old {
                self.stop_group(name, o)?;
            }
            return Ok(super::Deployed::Live(switched));
        };
        // Before any user reaches it: the candidate answers on its own port, nginx still sends
        // every request to the old version. (A fresh start was checked on a copy of the data.)
        if let Some(check) = pre.filter(|_| !checked) {
            self.fx.ui.status(format!("{name}: checking {label} on port {} before it takes traffic", slot.port));
            if let Err(e) = check(&format!("http://127.0.0.1:{}", slot.port)) {
                self.stop_group(name, &slot)?;
                self.write_json::<EnvState>(&self.starting_file(name)?, None)?;
                return not_taken(e, label, name, serving);
            }
        }
        let canary_from = match (how.canary, &old) {
            (Some(c), Some(o)) => match self.canary(env, nginx, &listen, o, &slot, c)? {
                Ok(took) => Some(took),
                Err(aborted) => return Ok(super::Deployed::CanaryAborted(aborted)),
            },
            (Some(_), None) => {
                self.fx.ui.warn(format!("{name}: nothing serves yet, so there is no share to give {label}: no canary"));
                None
            }
            _ => None,
        };
        // Recorded before the switch: a run killed from here on leaves the new version recorded
        // as serving and the old one to be stopped, whichever nginx points at.
        let before: Vec<EnvState> = self.read_json(&self.retiring_file(name)?)?.unwrap_or_default();
        let mut retiring = before.clone();
        retiring.extend(old.clone());
        self.write_json(&self.retiring_file(name)?, Some(&retiring))?;
        self.write_state(name, Some(&slot))?;
        self.write_json::<EnvState>(&self.starting_file(name)?, None)?;
        let reloaded = match self.point_nginx(nginx, &listen, slot.port, &slot.label) {
            Ok(r) => r,
            Err(e) => {
                if nginx.pid().is_some() {
                    return Err(e);
                }
                // nginx is not up, so the new version took no traffic: the record goes back to what
                // it was and the new version is stopped.
                self.write_state(name, old.as_ref())?;
                self.write_json(&self.retiring_file(name)?, Some(&before))?;
                self.stop_group(name, &slot)?;
                return Err(crate::error::Error::could_not_act(format!(
                    "{name}: nginx did not start, so {label} took no traffic and was stopped"
                ))
                .caused_by(e));
            }
        };
        let switched = Switched { canary_from, ..self.serves_through(env, label)? };
        if canary_from.is_some() {
            self.write_json::<EnvState>(&self.canary_file(name)?, None)?;
        }
        self.fx.ui.status(format!("{name}: nginx on port {port} now sends users to {label}"));
        // Users are on the new version; what the old workers still carry finishes before the
        // version they forward to is stopped.
        if let Some(r) = reloaded {
            nginx.drain(r);
        }
        self.retire(env, &slot, old, retiring, how.keep_previous && !reverting)?;
        Ok(super::Deployed::Live(switched))
    }

    /// The check before traffic on a copy of the environment's data: the candidate is started
    /// beside what serves with `SAFEDEPLOY_DATA_DIR` on a snapshot of the data dir, checked, and
    /// stopped; the snapshot is removed. What its start and its checks write never reaches the
    /// users' data. `Some` when it failed its check (it took no traffic).
    fn check_on_a_copy(
        &self,
        env: &Environment,
        label: &str,
        dir: &Path,
        serving: Option<&str>,
        check: &super::PreTraffic<'_>,
    ) -> Result<Option<super::Deployed>> {
        let name = env.name.as_str();
        self.fx.ui.status(match database_server(env, &self.fx.env) {
            None => format!(
                "{name}: {label} is checked before traffic on a copy of {name}'s data dir: what its start and its checks write never reaches its users"
            ),
            Some(var) => format!(
                "{name}: {label} is checked before traffic on a copy of {name}'s data dir; its database server ({var}) is not copied: what it writes there, the version users are served meets, and is watched for"
            ),
        });
        match self.on_a_copy(env, label, dir, serving, check, "before it takes traffic")? {
            Ok(()) => {
                self.fx.ui.status(format!("{name}: {label} passed; starting it on {name}'s own data"));
                Ok(None)
            }
            Err(e) => not_taken(e, label, name, serving).map(Some),
        }
    }

    /// Starts `label` (its working copy `dir`) beside what serves, with `SAFEDEPLOY_DATA_DIR`
    /// on a snapshot of the environment's data dir; runs `check` at its own address; stops it
    /// and removes the snapshot. The inner result is the check's.
    fn on_a_copy(
        &self,
        env: &Environment,
        label: &str,
        dir: &Path,
        serving: Option<&str>,
        check: &super::PreTraffic<'_>,
        purpose: &str,
    ) -> Result<Result<()>> {
        let name = env.name.as_str();
        let data = self.env_dir(name)?.join("data");
        let copy = self.env_dir(name)?.join(format!("{CHECK_DATA}{}", crate::clock::now_ms()));
        workcopy::copy_tree(&data, &copy)
            .with_context(|| format!("copying {} to check {label} on it", data.display()))?;
        let slot = match self.start_beside(env, label, dir, serving, Some(&copy)) {
            Ok(s) => s,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&copy);
                return Err(e);
            }
        };
        let Some(slot) = slot else {
            let _ = std::fs::remove_dir_all(&copy);
            return Ok(Ok(()));
        };
        self.fx.ui.status(format!("{name}: checking {label} on port {} {purpose}", slot.port));
        let checked = check(&format!("http://127.0.0.1:{}", slot.port));
        self.stop_group(name, &slot)?;
        self.write_json::<EnvState>(&self.starting_file(name)?, None)?;
        let _ = std::fs::remove_dir_all(&copy);
        Ok(checked)
    }

    /// The canary phase: nginx sends `c.percent` % of the requests to `slot` and the rest to
    /// `old`; each round runs the checks against the candidate's own port and reads what the
    /// candidate answered users (`split.log`). Returns when its share first took traffic once
    /// the bake passed. A failed round takes the share to 0 at once (the reload is waited on,
    /// then the candidate is stopped): the inner `Err`. An interruption or another error ends
    /// the canary the same way, without a verdict.
    fn canary(
        &self,
        env: &Environment,
        nginx: &Nginx<'_>,
        listen: &str,
        old: &EnvState,
        slot: &EnvState,
        c: &super::Canary<'_>,
    ) -> Result<std::result::Result<crate::clock::Millis, super::CanaryAborted>> {
        let name = env.name.as_str();
        let label = slot.label.as_str();
        // Recorded first: a run killed during the canary leaves it for the next run to undo.
        self.write_json(&self.canary_file(name)?, Some(slot))?;
        let log = nginx.split_log();
        let mut read_from = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let backends = [
            nginx::Backend { port: old.port, label: &old.label, weight: 100 - c.percent },
            nginx::Backend { port: slot.port, label, weight: c.percent },
        ];
        // The candidate's share is 0 once nothing can forward a request to it: the new
        // configuration sends it none, and an old nginx worker still accepting (under load, for
        // a couple of hundred milliseconds after it is told to stop) forwards to a candidate
        // that no longer listens, which nginx takes as an error and passes to the stable
        // version (`proxy_next_upstream`'s default). So the candidate is told to stop at once
        // (TERM: it closes its listener and finishes what it carries) instead of after the
        // old workers; whichever comes first ends its share.
        let end = || -> Result<crate::clock::Millis> {
            let mut r =
                nginx.reload_to(listen, &[nginx::Backend { port: old.port, label: &old.label, weight: 100 }])?;
            self.fx.exec.effect(
                || format!("tell {label} (group {}) to stop taking requests: kill -TERM -- -{}", slot.pid, slot.pid),
                || {
                    if self.is_supervisor(slot.pid) || crate::procs::group_works_under(slot.pid, &self.root) {
                        let _ = nix::sys::signal::killpg(
                            nix::unistd::Pid::from_raw(slot.pid),
                            nix::sys::signal::Signal::SIGTERM,
                        );
                    }
                    Ok(())
                },
            )?;
            r.steps.mark("candidate told to stop");
            let until = Instant::now() + Duration::from_secs(10);
            while nginx.old_accepting(&r) && ports::listens(slot.port) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(1));
            }
            let at = crate::clock::now_ms();
            r.steps.mark("nothing forwards to the candidate");
            nginx.until_old_stop_accepting(&mut r);
            self.fx.ui.detail(format!("{name}: the switch back to {}: {}", old.label, r.steps));
            nginx.drain(r);
            self.stop_group(name, slot)?;
            self.write_json::<EnvState>(&self.starting_file(name)?, None)?;
            self.write_json::<EnvState>(&self.canary_file(name)?, None)?;
            Ok(at)
        };
        let took = match nginx.switch_to(listen, &backends) {
            Ok(_) => crate::clock::now_ms(),
            Err(e) => {
                end()?;
                return Err(e);
            }
        };
        self.fx.ui.status(format!(
            "{name}: canary: {label} takes {}% of the requests, {} the rest; a round every {} for {}",
            c.percent,
            old.label,
            crate::clock::human(c.interval.as_millis() as i64),
            crate::clock::human(c.bake.as_millis() as i64)
        ));
        let started = Instant::now();
        let mut counts = nginx::SplitCounts::default();
        // The round with the most candidate errors: left out of the judge's counts, so a blip
        // alone never convicts (see `judge`).
        let mut worst = nginx::SplitCounts::default();
        let mut judged = None;
        let mut failing_before: Option<String> = None;
        let mut round = 0u32;
        let failed: Option<String> = loop {
            // Interrupted (a Jenkins abort): the canary ends, no verdict.
            if self.fx.nap(c.interval, String::new).is_err() {
                end()?;
                return Err(crate::error::Error::interrupted(format!(
                    "interrupted during the canary of {label} in {name}; {} serves every request again and {label} was stopped",
                    old.label
                ))
                .into());
            }
            round += 1;
            if !self.group_alive(slot.pid) {
                break Some(format!("{label} exited during its canary (round {round})"));
            }
            if let Err(e) = (c.round)(&format!("http://127.0.0.1:{}", slot.port)) {
                if crate::error::kind_of(&e) == crate::error::Kind::Verdict {
                    break Some(format!("{e:#}"));
                }
                end()?;
                return Err(e);
            }
            // What users got since the last round. One window with more failures than the
            // stable version's is a blip until the next window says the same: a verdict marks
            // the version bad, and a healthy version may fail a handful of requests in a
            // fraction of a second (the corpus's 503 blip did, 18 times in 200).
            let mut window = nginx::SplitCounts::default();
            read_from = nginx::split_counts(&log, read_from, slot.port, &mut window);
            counts.add(&window);
            if window.candidate_errors > worst.candidate_errors {
                worst = window.clone();
            }
            let failing = window.fails(c.error_margin);
            if failing && failing_before.is_some() {
                let (rate, stable) = window.rates();
                break Some(format!(
                    "{label} answered users with server errors in two rounds running: {} of {} in the last ({rate:.1}%, against {stable:.1}% for {}); first: {}",
                    window.candidate_errors,
                    window.candidate,
                    old.label,
                    failing_before.as_deref().or(window.first_error.as_deref()).unwrap_or("-")
                ));
            }
            // A steady failure too thin for one round to show (a share of a route no check
            // visits) is caught on the rounds' counts together, by the judge.
            let evidence = crate::judge::errors(
                crate::judge::Stream {
                    requests: counts.candidate - worst.candidate,
                    errors: counts.candidate_errors - worst.candidate_errors,
                },
                crate::judge::Stream { requests: counts.stable, errors: counts.stable_errors },
                c.error_margin / 100.0,
            );
            if evidence.failed {
                break Some(format!(
                    "{label} answers users with server errors more often than {} by over {} point(s): {} (its worst round, {} error(s), left out as a possible blip); first: {}",
                    old.label,
                    c.error_margin,
                    evidence.describe(),
                    worst.candidate_errors,
                    counts.first_error.as_deref().unwrap_or("-")
                ));
            }
            judged = Some(evidence);
            let floor = c.latency_margin.as_millis().min(u32::MAX as u128) as u32;
            if let Some(l) = crate::judge::latency(&counts.candidate_ms, &counts.stable_ms, floor).filter(|l| l.failed)
            {
                break Some(format!(
                    "{label} answers users more slowly than {} by over {} ms: {}",
                    old.label,
                    floor,
                    l.describe()
                ));
            }
            failing_before = if failing { window.first_error.clone().or(Some("-".into())) } else { None };
            self.fx.ui.status(format!(
                "{name}: canary round {round} {} ({}s of {}s; {label} answered {} user request(s), {} failed{})",
                if failing { "failed on users' requests" } else { "passed" },
                started.elapsed().as_secs(),
                c.bake.as_secs(),
                counts.candidate,
                counts.candidate_errors,
                if failing { "; one more such round fails it" } else { "" }
            ));
            // A bake never ends on a failing window: the next round settles it. One that ends
            // on too few requests to judge follows `deploy.canary_not_enough`.
            if started.elapsed() >= c.bake && !failing {
                use settings::NotEnough;
                let short = judged.as_ref().filter(|e| !e.enough());
                match (short, c.not_enough) {
                    (None, _) | (Some(_), NotEnough::Pass) => break None,
                    (Some(e), NotEnough::Fail) => {
                        break Some(format!(
                            "not enough evidence: {label} answered {} user request(s) in its bake, and ruling out a lift of {} point(s) takes about {} (deploy.canary_not_enough = \"fail\"); {}",
                            e.candidate.requests,
                            c.error_margin,
                            e.needed,
                            e.describe()
                        ));
                    }
                    (Some(e), NotEnough::Extend) if started.elapsed() >= c.max_bake => {
                        let said = format!(
                            "not enough evidence to judge {label} after {} (deploy.canary_max_bake): {} user request(s) of the about {} needed to rule out a lift of {} point(s); {} serves every request again and {label} was stopped, not marked bad",
                            crate::clock::human(c.max_bake.as_millis() as i64),
                            e.candidate.requests,
                            e.needed,
                            c.error_margin,
                            old.label
                        );
                        end()?;
                        return Err(crate::inconclusive!("{said}"));
                    }
                    (Some(e), NotEnough::Extend) => {
                        if round % 10 == 1 || started.elapsed() < c.bake + c.interval {
                            self.fx.ui.status(format!(
                                "{name}: canary bake extended: {} of about {} user requests needed to judge {label} (until {} at most)",
                                e.candidate.requests,
                                e.needed,
                                crate::clock::human(c.max_bake.as_millis() as i64)
                            ));
                        }
                    }
                }
            }
        };
        let Some(why) = failed else {
            // A pass on too few requests says nothing of a small lift: said, never silent.
            if let Some(e) = judged.filter(|e| !e.enough()) {
                self.fx.ui.warn(format!(
                    "{name}: canary of {label} passed on {} user request(s); a lift of {} point(s) in its 5xx share shows after about {}, so this canary cannot rule one out ({})",
                    e.candidate.requests,
                    c.error_margin,
                    e.needed,
                    e.describe()
                ));
            }
            return Ok(Ok(took));
        };
        let failed_at = crate::clock::now_ms();
        let stopped_at = end()?;
        self.fx.ui.status(format!(
            "{name}: canary aborted: {label}'s share was 0 {} ms after the failing verdict; {} serves every request",
            stopped_at - failed_at,
            old.label
        ));
        Ok(Err(super::CanaryAborted { percent: c.percent, took_traffic_at: took, failed_at, stopped_at, why }))
    }

    /// After a switch to `serving`: the version it replaced (`old`) is kept warm when `keep`
    /// (and `deploy.keep_previous` is not 0), everything else that ran before is stopped. The
    /// warm record is written before the retiring list is cleared, so a run killed between the
    /// two leaves nothing unaccounted for.
    fn retire(
        &self,
        env: &Environment,
        serving: &EnvState,
        old: Option<EnvState>,
        retiring: Vec<EnvState>,
        keep: bool,
    ) -> Result<()> {
        let name = env.name.as_str();
        let window = self.deploy.keep_previous.0;
        let previous_warm = self.read_warm(name)?;
        let kept = old.filter(|o| keep && !window.is_zero() && o.pid != serving.pid);
        let mut to_stop: Vec<EnvState> =
            retiring.into_iter().filter(|o| kept.as_ref().is_none_or(|k| k.pid != o.pid)).collect();
        to_stop.extend(
            previous_warm
                .map(|w| w.state)
                .filter(|w| w.pid != serving.pid && kept.as_ref().is_none_or(|k| k.pid != w.pid)),
        );
        // What is not kept is stopped first: a run killed meanwhile leaves each of them still
        // recorded (as retiring, or as the warm previous), never forgotten while it runs.
        for o in &to_stop {
            self.stop_group(name, o)?;
        }
        match &kept {
            Some(k) => {
                let until = crate::clock::now_ms() + window.as_millis() as i64;
                if let Some(dir) = &k.dir {
                    std::fs::write(retire_file(dir), until.to_string())?;
                }
                self.write_json(&self.warm_file(name)?, Some(&Warm { state: k.clone(), until }))?;
                self.fx.ui.status(format!(
                    "{name}: {} keeps running without traffic until {} (deploy.keep_previous): a rollback to it is a switch",
                    k.label,
                    crate::clock::rfc3339(until)
                ));
            }
            None => self.write_json::<Warm>(&self.warm_file(name)?, None)?,
        }
        self.write_json::<Vec<EnvState>>(&self.retiring_file(name)?, None)?;
        Ok(())
    }

    /// The moment `label` serves through the environment's own address: its health path
    /// answers there (through nginx, which now forwards to it).
    fn serves_through(&self, env: &Environment, label: &str) -> Result<Switched> {
        let url = format!("{}{}", env.url.base(), self.deploy.health_path);
        let req = Request::get(&url).timeout(PROBE_TIMEOUT);
        let deadline = Instant::now() + self.deploy.health_timeout.0.min(Duration::from_secs(10));
        let ok = |a: &Result<crate::http::Response>| matches!(a, Ok(r) if (200..300).contains(&r.status));
        match self
            .fx
            .http
            .poll(&req, Duration::from_millis(20), deadline, |a| if ok(a) { Poll::Done } else { Poll::Again })?
        {
            None => Ok(Switched::at(crate::clock::now_ms())),
            Some(a) if ok(&a) => Ok(Switched::at(crate::clock::now_ms())),
            Some(Ok(r)) => Err(verdict!(
                "{} does not serve {label} after the switch: GET {url} answered {} {}",
                env.name,
                r.status,
                r.body_start()
            )),
            Some(Err(e)) => Err(verdict!("{} does not serve {label} after the switch: {e}", env.name)),
        }
    }

    /// Behind the proxy: starts `label` on a port of its own (never an environment's) and waits
    /// until it is healthy there, recorded in `starting.json` meanwhile; `serving` keeps serving.
    /// A port another process takes before the app binds it is picked again, up to
    /// [`PORT_ATTEMPTS`] times. Returns what now runs (`None` in a dry run); a version that
    /// fails its start is stopped.
    fn start_beside(
        &self,
        env: &Environment,
        label: &str,
        dir: &Path,
        serving: Option<&str>,
        data: Option<&Path>,
    ) -> Result<Option<EnvState>> {
        let name = env.name.as_str();
        let reserved = self.environment_ports();
        let left = match serving {
            Some(o) => format!("{label} is left starting, not serving; {o} still serves"),
            None => format!("{label} is left starting, not serving"),
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let app_port = if self.fx.dry_run { 0 } else { ports::pick(&reserved)? };
            let cmd = self.app_command(env, label, dir, app_port, data)?;
            let log = self.log_file(name)?;
            let log_from = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
            let on = if self.fx.dry_run { "a free port".to_string() } else { format!("port {app_port}") };
            self.fx.ui.status(match serving {
                Some(o) => format!("{name}: starting {label} on {on} beside {o}, which keeps serving"),
                None => format!("{name}: starting {label} on {on}"),
            });
            let handle = self.fx.exec.spawn_detached(&cmd, &log)?;
            let slot = handle.as_ref().map(|h| EnvState {
                label: label.to_string(),
                pid: h.pids().first().copied().unwrap_or(0) as i32,
                port: app_port,
                started_at: crate::clock::rfc3339(crate::clock::now_ms()),
                dir: Some(dir.to_path_buf()),
            });
            if let Some(s) = &slot {
                self.write_json(&self.starting_file(name)?, Some(s))?;
            }
            let base = format!("http://127.0.0.1:{}", port_text(app_port));
            let result = self.wait_healthy(Health {
                env,
                label,
                base: &base,
                port: app_port,
                group: slot.as_ref().map(|s| s.pid),
                child: handle.as_ref(),
                dir,
                log_from,
                left: &left,
            });
            self.keep(handle);
            let Some(slot) = slot else {
                result?;
                return Ok(None);
            };
            let Err(e) = result else { return Ok(Some(slot)) };
            let lost = e.downcast_ref::<PortTaken>().is_some();
            if lost || matches!(crate::error::kind_of(&e), crate::error::Kind::Verdict | crate::error::Kind::Usage) {
                // It never served: stop it; the old version was never touched.
                self.stop_group(name, &slot)?;
                self.write_json::<EnvState>(&self.starting_file(name)?, None)?;
            }
            if !lost {
                return Err(e);
            }
            if attempt == PORT_ATTEMPTS {
                return Err(crate::error::Error::could_not_act(format!(
                    "{label} could not get a port of its own in {name} in {PORT_ATTEMPTS} tries{}",
                    serving.map(|o| format!("; {o} still serves")).unwrap_or_default()
                ))
                .caused_by(e));
            }
            self.fx.ui.warn(format!(
                "{name}: {e}; starting it again on another port (try {} of {PORT_ATTEMPTS})",
                attempt + 1
            ));
        }
    }

    /// A fresh working copy of the built version for `env` (see [`workcopy`]).
    fn working_copy(&self, env: &Environment, label: &str, version: &Path) -> Result<PathBuf> {
        let work = self.env_dir(&env.name)?.join("work").join(format!("{label}-{}", crate::clock::now_ms()));
        self.fx.exec.effect(
            || format!("make {}'s working copy of {label}: {} → {}", env.name, version.display(), work.display()),
            || {
                let started = Instant::now();
                let made = workcopy::make(version, &work)?;
                self.fx.ui.detail(format!(
                    "{}: working copy of {label} made in {:.0}ms ({} file(s) copied, {} linked from the build)",
                    env.name,
                    started.elapsed().as_secs_f64() * 1000.0,
                    made.copied,
                    made.linked
                ));
                Ok(())
            },
        )?;
        Ok(work)
    }

    /// Removes the working copies nothing recorded runs in (those of stopped versions, and of
    /// starts a killed run left). A failure to remove one is said, not fatal.
    fn prune_copies(&self, env: &Environment) {
        if self.fx.dry_run {
            return;
        }
        let Ok(env_dir) = self.env_dir(&env.name) else { return };
        let mut keep: Vec<PathBuf> = vec![];
        let states = [self.state_file(&env.name), self.starting_file(&env.name)];
        for f in states.into_iter().flatten() {
            if let Ok(Some(s)) = self.read_json::<EnvState>(&f) {
                keep.extend(s.dir);
            }
        }
        if let Ok(f) = self.retiring_file(&env.name)
            && let Ok(Some(r)) = self.read_json::<Vec<EnvState>>(&f)
        {
            keep.extend(r.into_iter().filter_map(|s| s.dir));
        }
        if let Ok(f) = self.warm_file(&env.name)
            && let Ok(Some(w)) = self.read_json::<Warm>(&f)
        {
            keep.extend(w.state.dir);
        }
        let kept_retire_files: Vec<PathBuf> = keep.iter().map(|d| retire_file(d)).collect();
        keep.extend(kept_retire_files);
        // Snapshots of the data a check or a rehearsal left (a killed run): never in use under
        // the lock, which every caller holds.
        for e in std::fs::read_dir(&env_dir).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with(CHECK_DATA) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let Ok(entries) = std::fs::read_dir(env_dir.join("work")) else { return };
        for e in entries.flatten() {
            let path = e.path();
            if keep.contains(&path) {
                continue;
            }
            let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            if let Err(err) = removed {
                self.fx.ui.warn(format!(
                    "{}: could not remove the unused working copy {}: {err}",
                    env.name,
                    path.display()
                ));
            }
        }
    }

    /// Stops whatever app version `env` runs and records it as stopped.
    fn stop_app(&self, env: &Environment) -> Result<()> {
        if let Some(w) = self.read_warm(&env.name)? {
            self.stop_group(&env.name, &w.state)?;
            self.fx.exec.effect(
                || format!("forget {}'s warm previous", env.name),
                || self.write_json::<Warm>(&self.warm_file(&env.name)?, None),
            )?;
        }
        if let Some(old) = self.read_state(&env.name)? {
            self.stop_group(&env.name, &old)?;
            self.fx.exec.effect(|| format!("record {} as stopped", env.name), || self.write_state(&env.name, None))?;
        }
        Ok(())
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
        if let Some(c) = self.read_json::<EnvState>(&self.canary_file(name)?)? {
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
        if let Some(s) = self.read_json::<EnvState>(&self.starting_file(name)?)? {
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

/// The last `n` lines written to `path` after byte `from`, indented, for error messages. Only
/// the last 256 KiB are read: an app can write a lot before it dies.
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

fn log_tail(path: &Path, from: u64, n: usize) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(from.max(len.saturating_sub(256 * 1024))));
        let _ = f.read_to_end(&mut bytes);
    }
    let tail = crate::exec::tail_of(&bytes, n);
    if tail.is_empty() { " (none)".into() } else { tail }
}

/// The supervisor's job: run the web command, stamp each output line with the time, say when it
/// exits. SIGTERM is caught so the output is drained while the group shuts down.
pub fn supervise(argv: Vec<String>, exec: &crate::exec::Exec) -> Result<i32> {
    use std::io::Write;
    let term = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, term.clone())?;
    }
    let stamp = || crate::clock::rfc3339(crate::clock::now_ms());
    let label = exec.env.get("SAFEDEPLOY_VERSION").unwrap_or_default().to_string();
    let out = std::io::stdout();
    // The retirement is the supervisor's business: the app is not told where it is decided.
    let cmd = Cmd::new(argv).env_remove("SAFEDEPLOY_RETIRE_FILE").env_remove("SAFEDEPLOY_STOP_GRACE_MS");
    let _ = writeln!(out.lock(), "{} [safedeploy] starting {label}: {}", stamp(), cmd.display());
    if let Some(file) = exec.env.get("SAFEDEPLOY_RETIRE_FILE").map(PathBuf::from) {
        let grace = exec.env.get("SAFEDEPLOY_STOP_GRACE_MS").and_then(|g| g.parse().ok()).unwrap_or(10_000);
        let label = label.clone();
        std::thread::spawn(move || retire_when_due(&file, Duration::from_millis(grace), &label));
    }
    let status = exec.run_lines(&cmd, |line| {
        let mut o = out.lock();
        let _ = writeln!(o, "{} {line}", stamp());
        let _ = o.flush();
    })?;
    let how = status.map(|s| crate::exec::describe(&s)).unwrap_or_else(|| "unknown status".into());
    let _ = writeln!(out.lock(), "{} [safedeploy] {label} exited ({how})", stamp());
    Ok(status.and_then(|s| s.code()).unwrap_or(1))
}

/// A warm previous ends itself: once the time in `file` has passed (the platform removes the
/// file when it switches back to this version), the supervisor's whole group gets SIGTERM,
/// then SIGKILL after the grace.
///
/// While the file stays, its time can only come earlier: a later time written over it (by the
/// app, which runs as the same user) does not postpone the retirement. Its removal (a switch
/// back) forgets it, and a new window starts afresh.
///
/// Whatever the file says, a group whose working copy is gone (the state dir removed under it)
/// ends itself: nothing else would ever stop it.
fn retire_when_due(file: &Path, grace: Duration, label: &str) {
    let mut earliest: Option<i64> = None;
    // The working copy the group runs in: gone, the state dir was removed under it (a script
    // that cleaned up its work dir) and nothing will ever stop it.
    let copy = file.to_str().and_then(|f| f.strip_suffix(".retire-at")).map(PathBuf::from);
    loop {
        std::thread::sleep(Duration::from_millis(250));
        if copy.as_ref().is_some_and(|c| !c.exists()) {
            return end_own_group(&format!("{label}'s working copy is gone (its state dir was removed)"), grace);
        }
        let written = std::fs::read_to_string(file).ok().map(|t| t.trim().parse::<i64>().ok());
        earliest = retire_due(earliest, written);
        if earliest.is_none_or(|d| crate::clock::now_ms() < d) {
            continue;
        }
        if std::fs::remove_file(file).is_err() {
            continue; // switched back to at this very moment: it serves again
        }
        return end_own_group(&format!("{label} was kept warm without traffic until now"), grace);
    }
}

/// The supervisor ends its whole group, saying why in the app's log: SIGTERM, then SIGKILL
/// after the grace.
fn end_own_group(why: &str, grace: Duration) {
    use nix::sys::signal::{Signal, killpg};
    println!("{} [safedeploy] {why}; stopping it", crate::clock::rfc3339(crate::clock::now_ms()));
    let group = nix::unistd::getpgrp();
    let _ = killpg(group, Signal::SIGTERM);
    std::thread::sleep(grace);
    let _ = killpg(group, Signal::SIGKILL);
}

/// When a warm version retires, from what it knew (`earliest`) and what its retire file says
/// now (`None`: no file, a switch back; `Some(None)`: unreadable): never later than a time
/// already seen while the file stayed.
fn retire_due(earliest: Option<i64>, written: Option<Option<i64>>) -> Option<i64> {
    match written {
        None => None,
        Some(None) => earliest,
        Some(Some(d)) => Some(earliest.map_or(d, |e| e.min(d))),
    }
}

/// The app's port was taken by another process before, or while, the app bound it: not a
/// verdict on the version (it never got to serve), so the start is tried again elsewhere.
#[derive(Debug, thiserror::Error)]
#[error("port {port} was taken by {holder} before {label} could listen on it")]
struct PortTaken {
    port: u16,
    label: String,
    holder: String,
}

/// The web line as `sh -c` runs it: a plain command is `exec`ed, so the app itself is the
/// supervisor's child and gets its signals first; a line that already says `exec`, or that is
/// more than one command (`;`, `&`, `|`, a subshell), runs as written (the whole process group
/// is stopped either way).
fn exec_line(web: &str) -> String {
    let compound = web.contains([';', '&', '|', '(', ')', '\n', '`']) || web.contains("$(");
    let first = web.split_whitespace().next().unwrap_or_default();
    if compound || first == "exec" { web.to_string() } else { format!("exec {web}") }
}

/// A port as a plan shows it: in a dry run no port is picked (0), and the real run takes a free one.
fn port_text(port: u16) -> String {
    if port == 0 { "<a free port>".into() } else { port.to_string() }
}

/// How long a health probe of a live version may take before it counts as hung.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How many ports a version behind the proxy is started on before the platform gives up.
const PORT_ATTEMPTS: usize = 3;

/// The command a shell could not find, from its last output (`sh: 1: exec: gunicorn: not
/// found`, bash's `gunicorn: command not found`, `env: 'node': No such file or directory`).
fn missing_command(output: &str) -> Option<String> {
    static SHELL: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?:^|\s)(?:/bin/|/usr/bin/)?(?:ba|da|z)?sh:(?: line)? ?\d*:? (?:exec: )?([^\s:]+): (?:command )?not found$")
            .expect("a valid pattern")
    });
    output.lines().rev().find_map(|l| SHELL.captures(l.trim()).map(|c| c[1].to_string()))
}

/// Whether an app's last output says its port was in use (gunicorn: "Connection in use";
/// Python, Node, Go, Java: "Address already in use" / EADDRINUSE).
fn says_port_in_use(output: &str) -> bool {
    let o = output.to_ascii_lowercase();
    ["address already in use", "eaddrinuse", "connection in use", "address in use"].iter().any(|s| o.contains(s))
}

pub(crate) use crate::procs::stat as proc_stat;

#[cfg(test)]
mod tests {

    #[test]
    fn a_retire_time_can_come_earlier_never_later_while_the_file_stays() {
        assert_eq!(retire_due(None, Some(Some(100))), Some(100));
        assert_eq!(retire_due(Some(100), Some(Some(9_999_999))), Some(100), "postponed");
        assert_eq!(retire_due(Some(100), Some(Some(50))), Some(50));
        assert_eq!(retire_due(Some(100), Some(None)), Some(100), "unreadable");
        assert_eq!(retire_due(Some(100), None), None, "switched back");
        assert_eq!(retire_due(None, Some(Some(500))), Some(500), "a new window");
    }

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

    #[test]
    fn a_command_the_shell_could_not_find_is_named() {
        let cases = [
            ("2026-12-01T10:00:00Z sh: 1: exec: gunicorn: not found", Some("gunicorn")),
            ("bash: line 1: node: command not found", Some("node")),
            ("sh: 1: exec: ./run server: not found", None),
            ("ImportError: module not found", None),
            ("", None),
        ];
        for (out, want) in cases {
            assert_eq!(missing_command(out).as_deref(), want, "{out}");
        }
    }

    #[test]
    fn exec_is_added_only_to_a_plain_command() {
        assert_eq!(exec_line("gunicorn app:app"), "exec gunicorn app:app");
        // An `exec` of its own is not doubled (`exec exec gunicorn` fails).
        assert_eq!(exec_line("exec gunicorn app:app"), "exec gunicorn app:app");
        assert_eq!(exec_line("(trap '' TERM; sleep 1) & gunicorn x"), "(trap '' TERM; sleep 1) & gunicorn x");
        assert_eq!(exec_line("a && b"), "a && b");
    }
}
