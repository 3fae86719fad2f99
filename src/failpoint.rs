//! Fault injection for the reliability suite (tests/faults.rs), switched on only by variables
//! that only tests set. Every side effect of a run passes one of the chokepoints — a command
//! that changes something, a local change (`Exec::effect`), a ledger write, a request — and
//! each calls [`step`] first, so steps are numbered in the order a run takes them.
//!
//! - `SAFEDEPLOY_FAILPOINT=N` (or `N:kill`): the process SIGKILLs itself before step N, as
//!   `kill -9` or a power cut at that point would.
//! - `SAFEDEPLOY_FAILPOINT=N:enospc`: step N fails with "No space left on device", as a full
//!   disk under the state dir would.
//! - `SAFEDEPLOY_FAILPOINT=N:wait`: before step N the process writes `paused` in the directory
//!   `SAFEDEPLOY_FAILPOINT_WAIT` names and waits (a minute at most) until `resume` appears
//!   there, so a test can change the world at exactly that point.
//! - `SAFEDEPLOY_FAILPOINT_LOG=FILE`: each step is appended as `N<TAB>what` (the dry-run text).
//! - `SAFEDEPLOY_FAILPOINT_PANIC=SITE`: the code at a named site panics, as a bug there would:
//!   `operation` (the binary's operation), `smoke chain` (a chain's thread), `log part` (a
//!   thread of the split log search). A panic anywhere must end as a failure, never a pass.
//! - `SAFEDEPLOY_FAILPOINT_PORTS=P1,P2,...`: the local platform's port picker is offered these
//!   ports first, before the kernel's free ones, so a test can hand it an environment's port or
//!   one another process holds (a lost bind race, made certain).
//!
//! While steps are numbered (`SAFEDEPLOY_FAILPOINT` or `_LOG` set), work that runs side by side
//! elsewhere (the smoke chains) runs one after another, so step N is the same step in every run.
//!
//! Unset, `step` costs one atomic load.

use anyhow::Result;
use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Kill,
    Enospc,
    Wait,
}

struct Config {
    at: Option<(usize, Mode)>,
    log: Option<std::path::PathBuf>,
}

static CONFIG: OnceLock<Option<Config>> = OnceLock::new();
static STEP: AtomicUsize = AtomicUsize::new(0);

fn config() -> Option<&'static Config> {
    CONFIG
        .get_or_init(|| {
            let at = std::env::var("SAFEDEPLOY_FAILPOINT").ok().and_then(|v| {
                let (n, mode) = v.split_once(':').unwrap_or((&v, "kill"));
                let mode = match mode {
                    "enospc" => Mode::Enospc,
                    "wait" => Mode::Wait,
                    _ => Mode::Kill,
                };
                n.trim().parse().ok().map(|n| (n, mode))
            });
            let log = std::env::var_os("SAFEDEPLOY_FAILPOINT_LOG").map(Into::into);
            (at.is_some() || log.is_some()).then_some(Config { at, log })
        })
        .as_ref()
}

/// Called by each chokepoint before a side effect; `what` describes it.
pub fn step(what: impl FnOnce() -> String) -> Result<()> {
    let Some(cfg) = config() else { return Ok(()) };
    let n = STEP.fetch_add(1, Ordering::SeqCst) + 1;
    if let Some(log) = &cfg.log
        && let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log)
    {
        let _ = writeln!(f, "{n}\t{}", what().replace(['\n', '\t'], " "));
    }
    match cfg.at {
        Some((at, Mode::Kill)) if at == n => {
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
            unreachable!("SIGKILL cannot be caught");
        }
        Some((at, Mode::Enospc)) if at == n => Err(std::io::Error::from_raw_os_error(nix::libc::ENOSPC).into()),
        Some((at, Mode::Wait)) if at == n => {
            // Says so, then waits (a minute at most) for the test to do its part.
            let dir = std::path::PathBuf::from(std::env::var_os("SAFEDEPLOY_FAILPOINT_WAIT").unwrap_or_default());
            let _ = std::fs::write(dir.join("paused"), n.to_string());
            let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while !dir.join("resume").exists() && std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The next port `SAFEDEPLOY_FAILPOINT_PORTS` offers the port picker, if any is left.
pub fn offered_port() -> Option<u16> {
    static OFFERED: OnceLock<std::sync::Mutex<std::collections::VecDeque<u16>>> = OnceLock::new();
    let offered = OFFERED.get_or_init(|| {
        let list = std::env::var("SAFEDEPLOY_FAILPOINT_PORTS").unwrap_or_default();
        std::sync::Mutex::new(list.split(',').filter_map(|p| p.trim().parse().ok()).collect())
    });
    offered.lock().ok()?.pop_front()
}

/// Panics when `SAFEDEPLOY_FAILPOINT_PANIC` names `site`.
#[track_caller]
pub fn panic_at(site: &str) {
    static SITE: OnceLock<Option<String>> = OnceLock::new();
    if SITE.get_or_init(|| std::env::var("SAFEDEPLOY_FAILPOINT_PANIC").ok()).as_deref() == Some(site) {
        panic!("failpoint: a panic injected at {site}");
    }
}

/// Whether steps are numbered now: work that would run side by side runs in order instead.
pub fn numbering() -> bool {
    config().is_some()
}
