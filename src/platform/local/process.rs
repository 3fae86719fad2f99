//! The app's processes: its command line (the web and release lines, under the supervisor,
//! with the environment the config gives it), starting it, waiting until its health path
//! answers, and stopping its process group.

use super::*;

impl Local<'_> {
    /// Whether `pid` is still one of our supervisors (guards against pid reuse).
    pub(super) fn is_supervisor(&self, pid: i32) -> bool {
        self.reap();
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(SUPERVISOR))
            .unwrap_or(false)
    }

    /// Whether any process of the group is still running. Zombies do not count: an orphaned
    /// supervisor waits for PID 1 to reap it, which some container inits do slowly.
    pub(super) fn group_alive(&self, pgid: i32) -> bool {
        self.reap();
        crate::procs::any_running(pgid)
    }

    pub(super) fn reap(&self) {
        if let Ok(mut children) = self.children.lock() {
            children.retain(|h| matches!(h.try_wait(), Ok(None)));
        }
    }

    /// Whether process group `pgid` is ours to signal: its supervisor runs, or its processes
    /// work in this platform's directories (a supervisor killed with -9 leaves its app running
    /// in the group). A recorded pid that the system has since given to another process is not.
    pub(super) fn owns_group(&self, pgid: i32) -> bool {
        self.is_supervisor(pgid) || crate::procs::group_works_under(pgid, &self.root)
    }

    /// TERM to the group, up to the grace period, then KILL, when it is ours
    /// ([`Local::owns_group`]).
    pub(super) fn stop_group(&self, env: &str, state: &EnvState) -> Result<()> {
        let grace = self.deploy.stop_grace.0;
        let pid = state.pid;
        self.fx.exec.effect(
            || format!("stop {env} ({}): kill -TERM -- -{pid}, then -KILL after {}s", state.label, grace.as_secs()),
            || {
                if !self.owns_group(pid) {
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

    /// The web command: `deploy.command`, else the version's `Procfile` `web:` line.
    /// Read from the built version (a working copy holds the same Procfile, and in a dry run
    /// none is made).
    pub(super) fn web_command(&self, label: &str) -> Result<String> {
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
    pub(super) fn release_line(&self, label: &str) -> Result<Option<String>> {
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

    pub(super) fn supervisor_path() -> Result<PathBuf> {
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
    pub(super) fn answers_health(&self, port: u16) -> bool {
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
    pub(super) fn app_path(&self, dir: &Path) -> Vec<String> {
        let build = self.build.path.iter().map(|p| dir.join(p.as_str()).to_string_lossy().into_owned());
        build.chain(self.deploy.system_path.iter().map(|d| d.to_string())).collect()
    }

    /// The app's command: the supervisor running the web line, with the app's environment.
    /// `data`: a copy of the environment's data dir to run on instead of it.
    pub(super) fn app_command(
        &self,
        env: &Environment,
        label: &str,
        dir: &Path,
        port: u16,
        data: Option<&Path>,
    ) -> Result<Cmd> {
        let web = self.web_command(label)?;
        self.supervised(env, label, dir, &web, Some(port), data)
    }

    /// A shell line of the app's (its web line, its release) under the supervisor, in its
    /// working copy `dir`, with the app's environment; `port` for a web line; `data` for a
    /// copy of the environment's data dir. The config's variables for the app come last, their
    /// `${…}` expanded with the same values the app gets.
    pub(super) fn supervised(
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
    pub(super) fn wait_healthy(&self, h: Health<'_>) -> Result<()> {
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
            return Err(self.exited_during_start(env, label, dir, &status, &tail()));
        }
        match answer {
            Ok(r) if (200..300).contains(&r.status) => match group {
                // The answer counts only if it came from the version's own processes.
                Some(g) => ports::owned_by(port, g).map_err(|holders| taken(&holders).into()),
                None => Ok(()),
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

    /// The verdict on a version that exited while it started (`status`), with its last output:
    /// naming the command it lacked when its output says one was not found.
    fn exited_during_start(
        &self,
        env: &Environment,
        label: &str,
        dir: &Path,
        status: &str,
        said: &str,
    ) -> anyhow::Error {
        let Some(missing) = missing_command(said) else {
            return verdict!("{label} exited during start-up in {} ({status}); its last output:{said}", env.name);
        };
        crate::error::Error::verdict(format!(
            "{label} exited during start-up in {} ({status}): `{missing}` is not on the app's PATH ({}); its last output:{said}",
            env.name,
            self.app_path(dir).join(":"),
        ))
        .with_hint(format!(
            "the app runs on what its build installed and on deploy.system_path: install {missing} in the build (for Python, add it to requirements.txt), or add its directory to build.path"
        ))
        .into()
    }

    /// A version whose health path answers the same redirect or client error poll after poll:
    /// a verdict when the version serving the environment answers that path with a 2xx (the
    /// candidate broke its health route), else a configuration mistake (exit 2, nothing marked
    /// bad): the path is no health route for any version.
    pub(super) fn steady_answer(
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

    /// Stops whatever app version `env` runs and records it as stopped.
    pub(super) fn stop_app(&self, env: &Environment) -> Result<()> {
        if let Some(w) = self.read_warm(&env.name)? {
            self.stop_group(&env.name, &w.state)?;
            self.record(&env.name, Record::Warm(None))?;
        }
        if let Some(old) = self.read_state(&env.name)? {
            self.stop_group(&env.name, &old)?;
            self.record(&env.name, Record::Serving(None))?;
        }
        Ok(())
    }
}

/// The last `n` lines written to `path` after byte `from`, indented, for error messages. Only
/// the last 256 KiB are read: an app can write a lot before it dies.
pub(super) fn log_tail(path: &Path, from: u64, n: usize) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(from.max(len.saturating_sub(256 * 1024))));
        let _ = f.read_to_end(&mut bytes);
    }
    let tail = crate::exec::tail_of(&bytes, n);
    if tail.is_empty() { " (none)".into() } else { tail }
}

/// The app's port was taken by another process before, or while, the app bound it: not a
/// verdict on the version (it never got to serve), so the start is tried again elsewhere.
#[derive(Debug, thiserror::Error)]
#[error("port {port} was taken by {holder} before {label} could listen on it")]
pub(super) struct PortTaken {
    port: u16,
    label: String,
    holder: String,
}

/// The web line as `sh -c` runs it: a plain command is `exec`ed, so the app itself is the
/// supervisor's child and gets its signals first; a line that already says `exec`, or that is
/// more than one command (`;`, `&`, `|`, a subshell), runs as written (the whole process group
/// is stopped either way).
pub(super) fn exec_line(web: &str) -> String {
    let compound = web.contains([';', '&', '|', '(', ')', '\n', '`']) || web.contains("$(");
    let first = web.split_whitespace().next().unwrap_or_default();
    if compound || first == "exec" { web.to_string() } else { format!("exec {web}") }
}

/// A port as a plan shows it: in a dry run no port is picked (0), and the real run takes a free one.
pub(super) fn port_text(port: u16) -> String {
    if port == 0 { "<a free port>".into() } else { port.to_string() }
}

/// The command a shell could not find, from its last output (`sh: 1: exec: gunicorn: not
/// found`, bash's `gunicorn: command not found`, `env: 'node': No such file or directory`).
pub(super) fn missing_command(output: &str) -> Option<String> {
    static SHELL: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?:^|\s)(?:/bin/|/usr/bin/)?(?:ba|da|z)?sh:(?: line)? ?\d*:? (?:exec: )?([^\s:]+): (?:command )?not found$")
            .expect("a valid pattern")
    });
    output.lines().rev().find_map(|l| SHELL.captures(l.trim()).map(|c| c[1].to_string()))
}

/// Whether an app's last output says its port was in use (gunicorn: "Connection in use";
/// Python, Node, Go, Java: "Address already in use" / EADDRINUSE).
pub(super) fn says_port_in_use(output: &str) -> bool {
    let o = output.to_ascii_lowercase();
    ["address already in use", "eaddrinuse", "connection in use", "address in use"].iter().any(|s| o.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

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
