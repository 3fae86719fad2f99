//! The reverse proxy in front of a local environment, as Elastic Beanstalk puts nginx in front
//! of apps: one nginx per environment owns the environment's port and forwards to the app
//! version that currently serves, on a port of its own. Switching versions rewrites the
//! upstream and reloads nginx gracefully: new connections go to the new version at once, the
//! old workers finish what they carry, and only then is the old version stopped. So a deploy,
//! promote or rollback drops no request.
//!
//! Client keep-alive is off: a reload closes idle keep-alive connections, and a client that
//! sends its next request on one at that instant sees it fail (the keep-alive race). One
//! loopback connect per request is the price of never dropping one.
//!
//! Under `<state>/local/envs/<env>/nginx/`: `nginx.conf` (generated), `nginx.pid`,
//! `access.log` and `error.log` (nginx's own formats, which collect-logs reads), `tmp/`.

use crate::could_not_act;
use crate::effects::Effects;
use crate::error::Error;
use crate::exec::Cmd;
use anyhow::{Context, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The response header nginx adds to every answer it forwards (and to its own error pages):
/// the label of the version it sent the request to. smoke-check waits on it when the app has
/// no version route of its own.
pub const VERSION_HEADER: &str = "X-Safedeploy-Version";

/// Under a canary: one line per request, `$msec "$upstream_addr" "$upstream_status" $status`.
pub const SPLIT_LOG: &str = "split.log";

/// One version nginx forwards to, and its share of the requests (a weight; 100 when alone).
#[derive(Debug, Clone, Copy)]
pub struct Backend<'l> {
    pub port: u16,
    pub label: &'l str,
    pub weight: u8,
}

/// How many times nginx is started when its bind is lost to a socket that then goes away.
const START_ATTEMPTS: usize = 3;

/// How one start of nginx ended.
enum Started {
    Up(Option<Box<duct::Handle>>),
    /// It could not bind the environment's port; what it said.
    PortInUse(String),
}

pub struct Nginx<'a> {
    fx: &'a Effects,
    /// How long old workers get to finish their requests after a switch.
    drain: Duration,
    program: PathBuf,
    dir: PathBuf,
    /// The environment's listening sockets (inodes) and the master that holds them: looked up
    /// once, as the sockets live as long as the master (where the kernel gives no netlink
    /// answer, the lookup reads `/proc/net/tcp`: a hundred milliseconds on a machine with
    /// thousands of connections in TIME_WAIT).
    sockets: std::sync::Mutex<Option<(i32, HashSet<u64>)>>,
}

/// Finds the nginx program: a path, or a name looked up on `PATH` and in the sbin directories
/// (Debian installs it as /usr/sbin/nginx, often not on a user's PATH).
pub fn locate(name: &str, path: &str) -> Result<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return if p.is_file() { Ok(p) } else { Err(missing(name)) };
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| missing(name))
}

fn missing(name: &str) -> anyhow::Error {
    crate::error::Error::could_not_act(format!("deploy.proxy: {name} not found (on PATH or in /usr/sbin)"))
        .with_hint(
            "scripts/setup installs nginx into .tools/bin; or apt-get install nginx; or set deploy.proxy = \"none\" \
             (stop, then start: requests are dropped during a deploy)",
        )
        .into()
}

impl<'a> Nginx<'a> {
    pub fn new(fx: &'a Effects, program: PathBuf, env_dir: &Path, drain: Duration) -> Self {
        Nginx { fx, drain, program, dir: env_dir.join("nginx"), sockets: Default::default() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn conf_path(&self) -> PathBuf {
        self.dir.join("nginx.conf")
    }

    fn control(&self, args: &[&str]) -> Cmd {
        let mut argv = vec![
            self.program.to_string_lossy().into_owned(),
            "-p".into(),
            format!("{}/", self.dir.display()),
            "-c".into(),
            self.conf_path().to_string_lossy().into_owned(),
            "-e".into(),
            self.dir.join("error.log").to_string_lossy().into_owned(),
        ];
        argv.extend(args.iter().map(|a| a.to_string()));
        // Its working directory is its own dir: every nginx process of this environment, an
        // orphaned worker too, is known by it.
        Cmd::new(argv).dir(&self.dir)
    }

    /// The configuration. Every path in it is relative to the prefix (`-p`, this environment's
    /// nginx dir, given on the command line), so no path of the state dir is ever parsed by
    /// nginx: a state dir with spaces, quotes, `$` or `;` cannot break it.
    ///
    /// With more than one backend (a canary), requests are shared by weight, the version
    /// header names the backend that answered, and `split.log` records which backend answered
    /// each request and how ([`SPLIT_LOG`]).
    fn render(&self, listen: &str, backends: &[Backend<'_>]) -> String {
        // As root, the workers (what talks to users) run as an unprivileged user: `nobody`
        // with its own group. They never touch the private state dir: the master opens the
        // logs, and bodies and answers are never buffered to temp files (below).
        let user = worker_user();
        let servers: String = backends
            .iter()
            .map(|b| match backends.len() {
                1 => format!("server 127.0.0.1:{}; ", b.port),
                _ => format!("server 127.0.0.1:{} weight={}; ", b.port, b.weight.max(1)),
            })
            .collect();
        let (split, version) = match backends {
            [only] => (String::new(), format!("\"{}\"", only.label)),
            _ => {
                let arms: String = backends.iter().map(|b| format!(" \"~:{}$\" \"{}\";", b.port, b.label)).collect();
                (
                    format!(
                        "\x20 map $upstream_addr $safedeploy_version {{ default \"-\";{arms} }}\n\
                         \x20 log_format safedeploy_split '$msec \"$upstream_addr\" \"$upstream_status\" $status \"$upstream_response_time\"';\n\
                         \x20 access_log {SPLIT_LOG} safedeploy_split;\n"
                    ),
                    "$safedeploy_version".to_string(),
                )
            }
        };
        format!(
            "# Generated by safedeploy for this environment; rewritten at every switch.\n\
             # Paths are relative to the prefix nginx is started with (-p): this directory.\n\
             {user}daemon off;\nmaster_process on;\nworker_processes 1;\npid nginx.pid;\n\
             error_log error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n\
             \x20 access_log access.log combined;\n\
             {split}\
             \x20 client_body_temp_path tmp/body;\n\
             \x20 proxy_temp_path tmp/proxy;\n\
             \x20 fastcgi_temp_path tmp/fastcgi;\n\
             \x20 uwsgi_temp_path tmp/uwsgi;\n\
             \x20 scgi_temp_path tmp/scgi;\n\
             \x20 client_max_body_size 10m;\n\
             \x20 client_body_buffer_size 10m;\n\
             \x20 proxy_max_temp_file_size 0;\n\
             \x20 keepalive_timeout 0;\n\
             \x20 upstream app {{ {servers}keepalive 16; }}\n\
             \x20 server {{\n\
             \x20   listen {listen};\n\
             \x20   location / {{\n\
             \x20     proxy_pass http://app;\n\
             \x20     proxy_http_version 1.1;\n\
             \x20     proxy_set_header Connection \"\";\n\
             \x20     proxy_set_header Host $http_host;\n\
             \x20     proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
             \x20     proxy_set_header X-Forwarded-Proto $scheme;\n\
             \x20     proxy_redirect off;\n\
             \x20     proxy_hide_header {VERSION_HEADER};\n\
             \x20     add_header {VERSION_HEADER} {version} always;\n\
             \x20   }}\n\
             \x20 }}\n\
             }}\n"
        )
    }

    fn write_conf(&self, listen: &str, backends: &[Backend<'_>]) -> Result<()> {
        let said: Vec<String> = backends
            .iter()
            .map(|b| match b.port {
                0 => format!("{} on 127.0.0.1:<its port>", b.label),
                p => format!("{} on 127.0.0.1:{p}", b.label),
            })
            .collect();
        let shares: Vec<String> = backends.iter().map(|b| format!("{} {}%", b.label, b.weight)).collect();
        self.fx.exec.effect(
            || match backends.len() {
                1 => format!("point {} at {}", self.conf_path().display(), said.join("")),
                _ => format!("point {} at {} ({})", self.conf_path().display(), said.join(" and "), shares.join(", ")),
            },
            || {
                std::fs::create_dir_all(self.dir.join("tmp"))?;
                let tmp = self.conf_path().with_extension("conf.tmp");
                std::fs::write(&tmp, self.render(listen, backends))?;
                std::fs::rename(&tmp, self.conf_path())
                    .with_context(|| format!("writing {}", self.conf_path().display()))
            },
        )?;
        Ok(())
    }

    /// `split.log` as it is now: where a canary's reading of it starts.
    pub fn split_log(&self) -> PathBuf {
        self.dir.join(SPLIT_LOG)
    }

    /// The share (percent) of the requests the written configuration sends to `port`, when it
    /// shares them by weight (a canary's split).
    pub fn share_of(&self, port: u16) -> Option<u32> {
        let conf = crate::statedir::read_own(&self.conf_path()).ok()??;
        let weights: Vec<(u16, u32)> = conf
            .split("server 127.0.0.1:")
            .skip(1)
            .filter_map(|s| {
                let (p, rest) = s.split_once(' ')?;
                let w = rest.strip_prefix("weight=")?.split(';').next()?.parse().ok()?;
                Some((p.parse().ok()?, w))
            })
            .collect();
        let total: u32 = weights.iter().map(|(_, w)| w).sum();
        let mine = weights.iter().find(|(p, _)| *p == port)?.1;
        (total > 0).then(|| (mine * 100 + total / 2) / total)
    }

    /// The master's pid, when the pid file names a live nginx.
    pub fn pid(&self) -> Option<i32> {
        let pid: i32 = crate::statedir::read_own(&self.dir.join("nginx.pid")).ok()??.trim().parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let state = proc_state(pid)?;
        (String::from_utf8_lossy(&cmdline).contains("nginx") && state != 'Z').then_some(pid)
    }

    /// Starts nginx on `listen`, forwarding to `upstream`; returns once the port answers. The
    /// environment's port held by another process is exit 3 naming it; a bind lost to a
    /// socket that has gone by the time it is looked at is tried again, up to three times.
    pub fn start(&self, listen: &str, upstream: u16, label: &str) -> Result<Option<duct::Handle>> {
        let only = [Backend { port: upstream, label, weight: 100 }];
        let port: u16 = listen.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(0);
        if !self.fx.dry_run {
            self.end_orphans(port);
        }
        for attempt in 1..=START_ATTEMPTS {
            match self.start_once(listen, &only)? {
                Started::Up(h) => return Ok(h.map(|h| *h)),
                Started::PortInUse(why) => {
                    let holders = super::ports::listeners(port);
                    if holders.any() || attempt == START_ATTEMPTS {
                        return Err(Error::could_not_act(format!(
                            "nginx cannot listen on {listen}: the port is held by {}{}",
                            if holders.any() { holders.describe() } else { "another process".into() },
                            if holders.any() { String::new() } else { format!(" ({why})") }
                        ))
                        .with_hint("an environment's port belongs to its nginx: stop what holds it, or give the environment another url")
                        .into());
                    }
                    self.fx.ui.warn(format!(
                        "nginx lost the race for {listen} to a socket that is gone now; starting it again (try {} of {START_ATTEMPTS})",
                        attempt + 1
                    ));
                }
            }
        }
        Err(could_not_act!("nginx did not start on {listen}"))
    }

    /// Workers of this environment's nginx whose master is gone (killed with -9) keep the
    /// port and would keep every later start from binding it. They are this nginx's (they work
    /// in its directory) and serve nothing the platform can switch: they are ended.
    fn end_orphans(&self, port: u16) {
        let orphans: Vec<i32> = super::ports::listeners(port)
            .holders
            .iter()
            .filter(|h| crate::procs::cwd(h.pid).is_some_and(|c| c == self.dir))
            .map(|h| h.pid)
            .collect();
        for pid in orphans {
            self.fx
                .ui
                .warn(format!("nginx: ending pid {pid}, a worker left holding port {port} after its master died"));
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            let until = Instant::now() + Duration::from_secs(5);
            while crate::procs::stat(pid).is_some_and(|s| s.state != 'Z') && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    fn start_once(&self, listen: &str, backends: &[Backend<'_>]) -> Result<Started> {
        self.write_conf(listen, backends)?;
        let log = self.dir.join("nginx.out");
        let upstream = backends.first().map(|b| b.port).unwrap_or(0);
        self.fx.ui.status(format!("local: starting nginx on {listen} → 127.0.0.1:{upstream}"));
        let from = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let handle = self.fx.exec.spawn_detached(&self.control(&[]), &log)?;
        let Some(h) = handle else { return Ok(Started::Up(None)) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.pid().is_some() && std::net::TcpStream::connect(listen).is_ok() {
                return Ok(Started::Up(Some(Box::new(h))));
            }
            if let Ok(Some(out)) = h.try_wait() {
                let mut said = std::fs::read(&log).unwrap_or_default();
                said.drain(..(from as usize).min(said.len()));
                let said = crate::exec::tail_of(&said, 5).trim().to_string();
                if said.contains("Address already in use") {
                    return Ok(Started::PortInUse(said.lines().last().unwrap_or_default().trim().to_string()));
                }
                return Err(could_not_act!("nginx exited at start ({}): {said}", crate::exec::describe(&out.status)));
            }
            if Instant::now() > deadline {
                let _ = h.kill();
                return Err(could_not_act!("nginx did not listen on {listen} within 10s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Points nginx at `upstream` and waits until it has taken the new configuration (a new
    /// worker is up, and no old worker still accepts): new connections go to `upstream` from
    /// then on. The old workers may still
    /// be finishing requests: [`Nginx::drain`] waits for them.
    pub fn switch(&self, listen: &str, upstream: u16, label: &str) -> Result<Reloaded> {
        self.switch_to(listen, &[Backend { port: upstream, label, weight: 100 }])
    }

    /// [`Nginx::switch`] to share the requests among `backends` by their weights.
    pub fn switch_to(&self, listen: &str, backends: &[Backend<'_>]) -> Result<Reloaded> {
        let mut r = self.reload_to(listen, backends)?;
        self.until_old_stop_accepting(&mut r);
        Ok(r)
    }

    /// The first half of a switch: the configuration written, nginx reloaded, its new worker
    /// up and the old ones told to shut down. Until [`Nginx::until_old_stop_accepting`], an old
    /// worker may still accept a connection and forward it by the old configuration.
    pub fn reload_to(&self, listen: &str, backends: &[Backend<'_>]) -> Result<Reloaded> {
        let master = if self.fx.dry_run {
            None
        } else {
            Some(self.pid().ok_or_else(|| could_not_act!("nginx is not running"))?)
        };
        let before: HashSet<i32> = master.map(workers).unwrap_or_default();
        let mut steps = Steps::start();
        self.write_conf(listen, backends)?;
        steps.mark("configuration written");
        // SIGHUP to the master is what `nginx -s reload` sends, without starting a process that
        // parses the whole configuration first (tens of milliseconds on a loaded machine).
        self.fx.exec.effect(
            || format!("signal nginx ({}) to reload its configuration", self.conf_path().display()),
            || {
                let pid = nix::unistd::Pid::from_raw(master.unwrap_or(0));
                nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP)
                    .map_err(|e| could_not_act!("signalling nginx (pid {pid}) to reload: {e}"))
            },
        )?;
        steps.mark("reload signalled");
        let Some(master) = master else { return Ok(Reloaded { master: None, before, steps, sockets: HashSet::new() }) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !workers(master).iter().any(|w| !before.contains(w)) {
            if Instant::now() > deadline {
                return Err(could_not_act!(
                    "nginx did not take the new configuration within 10s (the old version still serves); {}:{}",
                    self.dir.join("error.log").display(),
                    crate::exec::tail_of(&std::fs::read(self.dir.join("error.log")).unwrap_or_default(), 3)
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        steps.mark("new worker up");
        // nginx's master waits 100 ms after starting the new workers before it tells the old
        // ones to shut down, and until then they accept and forward with the old configuration.
        // They are told now (SIGQUIT, what the master sends them: a graceful shutdown):
        // connections arriving meanwhile wait in the listening socket's queue for the new
        // worker, which is up. The master's own signal later finds them shutting down already.
        for w in &before {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*w), nix::sys::signal::Signal::SIGQUIT);
        }
        let sockets = self.listening(listen, master);
        steps.mark("old workers told to stop");
        Ok(Reloaded { master: Some(master), before, steps, sockets })
    }

    /// The listening sockets of `master` on `listen`'s port: they survive a reload (the new
    /// workers inherit them), so they are looked up once per master. A canary looks them up
    /// before its first round, so that its abort does not wait on the lookup.
    pub fn listening(&self, listen: &str, master: i32) -> HashSet<u64> {
        let mut cache = self.sockets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, s)) = cache.as_ref().filter(|(m, s)| *m == master && !s.is_empty()) {
            return s.clone();
        }
        let port: u16 = listen.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(0);
        let found = super::ports::listening_inodes(port);
        *cache = Some((master, found.clone()));
        found
    }

    /// [`Nginx::listening`] for the running master, looked up ahead of a switch.
    pub fn prime(&self, listen: &str) {
        if let Some(master) = self.pid() {
            self.listening(listen, master);
        }
    }

    /// Whether an old worker of `r` still accepts connections on the environment's port.
    pub fn old_accepting(&self, r: &Reloaded) -> bool {
        r.before.iter().any(|w| super::ports::holds_any(*w, &r.sockets))
    }

    /// Switched once no old worker accepts any more (up to 10 s): each closes its listening
    /// socket when told to shut down, then finishes what it carries (that is the drain).
    pub fn until_old_stop_accepting(&self, r: &mut Reloaded) {
        if r.master.is_none() {
            return;
        }
        let until = Instant::now() + Duration::from_secs(10);
        while self.old_accepting(r) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
        r.steps.mark("old workers stopped accepting");
    }

    /// Waits until the workers of before a reload have finished their requests, up to the
    /// drain time: only then may the version they forwarded to be stopped.
    pub fn drain(&self, r: Reloaded) {
        let Some(master) = r.master else { return };
        let until = Instant::now() + self.drain;
        while workers(master).iter().any(|w| r.before.contains(w)) {
            if Instant::now() > until {
                self.fx.ui.warn(format!("nginx: old workers still busy after {}s; going on", self.drain.as_secs()));
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Nginx<'_> {
    /// Stops this environment's nginx: a graceful quit (workers finish their requests, up to
    /// the drain time), then SIGKILL to what is left. The port is free when it returns.
    pub fn stop(&self) -> Result<()> {
        let Some(master) = self.pid().or(if self.fx.dry_run { Some(0) } else { None }) else { return Ok(()) };
        self.fx.exec.run(&self.control(&["-s", "quit"]))?;
        if self.fx.dry_run {
            return Ok(());
        }
        let until = Instant::now() + self.drain + Duration::from_secs(5);
        while self.pid().is_some() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.pid().is_some() {
            self.fx.ui.warn(format!("nginx (pid {master}) did not quit in time; it is killed"));
            for pid in workers(master).into_iter().chain([master]) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
        Ok(())
    }
}

/// A reload nginx has taken: its master and the workers from before it, still draining, and
/// how long each step of the switch took.
pub struct Reloaded {
    master: Option<i32>,
    before: HashSet<i32>,
    /// The environment's listening sockets (inodes), which the old workers close.
    sockets: HashSet<u64>,
    pub steps: Steps,
}

/// The time each step of a switch took, for the console: where a switch's milliseconds go.
#[derive(Debug, Clone)]
pub struct Steps {
    at: Instant,
    done: Vec<(&'static str, Duration)>,
}

impl Steps {
    fn start() -> Self {
        Steps { at: Instant::now(), done: vec![] }
    }
    pub fn mark(&mut self, what: &'static str) {
        let now = Instant::now();
        self.done.push((what, now - self.at));
        self.at = now;
    }
}

impl std::fmt::Display for Steps {
    /// `configuration written 0.3 ms, reload signalled 0.1 ms, …`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> =
            self.done.iter().map(|(what, d)| format!("{what} {:.1} ms", d.as_secs_f64() * 1000.0)).collect();
        f.write_str(&parts.join(", "))
    }
}

/// `127.0.0.1:8102` for nginx's `listen` from the environment's URL.
pub fn listen_of(u: &reqwest::Url, port: u16) -> String {
    let host = match u.host_str() {
        Some("localhost") | None => "127.0.0.1".to_string(),
        Some(h) => h.to_string(),
    };
    format!("{host}:{port}")
}

/// A process's state letter from /proc (`R`, `S`, `Z`, ...), if it exists.
fn proc_state(pid: i32) -> Option<char> {
    super::proc_stat(pid).map(|s| s.state)
}

/// The live (non-zombie) children of `master`: its workers.
fn workers(master: i32) -> HashSet<i32> {
    // The kernel's list of the master's children: one read, where a scan of /proc reads every
    // process' stat (milliseconds on a busy machine, in a loop that polls every millisecond).
    if let Ok(list) = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children")) {
        return list
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
            .filter(|pid| super::proc_stat(*pid).is_some_and(|s| s.state != 'Z'))
            .collect();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else { return HashSet::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| super::proc_stat(*pid).is_some_and(|s| s.ppid == master && s.state != 'Z'))
        .collect()
}

/// nginx's `user` directive: as root, the workers run as `nobody` and its group (Debian's
/// `nogroup`), never as root; as anyone else nginx cannot switch users and runs as them. A
/// machine without a `nobody` keeps root; the workers write no file either way.
fn worker_user() -> String {
    if !nix::unistd::geteuid().is_root() {
        return String::new();
    }
    let Ok(Some(user)) = nix::unistd::User::from_name("nobody") else { return "user root;\n".into() };
    match nix::unistd::Group::from_gid(user.gid) {
        Ok(Some(group)) => format!("user nobody {};\n", group.name),
        _ => "user root;\n".into(),
    }
}

/// The fewest failed user requests that can fail a canary round.
pub const CANARY_MIN_ERRORS: u64 = 3;

/// What `split.log` says of a canary: how many requests each side answered, and how many of
/// them with a server error (or no answer: a connect failure nginx retried on the other side
/// counts against the side that failed it).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SplitCounts {
    pub candidate: u64,
    pub candidate_errors: u64,
    pub stable: u64,
    pub stable_errors: u64,
    /// The first request the candidate failed, as the log says it.
    pub first_error: Option<String>,
    /// How long each side took to answer the requests it answered, in milliseconds (the
    /// upstream's response time).
    pub candidate_ms: Vec<u32>,
    pub stable_ms: Vec<u32>,
}

impl SplitCounts {
    /// The candidate's and the stable side's 5xx shares, in percent.
    pub fn rates(&self) -> (f64, f64) {
        let rate = |e: u64, n: u64| if n == 0 { 0.0 } else { e as f64 * 100.0 / n as f64 };
        (rate(self.candidate_errors, self.candidate), rate(self.stable_errors, self.stable))
    }

    /// Adds another window's counts.
    pub fn add(&mut self, w: &SplitCounts) {
        self.candidate += w.candidate;
        self.candidate_errors += w.candidate_errors;
        self.stable += w.stable;
        self.stable_errors += w.stable_errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&w.first_error);
        }
        self.candidate_ms.extend_from_slice(&w.candidate_ms);
        self.stable_ms.extend_from_slice(&w.stable_ms);
    }

    /// Whether the candidate fails more than the stable side by over `margin` points, with at
    /// least [`CANARY_MIN_ERRORS`] failures: at a canary's request counts, one or two failed
    /// requests (a blip of a fraction of a second) say nothing about the version.
    pub fn fails(&self, margin: f64) -> bool {
        let (c, s) = self.rates();
        self.candidate_errors >= CANARY_MIN_ERRORS && c > s + margin
    }
}

/// Counts the lines of `split.log` from byte `from` on; `candidate` is the candidate's port.
/// Returns the counts and where the next reading starts (a line not yet ended is left for it).
pub fn split_counts(log: &Path, from: u64, candidate: u16, into: &mut SplitCounts) -> u64 {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(log) else { return from };
    let mut text = Vec::new();
    if f.seek(SeekFrom::Start(from)).is_err() || f.read_to_end(&mut text).is_err() {
        return from;
    }
    let complete = text.iter().rposition(|b| *b == b'\n').map(|i| i + 1).unwrap_or(0);
    let cand = format!("127.0.0.1:{candidate}");
    for line in String::from_utf8_lossy(&text[..complete]).lines() {
        // 1764600000.123 "127.0.0.1:4001, 127.0.0.1:4000" "502, 200" 200
        let quoted: Vec<&str> = line.split('"').collect();
        let (Some(addrs), Some(statuses)) = (quoted.get(1), quoted.get(3)) else { continue };
        let hops: Vec<(&str, &str)> = addrs
            .split(", ")
            .flat_map(|h| h.split(" : "))
            .zip(statuses.split(", ").flat_map(|h| h.split(" : ")))
            .collect();
        // Each hop's response time, in seconds (`-` when it gave none); a log of the format
        // before times were written has none.
        let times: Vec<Option<u32>> = quoted
            .get(5)
            .map(|t| {
                t.split(", ")
                    .flat_map(|h| h.split(" : "))
                    .map(|x| x.trim().parse::<f64>().ok().map(|s| (s * 1000.0).round() as u32))
                    .collect()
            })
            .unwrap_or_default();
        for (i, (addr, status)) in hops.iter().enumerate() {
            let failed = status.trim().parse::<u16>().map(|s| s >= 500).unwrap_or(true) || i + 1 < hops.len();
            let took = times.get(i).copied().flatten().filter(|_| !failed);
            if addr.trim() == cand {
                into.candidate += 1;
                if failed {
                    into.candidate_errors += 1;
                    into.first_error.get_or_insert_with(|| line.to_string());
                }
                into.candidate_ms.extend(took);
            } else {
                into.stable += 1;
                into.stable_errors += u64::from(failed);
                into.stable_ms.extend(took);
            }
        }
    }
    from + complete as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_log_lines_are_counted_per_side_and_a_retried_hop_counts_against_its_side() {
        let dir = tempfile_dir();
        let log = dir.join(SPLIT_LOG);
        std::fs::write(
            &log,
            "1.0 \"127.0.0.1:4001\" \"200\" 200\n\
             1.1 \"127.0.0.1:4002\" \"500\" 500\n\
             1.2 \"127.0.0.1:4002, 127.0.0.1:4001\" \"502, 200\" 200\n\
             1.3 \"127.0.0.1:4001\" \"503\" 503\n\
             garbage\n\
             1.4 \"127.0.0.1:4002\" \"200\" 20",
        )
        .expect("log");
        let mut c = SplitCounts::default();
        let next = split_counts(&log, 0, 4002, &mut c);
        assert_eq!((c.candidate, c.candidate_errors, c.stable, c.stable_errors), (2, 2, 3, 1));
        assert!(c.first_error.as_deref().is_some_and(|l| l.starts_with("1.1 ")));
        // The unfinished last line is left for the next reading.
        assert_eq!(
            next,
            std::fs::read(&log).expect("log").len() as u64 - "1.4 \"127.0.0.1:4002\" \"200\" 20".len() as u64
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn each_sides_answered_requests_carry_their_response_time() {
        let dir = tempfile_dir();
        let log = dir.join(SPLIT_LOG);
        std::fs::write(
            &log,
            "1.0 \"127.0.0.1:4001\" \"200\" 200 \"0.004\"\n\
             1.1 \"127.0.0.1:4002\" \"200\" 200 \"0.250\"\n\
             1.2 \"127.0.0.1:4002, 127.0.0.1:4001\" \"502, 200\" 200 \"0.001, 0.006\"\n\
             1.3 \"127.0.0.1:4002\" \"500\" 500 \"0.900\"\n\
             1.4 \"127.0.0.1:4001\" \"200\" 200 \"-\"\n",
        )
        .expect("log");
        let mut c = SplitCounts::default();
        split_counts(&log, 0, 4002, &mut c);
        // The candidate's answered request: 250 ms; its failures carry no time. The stable
        // side's: 4 and 6 ms; a hop without a time has none.
        assert_eq!((c.candidate_ms.clone(), c.stable_ms.clone()), (vec![250], vec![4, 6]));
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_window_fails_only_with_enough_errors_above_the_stable_rate_plus_the_margin() {
        let w = |candidate, candidate_errors, stable, stable_errors| SplitCounts {
            candidate,
            candidate_errors,
            stable,
            stable_errors,
            ..SplitCounts::default()
        };
        assert!(!w(10, 2, 40, 0).fails(1.0), "two failures are not enough");
        assert!(w(10, 3, 40, 0).fails(1.0));
        assert!(!w(100, 3, 100, 3).fails(1.0), "no worse than the stable version");
        assert!(!w(100, 3, 100, 2).fails(1.0), "within the margin");
        assert!(w(100, 4, 100, 2).fails(1.0));
        assert!(!w(0, 0, 0, 0).fails(0.0), "nothing seen is no verdict");
    }

    fn tempfile_dir() -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("safedeploy-split-{}-{}", std::process::id(), crate::clock::now_ms()));
        std::fs::create_dir_all(&d).expect("dir");
        d
    }
}
