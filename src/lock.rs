//! One deploy per environment at a time: an advisory file lock (flock) in the state dir, which
//! the kernel releases when the holder dies, even by kill -9. The file names the holder (pid,
//! tool, actor, since) so a second caller is told who it is waiting on.

use crate::clock::{now_ms, rfc3339};
use crate::error::Error;
use anyhow::{Context, Result};
use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Who takes a lock: the tool and the actor (the Jenkins build, or user@host).
pub struct Holder<'a> {
    pub tool: &'a str,
    pub actor: String,
}

/// Held for as long as the value lives. Released, the file says nothing: a later holder that
/// has not yet named itself is never taken for one that finished long ago.
#[derive(Debug)]
pub struct EnvLock {
    file: File,
    pub path: PathBuf,
}

impl Drop for EnvLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
    }
}

pub fn path(state_dir: &Path, env: &str) -> Result<PathBuf> {
    crate::paths::child(&state_dir.join("locks"), &format!("{env}.lock"), "environment")
}

/// Takes the environment's lock or fails with exit 3 naming the holder. In a dry run nothing is
/// created; a lock held by someone else is still reported, as the real run would meet it.
pub fn acquire(state_dir: &Path, env: &str, who: &Holder<'_>, dry_run: bool) -> Result<Option<EnvLock>> {
    let path = path(state_dir, env)?;
    if dry_run {
        crate::statedir::verify(state_dir)?;
        // Asked of the kernel's table: a dry run taking the lock, even for a moment, could make
        // a real run starting then fail as "locked".
        if path.exists() && !lock_holders(&path).is_empty() {
            return Err(held(env, &path));
        }
        return Ok(None);
    }
    // The lock is written to: its dir and itself must be this user's alone (a lock another user
    // made a symlink to one of the deployer's files would be truncated and written otherwise).
    crate::statedir::prepare(state_dir)?;
    crate::statedir::private_dir(path.parent().unwrap_or(state_dir))?;
    let mut file = crate::statedir::open_private(&path, crate::statedir::LOCK_MODE)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Err(held(env, &path)),
        Err(TryLockError::Error(e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
    }
    let holder = format!("pid {} ({}, {}) since {}", std::process::id(), who.tool, who.actor, rfc3339(now_ms()));
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(holder.as_bytes())?;
    file.flush()?;
    Ok(Some(EnvLock { file, path }))
}

/// Who holds `env`'s lock now, without taking it: `None` when it is free.
pub fn holder(state_dir: &Path, env: &str) -> Result<Option<String>> {
    // Asked of the kernel's lock table, not by taking the lock: a shared lock held even for a
    // moment would make a deploy starting then fail as "locked".
    let path = path(state_dir, env)?;
    if !path.exists() || lock_holders(&path).is_empty() {
        return Ok(None);
    }
    Ok(Some(describe_holder(&path)))
}

/// The pids the kernel lists as holding a lock on `path` (`/proc/locks`, matched by device
/// and inode): the real holders, whatever the file says.
fn lock_holders(path: &Path) -> Vec<i32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else { return vec![] };
    let dev = meta.dev();
    let want = format!("{:02x}:{:02x}:{}", nix::sys::stat::major(dev), nix::sys::stat::minor(dev), meta.ino());
    let Ok(table) = std::fs::read_to_string("/proc/locks") else { return vec![] };
    let mut pids: Vec<i32> = table
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // `1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF`; a blocked waiter's line has `->`.
            let f = if f.get(1) == Some(&"->") { &f[1..] } else { &f[..] };
            (f.len() >= 6 && f[5] == want && f.first().is_some_and(|n| n.ends_with(':'))).then(|| f[4].parse().ok())?
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// ` (name, uid N)` of a live process, from /proc; empty when it cannot be read.
fn process_name(pid: i32) -> String {
    use std::os::unix::fs::MetadataExt;
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).map(|c| c.trim().to_string()).unwrap_or_default();
    let uid = std::fs::metadata(format!("/proc/{pid}")).map(|m| format!("uid {}", m.uid())).unwrap_or_default();
    match (name.is_empty(), uid.is_empty()) {
        (true, true) => String::new(),
        _ => format!(" ({})", [name, uid].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(", ")),
    }
}

/// Who the lock file says holds it (`another process` when it says nothing yet).
fn named_holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    if text.trim().is_empty() { "another process".into() } else { text.trim().to_string() }
}

fn held(env: &str, path: &Path) -> anyhow::Error {
    let holder = describe_holder(path);
    Error::could_not_act(format!("environment {env} is locked by {holder}"))
        .with_hint("one deploy per environment at a time: wait for it to finish, then run again")
        .into()
}

/// Who holds the lock at `path`: what the file says, when a process the kernel lists as a
/// holder says it; otherwise the kernel's holders by pid and name.
fn describe_holder(path: &Path) -> String {
    let holder = File::open(path).map(|mut f| named_holder(&mut f)).unwrap_or_else(|_| "another process".into());
    // The kernel's word beats the file's: the processes that hold a lock on this very file.
    match lock_holders(path).as_slice() {
        [] => holder,
        pids if pids.iter().any(|p| holder.starts_with(&format!("pid {p} "))) => holder,
        pids => format!(
            "{} (the lock file names no live holder{})",
            pids.iter().map(|p| format!("pid {p}{}", process_name(*p))).collect::<Vec<_>>().join(", "),
            if holder == "another process" { String::new() } else { format!("; it still says: {holder}") }
        ),
    }
}
