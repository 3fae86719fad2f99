//! Fixtures for the integration tests: each test gets a scratch git repository holding the real
//! example app, its own state dir and free loopback ports, and runs the real binaries with a
//! cleared environment. Processes a test's environments started are stopped when it ends.
#![allow(dead_code)]

use assert_cmd::Command;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const BINARIES: &[&str] = &["gate-tests", "deploy-staging", "smoke-check", "promote", "rollback", "collect-logs"];

/// The Python venv holding the example app's packages (made by scripts/setup).
pub fn venv() -> PathBuf {
    let v = std::env::var_os("SAFEDEPLOY_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    assert!(v.join("bin/gunicorn").is_file(), "{} has no gunicorn: run scripts/setup (scripts/test does)", v.display());
    v
}

/// PATH with the project's tools first (`.tools/bin`: nginx, installed by scripts/setup).
pub fn tools_path() -> String {
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/bin");
    assert!(tools.join("nginx").exists(), "{} has no nginx: run scripts/setup (scripts/test does)", tools.display());
    format!("{}:{}", tools.display(), std::env::var("PATH").unwrap_or_default())
}

/// A loopback port reserved for one test for as long as the lease lives: an environment's port,
/// or one that must stay unanswered. Leases come from below the kernel's ephemeral range, so no
/// app or server that binds port 0 (the platform's app ports, the test servers) can be handed
/// one, and each is held by a lock file, so parallel tests (nextest runs each in its own
/// process) never share one. The lock is released when the process ends, however it ends.
pub struct PortLease {
    pub port: u16,
    _lock: std::fs::File,
}

pub fn reserve_port() -> PortLease {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let ephemeral_low: u32 = range.split_whitespace().next().and_then(|p| p.parse().ok()).unwrap_or(32768);
    let (low, high) = (ephemeral_low.saturating_sub(12_000).max(1024), ephemeral_low);
    assert!(high > low + 100, "the ephemeral port range starts at {ephemeral_low}: no room below it for test ports");
    let dir = std::env::temp_dir().join("safedeploy-test-ports");
    std::fs::create_dir_all(&dir).expect("port lock dir");
    let span = high - low;
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let start = (std::process::id().wrapping_mul(7919) ^ nanos) % span;
    for i in 0..span {
        let port = (low + (start + i) % span) as u16;
        let Ok(lock) =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(format!("{port}.lock")))
        else {
            continue;
        };
        if lock.try_lock().is_err() {
            continue;
        }
        // Held by something outside the tests: not this one.
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        return PortLease { port, _lock: lock };
    }
    panic!("no free test port in {low}..{high}");
}

pub struct Project {
    _tmp: tempfile::TempDir,
    pub app: PathBuf,
    pub state: PathBuf,
    pub staging_port: u16,
    pub production_port: u16,
    _ports: [PortLease; 2],
}

/// An example's config with the deadlines of a test: a version that is not healthy in 15 s, or
/// an environment that does not serve it in 8 s, will not be.
fn fast_deadlines(config: String) -> String {
    config
        .replace(r#"health_timeout = "30s""#, r#"health_timeout = "15s""#)
        .replace(r#"stop_grace = "10s""#, r#"stop_grace = "3s""#)
        .replace("deadline = \"30s\"", "deadline = \"8s\"")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        let name = e.file_name();
        let n = name.to_string_lossy();
        if matches!(n.as_ref(), "__pycache__" | ".pytest_cache" | "reports" | ".safedeploy") {
            continue;
        }
        let (src, dst) = (e.path(), to.join(&name));
        if src.is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).expect("copy");
        }
    }
}

impl Project {
    /// The example app at v1, committed, with a config for fast tests: no per-version venv
    /// (the shared test venv is on the app's PATH), short deadlines.
    pub fn new() -> Self {
        Self::in_dirs("app", "state")
    }

    /// [`Project::new`] with the app's checkout and the state dir under these names (odd
    /// characters included).
    pub fn in_dirs(app_name: &str, state_name: &str) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let app = tmp.path().join(app_name);
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/url-shortener");
        copy_dir(&example, &app);
        let ports = [reserve_port(), reserve_port()];
        let (staging_port, production_port) = (ports[0].port, ports[1].port);
        let venv = venv();
        let bin = venv.join("bin");
        let config = std::fs::read_to_string(app.join("safedeploy.toml")).expect("example config");
        let config = fast_deadlines(config)
            .replace("127.0.0.1:8101", &format!("127.0.0.1:{staging_port}"))
            .replace("127.0.0.1:8102", &format!("127.0.0.1:{production_port}"))
            .replace(
                r#"command = "python3 -m venv .venv && .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt""#,
                r#"command = "true""#,
            )
            .replace(r#"path = [".venv/bin"]"#, &format!("path = [{:?}]", bin.display().to_string()))
            .replace(r#"["python3", "-m", "pytest""#, &format!(r#"[{:?}, "-m", "pytest", "-p", "no:cacheprovider""#, bin.join("python").display().to_string()));
        assert!(config.contains(r#"command = "true""#), "the example's build command changed; update tests/support");
        std::fs::write(app.join("safedeploy.toml"), config).expect("write config");
        // gunicorn imports the app once and forks its workers, instead of each worker importing
        // Flask: most of the suite's CPU is the app starting (see docs/design-notes.md).
        let procfile = std::fs::read_to_string(app.join("Procfile")).expect("example Procfile");
        let preloaded = procfile.replace(" --workers 2 ", " --workers 2 --preload ");
        assert_ne!(preloaded, procfile, "the example's Procfile changed; update tests/support");
        std::fs::write(app.join("Procfile"), preloaded).expect("write Procfile");
        Self::committed(tmp, app, state_name, ports, "URL shortener v1")
    }

    /// The app of `examples/<name>` as a user would take it, committed: its config as written
    /// but for its two `127.0.0.1:PORT` addresses (staging's first, then production's), moved
    /// to free ports, and deadlines short enough for tests.
    pub fn example(name: &str) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let app = tmp.path().join("app");
        copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name), &app);
        let ports = [reserve_port(), reserve_port()];
        let mut config = std::fs::read_to_string(app.join("safedeploy.toml")).expect("example config");
        let addresses: Vec<String> = regex::Regex::new(r"127\.0\.0\.1:\d+")
            .expect("regex")
            .find_iter(&config)
            .map(|m| m.as_str().to_string())
            .collect();
        assert_eq!(addresses.len(), 2, "examples/{name}/safedeploy.toml should name two addresses: {addresses:?}");
        for (from, lease) in addresses.iter().zip(&ports) {
            config = config.replace(from, &format!("127.0.0.1:{}", lease.port));
        }
        std::fs::write(app.join("safedeploy.toml"), fast_deadlines(config)).expect("write config");
        Self::committed(tmp, app, "state", ports, &format!("{name} v1"))
    }

    /// An app of `tests/fixtures/<name>`, committed, with `config` written as its
    /// `safedeploy.toml` (`{staging}` and `{production}` become the environments' ports,
    /// `{venv_bin}` the shared test venv's bin directory). No config when `config` is empty.
    pub fn fixture(name: &str, config: &str) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let app = tmp.path().join("app");
        copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name), &app);
        let ports = [reserve_port(), reserve_port()];
        if !config.is_empty() {
            let text = config
                .replace("{staging}", &ports[0].port.to_string())
                .replace("{production}", &ports[1].port.to_string())
                .replace("{venv_bin}", &venv().join("bin").display().to_string());
            std::fs::write(app.join("safedeploy.toml"), text).expect("write config");
        }
        Self::committed(tmp, app, "state", ports, "The app, v1")
    }

    /// [`Project::new`] laid out as this repository is, for a Jenkinsfile that runs in the
    /// repository's checkout: the workspace `ws/` is the git root, the app is
    /// `ws/examples/url-shortener`, and the state dir is where the tools' default puts it for
    /// `XDG_STATE_HOME=<tmp>/xdg` (`xdg/safedeploy/url-shortener`).
    pub fn in_workspace() -> Self {
        let p = Self::in_dirs("ws/examples/url-shortener", "xdg/safedeploy/url-shortener");
        std::fs::remove_dir_all(p.app.join(".git")).expect("the app's own repository");
        let ws = p.app.ancestors().nth(2).expect("ws").to_path_buf();
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git").args(args).current_dir(&ws).output().expect("git");
            assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        git(&["init", "-q", "-b", "main"]);
        p.commit_all("URL shortener v1", "Team");
        p
    }

    /// The checkout a Jenkinsfile runs in: the app's git root.
    pub fn workspace(&self) -> PathBuf {
        PathBuf::from(self.git(&["rev-parse", "--show-toplevel"]).trim())
    }

    /// The XDG state home under which the tools' default state dir is this project's state dir
    /// (a project made with the state dir `…/safedeploy/url-shortener`; see
    /// [`Project::in_workspace`]).
    pub fn xdg_state_home(&self) -> PathBuf {
        assert!(
            self.state.ends_with("safedeploy/url-shortener"),
            "{} is not where the default state dir would be: no XDG state home holds it",
            self.state.display()
        );
        self.state.ancestors().nth(2).expect("xdg").to_path_buf()
    }

    fn committed(tmp: tempfile::TempDir, app: PathBuf, state_name: &str, ports: [PortLease; 2], message: &str) -> Self {
        let p = Project {
            state: tmp.path().join(state_name),
            _tmp: tmp,
            app,
            staging_port: ports[0].port,
            production_port: ports[1].port,
            _ports: ports,
        };
        p.git(&["init", "-q", "-b", "main"]);
        p.commit_all(message, "Team");
        p
    }

    pub fn git(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args(["-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"])
            .args(args)
            .current_dir(&self.app)
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn commit_all(&self, message: &str, author: &str) {
        self.git(&["add", "-A"]);
        self.git(&["-c", &format!("user.name={author}"), "commit", "-qm", message]);
    }

    /// Commits v2 of the incident: `json.loads(urls_file)`.
    pub fn commit_incident(&self) {
        let patch = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/url-shortener/incident/v2.patch");
        self.git(&["apply", &patch.to_string_lossy()]);
        self.commit_all("Read the stored URLs with json.loads", "New Hire");
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.app.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    pub fn config_path(&self) -> PathBuf {
        self.app.join("safedeploy.toml")
    }

    pub fn edit_config(&self, f: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(self.config_path()).expect("config");
        std::fs::write(self.config_path(), f(text)).expect("write config");
    }

    /// A binary, run in the app's directory with a cleared environment.
    pub fn cmd(&self, bin: &str) -> Command {
        let mut c = Command::cargo_bin(bin).expect("binary");
        c.current_dir(&self.app)
            .env_clear()
            .env("PATH", tools_path())
            .env("HOME", std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()))
            .env("SAFEDEPLOY_STATE_DIR", &self.state)
            .timeout(Duration::from_secs(120));
        c
    }

    pub fn url(&self, env: &str) -> String {
        let port = if env == "staging" { self.staging_port } else { self.production_port };
        format!("http://127.0.0.1:{port}")
    }

    /// GET a path of an environment: (status, body), or None when nothing answers.
    pub fn get(&self, env: &str, path: &str) -> Option<(u16, String)> {
        let client = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        let r = client.get(format!("{}{path}", self.url(env))).send().ok()?;
        Some((r.status().as_u16(), r.text().unwrap_or_default()))
    }

    pub fn served_version(&self, env: &str) -> Option<String> {
        let (status, body) = self.get(env, "/version")?;
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        v["version"].as_str().map(str::to_string)
    }

    /// The ledger, for queries. Opened read-write (never created) so that closing it removes the
    /// WAL files, as the binaries' own connections do; a read-only connection would leave them.
    pub fn ledger(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.state.join("ledger.sqlite3"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE,
        )
        .expect("ledger")
    }

    pub fn query_i64(&self, sql: &str) -> i64 {
        self.ledger().query_row(sql, [], |r| r.get(0)).expect(sql)
    }

    pub fn query_strings(&self, sql: &str) -> Vec<String> {
        let c = self.ledger();
        let mut st = c.prepare(sql).expect(sql);
        st.query_map([], |r| r.get::<_, String>(0)).expect(sql).map(|r| r.expect("row")).collect()
    }

    /// The pid of the nginx in front of an environment.
    pub fn nginx_pid(&self, env: &str) -> Option<i32> {
        let text = std::fs::read_to_string(self.state.join(format!("local/envs/{env}/nginx/nginx.pid"))).ok()?;
        text.trim().parse().ok()
    }

    /// The supervisor pid recorded for an environment.
    /// The process group of the version kept warm in `env`, if one is recorded.
    pub fn warm_pid(&self, env: &str) -> Option<i32> {
        let text = std::fs::read_to_string(self.state.join(format!("local/envs/{env}/warm.json"))).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v["state"]["pid"].as_i64().map(|p| p as i32)
    }

    pub fn env_pid(&self, env: &str) -> Option<i32> {
        let text = std::fs::read_to_string(self.state.join(format!("local/envs/{env}/state.json"))).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v["pid"].as_i64().map(|p| p as i32)
    }

    /// Deploys v1 to staging, verifies it, promotes it and verifies production.
    pub fn v1_everywhere(&self) {
        self.cmd("deploy-staging").args(["--version", "v1"]).assert().success();
        self.cmd("smoke-check").args(["--env", "staging", "--record"]).assert().success();
        self.cmd("promote").assert().success();
        self.cmd("smoke-check").args(["--env", "production", "--record"]).assert().success();
    }
}

impl Project {
    /// The incident: v1 everywhere, then v2 forced into production, where its smoke check fails
    /// (recorded).
    pub fn v2_failing_in_production(&self) {
        self.v2_forced_into_production();
        self.cmd("smoke-check").args(["--env", "production", "--record"]).assert().code(1);
    }

    /// v1 everywhere, then the incident's v2 forced into production past every check (no check
    /// of it recorded there yet).
    pub fn v2_forced_into_production(&self) {
        self.v1_everywhere();
        self.commit_incident();
        self.cmd("deploy-staging").args(["--version", "v2"]).assert().success();
        self.cmd("promote")
            .args(["--version", "v2", "--skip-pre-traffic", "forced", "--force", "--reason", "test"])
            .assert()
            .success();
    }
}

/// The `sh '...'` steps in a piece of a Jenkinsfile that call a safedeploy binary, in order.
/// A step is `sh '...'` on one line, or `sh '''...'''` over several (Groovy's `\\` before a
/// newline is the shell's line continuation).
pub fn jenkins_steps(text: &str) -> Vec<String> {
    let mut steps = vec![];
    let mut lines = text.lines().map(str::trim);
    while let Some(l) = lines.next() {
        if let Some(first) = l.strip_prefix("sh '''") {
            let mut step = first.to_string();
            while !step.ends_with("'''") {
                let Some(next) = lines.next() else { break };
                step = format!("{} {next}", step.trim_end_matches('\\').trim_end());
            }
            steps.push(step.trim_end_matches("'''").to_string());
        } else if let Some(cmd) = l.strip_prefix("sh '").and_then(|r| r.strip_suffix('\'')) {
            steps.push(cmd.to_string());
        }
    }
    let tools = || BINARIES.iter().chain(&["safedeploy"]);
    steps.into_iter().filter(|cmd| tools().any(|b| cmd.starts_with(&format!("{b} ")) || cmd == b)).collect()
}

/// A file of this repository, as text.
pub fn repo_file(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).expect(rel)
}

impl Project {
    /// A Jenkinsfile `sh` step, run as Jenkins would: through `sh -c`, in the app's checkout,
    /// with the built binaries first on PATH and the project's state and config.
    pub fn sh_step(&self, step: &str) -> std::process::Command {
        let bin_dir = assert_cmd::cargo::cargo_bin("rollback").parent().expect("dir").to_path_buf();
        let mut c = std::process::Command::new("sh");
        c.args(["-c", step])
            .current_dir(&self.app)
            .env("PATH", format!("{}:{}", bin_dir.display(), tools_path()))
            .env("SAFEDEPLOY_STATE_DIR", &self.state)
            .env("SAFEDEPLOY_CONFIG", self.config_path());
        c
    }

    /// Asserts that SQLite finds the ledger intact.
    pub fn assert_ledger_intact(&self) {
        let check: String =
            self.ledger().query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("integrity_check");
        assert_eq!(check, "ok");
    }
}

/// Whether the process exists and is not a zombie.
pub fn process_running(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().next()).is_some_and(|s| s != "Z" && s != "X")
}

/// Whether any process of the group is running (zombies excluded).
pub fn group_alive(pgid: i32) -> bool {
    std::fs::read_dir("/proc").expect("/proc").flatten().any(|e| {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { return false };
        let Some((_, rest)) = stat.rsplit_once(')') else { return false };
        let f: Vec<&str> = rest.split_whitespace().collect();
        f.len() > 2 && f[2].parse::<i32>().ok() == Some(pgid) && f[0] != "Z"
    })
}

impl Drop for Project {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, kill, killpg};
        use nix::unistd::Pid;
        for env in ["staging", "production"] {
            let dir = self.state.join(format!("local/envs/{env}"));
            let mut pids: Vec<i32> = self.env_pid(env).into_iter().collect();
            for f in ["starting.json", "retiring.json"] {
                let text = std::fs::read_to_string(dir.join(f)).unwrap_or_default();
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                for s in v.as_array().cloned().unwrap_or_else(|| vec![v]) {
                    pids.extend(s["pid"].as_i64().map(|p| p as i32));
                }
            }
            pids.extend(self.warm_pid(env));
            for pid in pids {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            if let Some(pid) = self.nginx_pid(env) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        // Whatever the records no longer name (a test that failed half-way, a record it
        // corrupted on purpose): every process working under the state dir, with its group.
        let state = self.state.display().to_string();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            let cwd = std::fs::read_link(e.path().join("cwd")).map(|p| p.display().to_string()).unwrap_or_default();
            if cwd.starts_with(&state) && pid != std::process::id() as i32 {
                if let Ok(group) = nix::unistd::getpgid(Some(Pid::from_raw(pid)))
                    && group != nix::unistd::getpgrp()
                {
                    let _ = killpg(group, Signal::SIGKILL);
                }
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

/// Starts `cmd`, waits (up to a minute) until `ready` says so, then sends SIGTERM as a Jenkins
/// abort would; returns the exit code and stderr.
pub fn abort_when(mut cmd: std::process::Command, ready: impl Fn() -> bool) -> (Option<i32>, String) {
    let child = cmd.stderr(std::process::Stdio::piped()).spawn().expect("spawn");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !ready() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .expect("kill");
    let out = child.wait_with_output().expect("wait");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// stdout and stderr of an assert, as text.
pub fn output(a: &assert_cmd::assert::Assert) -> (String, String) {
    let o = a.get_output();
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// Compares the section of docs/RELIABILITY.md between `<!-- NAME:begin -->` and
/// `<!-- NAME:end -->` with `table`, which the calling test produced from what it observed; the
/// test fails when they differ. `SAFEDEPLOY_BLESS=1` rewrites the section instead (under a lock,
/// as test binaries run in parallel). The observed table is also written to
/// `target/reliability/NAME.md`.
pub fn check_doc_section(name: &str, table: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = root.join("target/reliability");
    std::fs::create_dir_all(&out).expect("target/reliability");
    std::fs::write(out.join(format!("{name}.md")), table).expect("write table");
    let lock = std::fs::File::create(out.join(".lock")).expect("lock file");
    lock.lock().expect("lock");
    let doc_path = root.join("docs/RELIABILITY.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap_or_default();
    let (start, end) = (format!("<!-- {name}:begin -->\n"), format!("<!-- {name}:end -->"));
    let (Some(a), Some(b)) = (doc.find(&start), doc.find(&end)) else {
        panic!("{} lacks the {start:?} … {end:?} markers", doc_path.display())
    };
    if &doc[a + start.len()..b] == table {
        return;
    }
    if std::env::var_os("SAFEDEPLOY_BLESS").is_some() {
        std::fs::write(&doc_path, format!("{}{table}{}", &doc[..a + start.len()], &doc[b..])).expect("bless");
    } else {
        panic!(
            "docs/RELIABILITY.md's {name} table differs from what the suite observed (target/reliability/{name}.md); \
             rerun with SAFEDEPLOY_BLESS=1 to record it"
        );
    }
}

impl Project {
    /// Processes of this project's environments that no record accounts for: every process
    /// whose working directory is under the state dir, or whose command line names it, must be
    /// in the process group of a version `state.json` records or of an environment's nginx.
    /// Described as `pid (command)`.
    pub fn stray_processes(&self) -> Vec<String> {
        let state = self.state.display().to_string();
        let mut groups: Vec<i32> = ["staging", "production"].iter().filter_map(|e| self.env_pid(e)).collect();
        groups.extend(["staging", "production"].iter().filter_map(|e| self.nginx_pid(e)));
        groups.extend(["staging", "production"].iter().filter_map(|e| self.warm_pid(e)));
        let mut out = vec![];
        for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            let cwd = std::fs::read_link(e.path().join("cwd")).map(|p| p.display().to_string()).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&std::fs::read(e.path().join("cmdline")).unwrap_or_default())
                .replace('\0', " ");
            if !(cwd.starts_with(&state) || cmdline.contains(&state)) {
                continue;
            }
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
            let Some((_, rest)) = stat.rsplit_once(')') else { continue };
            let f: Vec<&str> = rest.split_whitespace().collect();
            if f.first().is_some_and(|s| *s == "Z") {
                continue;
            }
            let pgid = f.get(2).and_then(|p| p.parse::<i32>().ok()).unwrap_or(0);
            if !groups.contains(&pgid) {
                out.push(format!("{pid} ({})", cmdline.trim()));
            }
        }
        out
    }
}

/// Holds request and answer bodies to the official Datadog and Slack clients' models
/// (`scripts/check-notify-shapes.py`); `kind` is `datadog_event`, `datadog_monitor` or
/// `slack_webhook`. Panics naming each departure.
pub fn check_shapes(shapes: &[(&str, serde_json::Value)]) {
    let doc: Vec<serde_json::Value> = shapes.iter().map(|(k, b)| serde_json::json!({"kind": k, "body": b})).collect();
    let file = std::env::temp_dir().join(format!("shapes-{}-{}.json", std::process::id(), safedeploy::clock::now_ms()));
    std::fs::write(&file, serde_json::to_vec(&doc).expect("json")).expect("write");
    let out = std::process::Command::new(venv().join("bin/python3"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check-notify-shapes.py"))
        .arg(&file)
        .output()
        .expect("python");
    std::fs::remove_file(&file).ok();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "a body departs from the official clients' models:\n{said}");
}

/// PATH of a Jenkins agent that has the app's test tools (the shared test venv) and nginx.
pub fn agent_path() -> String {
    format!("{}:{}", venv().join("bin").display(), tools_path())
}

/// The build init wrote, swapped for the shared test venv (no PyPI in the tests).
pub fn fast_build(p: &Project) {
    let bin = venv().join("bin");
    p.edit_config(|c| {
        let before = c.clone();
        let c = c
            .replace(
                r#"command = "python3 -m venv .venv && .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt""#,
                r#"command = "true""#,
            )
            .replace(r#"path = [".venv/bin"]"#, &format!("path = [{:?}]", bin.display().to_string()));
        assert_ne!(c, before, "init's build lines changed; update this test");
        c
    });
}

/// Users visiting `paths` of `base` in turn, one request every `pause`, until `stop` is set
/// (bounded: two minutes). Returns how many requests were sent; their answers are not judged.
pub fn users_on(
    base: String,
    paths: &'static [&'static str],
    pause: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
        let until = std::time::Instant::now() + Duration::from_secs(120);
        let mut sent = 0u64;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) && std::time::Instant::now() < until {
            let _ = client.get(format!("{base}{}", paths[(sent % paths.len() as u64) as usize])).send();
            sent += 1;
            std::thread::sleep(pause);
        }
        sent
    })
}

/// The console lines that are the product's contract, step by step, as exact text for a
/// snapshot (`insta`): each step's command and exit code, its stdout (the summary), and the
/// lines of its stderr that say a result (check lines, errors, hints, warnings). Progress lines
/// are left out: under load they come and go ("waiting for ... to answer"). What changes from
/// run to run (ports, durations, times, commit ids, short codes, run ids) is replaced by a name
/// in angle brackets, so a reworded verdict fails the test and a slower machine does not.
#[derive(Default)]
pub struct Transcript(String);

impl Transcript {
    /// A step: its summary, check lines, errors, hints and warnings.
    pub fn step(&mut self, p: &Project, what: &str, a: &assert_cmd::assert::Assert) {
        let (out, err) = output(a);
        self.said(p, what, a.get_output().status.code(), &out, &err, true);
    }

    /// A collect-logs step: as [`Transcript::step`], with its groups' lines in sorted order.
    /// Groups come in first-seen order, to the second of the app's log stamps: a traceback and
    /// the access line of the same request fall in one second or in two as the clock goes, so
    /// their order is not part of the contract (the suspect line stays last).
    pub fn groups_step(&mut self, p: &Project, what: &str, a: &assert_cmd::assert::Assert) {
        let (out, err) = output(a);
        let mut lines: Vec<&str> = out.lines().collect();
        let slots: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].starts_with("  ") && !lines[i].trim_start().starts_with("suspect:"))
            .collect();
        let mut groups: Vec<&str> = slots.iter().map(|&i| lines[i]).collect();
        groups.sort_unstable();
        for (&i, g) in slots.iter().zip(groups) {
            lines[i] = g;
        }
        self.said(p, what, a.get_output().status.code(), &lines.join("\n"), &err, true);
    }

    /// A step whose checks run a varying number of rounds (a canary): its summary, errors,
    /// hints and warnings only.
    pub fn verdict(&mut self, p: &Project, what: &str, o: &std::process::Output) {
        let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        self.said(p, what, o.status.code(), &out, &err, false);
    }

    fn said(&mut self, p: &Project, what: &str, code: Option<i32>, out: &str, err: &str, checks: bool) {
        let code = code.map_or("a signal".to_string(), |c| c.to_string());
        self.0 += &format!("$ {what}  → exit {code}\n");
        let kinds: &[&str] =
            if checks { &["ok ", "FAIL ", "skip ", "hint: ", "warning: "] } else { &["hint: ", "warning: "] };
        // A failed check's detail lines (indented under it, as the gate's failed tests) too.
        let mut under_fail = false;
        let said = |l: &&str| {
            let t = l.trim_start();
            if l.starts_with("       ") && !t.is_empty() {
                return under_fail;
            }
            under_fail = checks && t.starts_with("FAIL ");
            kinds.iter().any(|k| t.starts_with(k)) || l.contains(" error: ")
        };
        let lines = out.lines().map(|l| format!("  {l}"));
        for line in lines.chain(err.lines().filter(said).map(|l| format!("  2> {}", l.trim_start()))) {
            self.0 += &stable_text(p, &line);
            self.0 += "\n";
        }
    }

    pub fn text(&self) -> &str {
        &self.0
    }
}

/// `text` with what changes from run to run replaced by names in angle brackets.
pub fn stable_text(p: &Project, text: &str) -> String {
    let t = text
        .replace(&p.state.display().to_string(), "<state>")
        .replace(&p.app.display().to_string(), "<app>")
        .replace(env!("CARGO_MANIFEST_DIR"), "<repo>");
    let rules: &[(&str, &str)] = &[
        (r"\d{4}-\d\d-\d\dT[0-9:.]+Z", "<time>"),
        (r"\b\d{4}-01-01\b", "<year>-01-01"),
        (r"\[\d\d/\w{3}/\d{4}(:\d\d){3} \+0000\]", "[<time>]"),
        (r"(HTTP/1\.1\x22 \d{3}) \d+", "$1 <size>"),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:<port>"),
        (r"\bport \d+", "port <port>"),
        (r"\b[0-9a-f]{40}\b", "<commit>"),
        (r"\bcommit [0-9a-f]{7,12}\b", "commit <commit>"),
        (r"/smoke/[0-9a-f]{8,}", "/smoke/<run>"),
        (r"\b[0-9a-f]{12}\b", "<commit>"),
        (r"safedeploy/\d+\.\d+\.\d+", "safedeploy/<version>"),
        (r#"("\w+_ms"):\d+"#, "$1:<ms>"),
        (r"\b\d+(\.\d+)?\s?(ms|s)\b", "<t>"),
        (r"×\d+", "×<n>"),
    ];
    let mut t = t;
    for (pat, rep) in rules {
        t = regex::Regex::new(pat).expect("regex").replace_all(&t, *rep).into_owned();
    }
    // The app's short codes (six letters or digits after the address), not its named routes.
    regex::Regex::new(r"<port>/([A-Za-z0-9]{6})\b")
        .expect("regex")
        .replace_all(
            &t,
            |c: &regex::Captures<'_>| {
                if &c[1] == "health" { c[0].to_string() } else { "<port>/<code>".to_string() }
            },
        )
        .into_owned()
}
