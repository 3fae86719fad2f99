//! Processes and process groups, as /proc shows them: every child safedeploy starts runs in a
//! process group of its own, and what a group leaves behind (a test command's background
//! server, a build's pip, an orphaned nginx worker) is found here by its group or its working
//! directory and ended.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::path::Path;
use std::time::{Duration, Instant};

/// What /proc/PID/stat says of a process.
pub struct ProcStat {
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
}

/// Reads /proc/PID/stat: `pid (comm) state ppid pgrp ...`, where comm may hold spaces and
/// parentheses.
pub fn stat(pid: i32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut f = stat.rsplit_once(')')?.1.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    Some(ProcStat { state, ppid, pgrp })
}

/// Every pid in /proc.
pub fn all() -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return vec![] };
    entries.flatten().filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok()).collect()
}

/// The live (non-zombie) members of process group `pgid`.
pub fn members(pgid: i32) -> Vec<i32> {
    all().into_iter().filter(|p| stat(*p).is_some_and(|s| s.pgrp == pgid && !matches!(s.state, 'Z' | 'X'))).collect()
}

/// A process's working directory.
pub fn cwd(pid: i32) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

/// Whether some live member of group `pgid` works under `dir`: the group is one of ours, even
/// when its leader is gone (pids are reused; directories under the state dir are not).
pub fn group_works_under(pgid: i32, dir: &Path) -> bool {
    members(pgid).into_iter().any(|p| cwd(p).is_some_and(|c| c.starts_with(dir)))
}

/// Ends a process group: SIGTERM, up to `grace` for it to go, then SIGKILL (and a moment for
/// the kernel to reap). Returns whether it had to be killed.
pub fn end_group(pgid: i32, grace: Duration) -> bool {
    if pgid <= 1 || members(pgid).is_empty() {
        return false;
    }
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGTERM);
    if wait_gone(pgid, grace) {
        return false;
    }
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    wait_gone(pgid, Duration::from_secs(5));
    true
}

/// Waits (bounded) until group `pgid` has no live member.
pub fn wait_gone(pgid: i32, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    loop {
        if members(pgid).is_empty() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
