//! One deploy per environment at a time: an advisory file lock (flock) in the state dir, which
//! the kernel releases when the holder dies, even by kill -9. The file names the holder (pid,
//! tool, actor, since) so a second caller is told who it is waiting on.

use crate::clock::{now_ms, rfc3339};
use crate::error::Error;
use anyhow::{Context, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Who takes a lock: the tool and the actor (the Jenkins build, or user@host).
pub struct Holder<'a> {
    pub tool: &'a str,
    pub actor: String,
}

/// Held for as long as the value lives.
#[derive(Debug)]
pub struct EnvLock {
    _file: File,
    pub path: PathBuf,
}

pub fn path(state_dir: &Path, env: &str) -> Result<PathBuf> {
    crate::paths::child(&state_dir.join("locks"), &format!("{env}.lock"), "environment")
}

/// Takes the environment's lock or fails with exit 3 naming the holder. In a dry run nothing is
/// created; a lock held by someone else is still reported, as the real run would meet it.
pub fn acquire(state_dir: &Path, env: &str, who: &Holder<'_>, dry_run: bool) -> Result<Option<EnvLock>> {
    let path = path(state_dir, env)?;
    if dry_run {
        if let Ok(file) = File::open(&path)
            && let Err(TryLockError::WouldBlock) = file.try_lock()
        {
            return Err(held(env, &path));
        }
        return Ok(None);
    }
    std::fs::create_dir_all(path.parent().unwrap_or(state_dir)).context("creating the locks dir")?;
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening lock {}", path.display()))?;
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
    Ok(Some(EnvLock { _file: file, path }))
}

/// Who holds `env`'s lock now, without taking it: `None` when it is free.
pub fn holder(state_dir: &Path, env: &str) -> Result<Option<String>> {
    let path = path(state_dir, env)?;
    let Ok(mut file) = File::open(&path) else { return Ok(None) };
    match file.try_lock_shared() {
        Err(TryLockError::WouldBlock) => Ok(Some(named_holder(&mut file))),
        _ => Ok(None),
    }
}

/// Who the lock file says holds it (`another process` when it says nothing yet).
fn named_holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    if text.trim().is_empty() { "another process".into() } else { text.trim().to_string() }
}

fn held(env: &str, path: &Path) -> anyhow::Error {
    let holder = File::open(path).map(|mut f| named_holder(&mut f)).unwrap_or_else(|_| "another process".into());
    Error::could_not_act(format!("environment {env} is locked by {holder}"))
        .with_hint("one deploy per environment at a time: wait for it to finish, then run again")
        .into()
}
