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
///
/// A group that no process is in (not even a zombie) is answered by the kernel, without
/// reading /proc: a run of a command asks this once it has ended, and reading every process's
/// stat took most of a promote's CPU on a machine with a few hundred processes.
pub fn members(pgid: i32) -> Vec<i32> {
    if pgid > 0 && killpg(Pid::from_raw(pgid), None) == Err(nix::errno::Errno::ESRCH) {
        return vec![];
    }
    all().into_iter().filter(|p| runs_in(*p, pgid)).collect()
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
    if pgid <= 1 || !any_running(pgid) {
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

/// Whether any process of group `pgid` runs (is not a zombie): its leader, asked first, or
/// any other member.
pub fn any_running(pgid: i32) -> bool {
    runs_in(pgid, pgid) || !members(pgid).is_empty()
}

/// Whether `pid` runs (is not a zombie) in process group `pgid`.
fn runs_in(pid: i32, pgid: i32) -> bool {
    stat(pid).is_some_and(|s| s.pgrp == pgid && !matches!(s.state, 'Z' | 'X'))
}

/// Waits (bounded) until group `pgid` has no live member. While its leader or one of the
/// members last found still runs, that is the answer; /proc is read whole only when none does
/// (a member forked since is found then), so a group taking its grace period to stop costs a
/// read or two a poll rather than every process's.
pub fn wait_gone(pgid: i32, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    let mut running: Vec<i32> = vec![pgid];
    loop {
        running.retain(|p| runs_in(*p, pgid));
        if running.is_empty() {
            running = members(pgid);
            if running.is_empty() {
                return true;
            }
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    /// A `sleep` in a process group of its own (the group's id is its pid).
    fn grouped_sleep() -> std::process::Child {
        std::process::Command::new("sleep").arg("60").process_group(0).spawn().expect("sleep")
    }

    #[test]
    fn a_group_has_its_running_member_then_none_once_it_is_reaped() {
        let mut child = grouped_sleep();
        let pgid = child.id() as i32;
        assert_eq!(members(pgid), vec![pgid]);
        child.kill().expect("kill");
        child.wait().expect("reap");
        assert_eq!(members(pgid), Vec::<i32>::new(), "no process is in the group any more");
        assert!(wait_gone(pgid, Duration::ZERO));
    }

    #[test]
    fn a_group_whose_leader_has_exited_runs_while_a_member_does() {
        // The leader starts a member in the background and exits; the member keeps the group.
        let leader = std::process::Command::new("sh")
            .args(["-c", "sleep 60 >/dev/null & echo $!"])
            .stdout(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("sh");
        let pgid = leader.id() as i32;
        let out = leader.wait_with_output().expect("the leader ends");
        let member: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("the member's pid");
        assert!(any_running(pgid), "the member runs in the group");
        assert_eq!(members(pgid), vec![member]);
        assert!(!wait_gone(pgid, Duration::from_millis(50)), "not gone while the member runs");
        assert!(!end_group(pgid, Duration::from_secs(30)), "sleep ends on SIGTERM, without a SIGKILL");
        assert!(!any_running(pgid), "ended with its group");
        assert!(wait_gone(pgid, Duration::ZERO));
    }

    #[test]
    fn a_zombie_is_not_a_member() {
        let mut child = grouped_sleep();
        let pgid = child.id() as i32;
        child.kill().expect("kill");
        // Not reaped yet: the kernel still has the process (kill -0 on the group succeeds),
        // but it runs nothing.
        let until = Instant::now() + Duration::from_secs(30);
        while stat(pgid).is_some_and(|s| s.state != 'Z') {
            assert!(Instant::now() < until, "the killed sleep never became a zombie");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(killpg(Pid::from_raw(pgid), None), Ok(()), "the zombie is still in the group");
        assert_eq!(members(pgid), Vec::<i32>::new());
        child.wait().expect("reap");
    }
}
