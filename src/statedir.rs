//! The state dir's trust. It holds the ledger (failure details, who deployed what), the
//! environments' locks and the local platform's pids and working copies, so a user who can write
//! into it can turn a deploy against the deployer: a lock file made a symlink to one of the
//! deployer's files is truncated and written by the next deploy. Every run that writes there
//! first proves the dir is the deployer's own:
//!
//! - it is owned by this user (or root), and neither its group nor others may write to it; a
//!   dir that fails is refused (exit 2, naming the path and what is wrong), never repaired, as
//!   another user may already have left something inside;
//! - what safedeploy creates is closed to others: dirs `0750` and the ledger `0640` (the user's
//!   group may read, so a teammate in it can run status, history and report), locks `0600`; a
//!   dir or file of this user's that others may read is closed to them on first use;
//! - the files it opens there by name (the ledger, the locks) are opened without following a
//!   symlink and must be this user's.
//!
//! Commands that only read (status, history, report) create nothing: a state dir or a ledger
//! that is not there reads as empty.

use crate::error::Error;
use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Modes of what safedeploy creates in the state dir: its group may read the dirs and the
/// ledger; nobody else may do anything.
pub const DIR_MODE: u32 = 0o750;
pub const LEDGER_MODE: u32 = 0o640;
/// A lock is this user's alone: another who could open it could hold it.
pub const LOCK_MODE: u32 = 0o600;

/// What safedeploy keeps in the state dir, by its name there: the ledger and its journals, the
/// environments' locks, the platforms' records and working copies, the built bundles. A report
/// is never written over any of them.
pub const KEPT: &[&str] = &[
    "ledger.sqlite3",
    "ledger.sqlite3-wal",
    "ledger.sqlite3-shm",
    "ledger.sqlite3-journal",
    "locks",
    "local",
    "elasticbeanstalk",
    "bundles",
];

/// What `path` would overwrite of what safedeploy keeps in `state_dir` (see [`KEPT`]): the
/// kept entry's path, if any. Symlinks and `..` are followed where the path exists.
pub fn kept_under(state_dir: &Path, path: &Path) -> Result<Option<std::path::PathBuf>> {
    let state = crate::paths::resolved(state_dir)?;
    let at = crate::paths::resolved(path)?;
    let Ok(inside) = at.strip_prefix(&state) else { return Ok(None) };
    Ok(match inside.components().next() {
        None => Some(state_dir.to_path_buf()),
        Some(first) if KEPT.iter().any(|k| first.as_os_str() == *k) => Some(state_dir.join(first)),
        Some(_) => None,
    })
}

fn me() -> u32 {
    nix::unistd::geteuid().as_raw()
}

fn refuse(path: &Path, what: impl std::fmt::Display) -> anyhow::Error {
    Error::usage(format!("state dir {}: {what}", path.display()))
        .with_hint(
            "the state dir must be the deploying user's alone: give --state-dir (or SAFEDEPLOY_STATE_DIR) a dir of yours, or check its contents, then chown it to this user and chmod 750 it",
        )
        .into()
}

/// Who an owner id is, for messages.
fn owner_name(uid: u32) -> String {
    nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map(|u| format!("{} (uid {uid})", u.name))
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// Why `meta` (of `path`) is not this user's to trust, if it is not.
fn untrusted(meta: &std::fs::Metadata) -> Option<String> {
    let uid = meta.uid();
    if uid != me() && uid != 0 {
        return Some(format!("is owned by {}, not by this user ({})", owner_name(uid), owner_name(me())));
    }
    let mode = meta.mode();
    if meta.is_dir() && mode & 0o022 != 0 {
        let who = if mode & 0o002 != 0 { "every user" } else { "its group" };
        return Some(format!("can be written by {who} (mode {:03o})", mode & 0o777));
    }
    None
}

/// Makes the state dir ready for a run that writes: creates it (`0750`, and its missing parents)
/// or proves an existing one is this user's alone. Its `locks/` dir too.
pub fn prepare(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)
                .with_context(|| format!("creating state dir {}", dir.display()))?;
        }
        Err(e) => return Err(refuse(dir, format!("cannot be read: {e}"))),
        Ok(m) if !m.is_dir() => return Err(refuse(dir, "is not a directory")),
        Ok(_) => {}
    }
    // A symlinked state dir is fine when the link is this user's (or root's): its target is
    // judged below.
    let link = std::fs::symlink_metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    if link.file_type().is_symlink() && link.uid() != me() && link.uid() != 0 {
        return Err(refuse(dir, format!("is a symlink owned by {}", owner_name(link.uid()))));
    }
    close_to_others(dir)?;
    Ok(())
}

/// A dry run's look at the state dir: what a real run would refuse is refused (exit 2), and
/// nothing is created or closed. A state dir that is not there yet is fine.
pub fn verify(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(refuse(dir, format!("cannot be read: {e}"))),
        Ok(m) if !m.is_dir() => Err(refuse(dir, "is not a directory")),
        Ok(m) => untrusted(&m).map_or(Ok(()), |why| Err(refuse(dir, why))),
    }
}

/// Proves `dir` (the state dir or one of its own dirs) is this user's alone, and closes it to
/// others when it is this user's.
fn close_to_others(dir: &Path) -> Result<()> {
    let meta = std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    if let Some(why) = untrusted(&meta) {
        return Err(refuse(dir, why));
    }
    if meta.uid() == me() && meta.mode() & 0o007 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(meta.mode() & 0o7770))
            .with_context(|| format!("closing {} to other users (chmod o-rwx)", dir.display()))?;
    }
    Ok(())
}

/// A dir of the state dir's own (`locks/`): created `0750`, or proven this user's and not a
/// symlink.
pub fn private_dir(dir: &Path) -> Result<()> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match std::fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => close_to_others(dir),
                Err(e) => Err(e).with_context(|| format!("creating {}", dir.display())),
            }
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
        Ok(m) if m.file_type().is_symlink() => Err(refuse(dir, "is a symlink; expected a directory of its own")),
        Ok(m) if !m.is_dir() => Err(refuse(dir, "is not a directory")),
        Ok(_) => close_to_others(dir),
    }
}

/// Opens (creating it with `mode`) a file of the state dir for reading and writing, without
/// following a symlink, and proves it this user's: a lock or the ledger another user planted
/// is refused, and one of ours with more access than `mode` gives is brought down to it.
pub fn open_private(path: &Path, mode: u32) -> Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(mode)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ELOOP) => refuse(path, "is a symlink; expected a file of its own"),
            _ => anyhow::Error::from(e).context(format!("opening {}", path.display())),
        })?;
    let meta = file.metadata().with_context(|| format!("reading {}", path.display()))?;
    if !meta.is_file() {
        return Err(refuse(path, "is not a regular file"));
    }
    if meta.uid() != me() && meta.uid() != 0 {
        return Err(refuse(path, format!("is owned by {}", owner_name(meta.uid()))));
    }
    if meta.mode() & 0o777 & !mode != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o7777 & (mode | !0o777)))
            .with_context(|| format!("closing {} to other users (chmod {mode:o})", path.display()))?;
    }
    Ok(file)
}

/// Reads a file of the state dir by name, as [`open_private`] opens one: without following a
/// symlink, and only a regular file. It is opened without waiting (`O_NONBLOCK`), so a FIFO put
/// in its place is refused instead of blocking the run for ever. `None`: there is no such file.
/// A file that is not a regular one is an [`std::io::ErrorKind::InvalidInput`] error.
pub fn read_own(path: &Path) -> std::io::Result<Option<String>> {
    use std::io::Read;
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "a symlink, not a regular file"));
        }
        Err(e) => return Err(e),
    };
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_safedeploy_keeps_is_found_through_symlinks_and_dots() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let state = tmp.path().join("state");
        std::fs::create_dir_all(state.join("locks")).expect("mkdir");
        std::os::unix::fs::symlink(&state, tmp.path().join("alias")).expect("symlink");
        let kept = |p: &str| kept_under(&state, &tmp.path().join(p)).expect("resolved");
        for p in [
            "state/ledger.sqlite3",
            "alias/ledger.sqlite3-wal",
            "state/x/../locks/a.lock",
            "state/bundles/v1.tar",
            "state",
        ] {
            assert!(kept(p).is_some(), "{p}");
        }
        for p in ["state/error_hunt.txt", "state/reports/gate.xml", "elsewhere/ledger.sqlite3", "state2/locks"] {
            assert_eq!(kept(p), None, "{p}");
        }
        // The names are the ones the modules that keep them use.
        let lock = crate::lock::path(&state, "staging").expect("lock path");
        assert!(kept_under(&state, &lock).expect("lock").is_some());
        assert!(KEPT.contains(&crate::ledger::FILE));
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("meta").mode() & 0o777
    }

    #[test]
    fn a_state_file_is_read_only_when_it_is_a_regular_file() {
        let t = tempfile::tempdir().expect("tmp");
        let file = t.path().join("state.json");
        assert_eq!(read_own(&file).expect("absent"), None);
        std::fs::write(&file, "{}").expect("write");
        assert_eq!(read_own(&file).expect("read").as_deref(), Some("{}"));
        let fifo = t.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("fifo");
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        for odd in [fifo, link, t.path().to_path_buf()] {
            let e = read_own(&odd).expect_err("refused");
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{odd:?}: {e}");
        }
    }

    #[test]
    fn a_new_state_dir_and_its_files_are_closed_to_others() {
        let t = tempfile::tempdir().expect("tmp");
        let dir = t.path().join("a/b/state");
        prepare(&dir).expect("prepare");
        assert_eq!(mode(&dir), 0o750);
        private_dir(&dir.join("locks")).expect("locks");
        assert_eq!(mode(&dir.join("locks")), 0o750);
        open_private(&dir.join("locks/x.lock"), LOCK_MODE).expect("open");
        assert_eq!(mode(&dir.join("locks/x.lock")), 0o600);
        let ledger = dir.join("ledger");
        std::fs::write(&ledger, "").expect("write");
        std::fs::set_permissions(&ledger, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        open_private(&ledger, LEDGER_MODE).expect("open");
        assert_eq!(mode(&ledger), 0o640, "an old world-readable ledger is closed");
    }

    #[test]
    fn a_dir_others_can_write_is_refused_and_one_they_can_read_is_closed() {
        let t = tempfile::tempdir().expect("tmp");
        let dir = t.path().join("state");
        std::fs::create_dir(&dir).expect("mkdir");
        for m in [0o777, 0o770, 0o1777] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(m)).expect("chmod");
            let e = prepare(&dir).expect_err("refused");
            assert!(e.to_string().contains("can be written by"), "{m:o}: {e}");
            assert_eq!(mode(&dir), m & 0o777, "{m:o}: nothing changed");
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        prepare(&dir).expect("ours");
        assert_eq!(mode(&dir), 0o750);
    }

    #[test]
    fn symlinks_in_place_of_a_lock_or_dir_are_refused_and_their_targets_untouched() {
        let t = tempfile::tempdir().expect("tmp");
        let target = t.path().join("precious");
        std::fs::write(&target, "keep me").expect("write");
        let lock = t.path().join("staging.lock");
        std::os::unix::fs::symlink(&target, &lock).expect("symlink");
        let e = open_private(&lock, LOCK_MODE).expect_err("refused");
        assert!(e.to_string().contains("is a symlink"), "{e}");
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "keep me");
        let locks = t.path().join("locks");
        std::os::unix::fs::symlink(t.path(), &locks).expect("symlink");
        assert!(private_dir(&locks).expect_err("refused").to_string().contains("is a symlink"));
        let fifo = t.path().join("fifo.lock");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("fifo");
        // O_RDWR on a FIFO does not block on Linux; it is still not a lock file.
        assert!(open_private(&fifo, LOCK_MODE).expect_err("refused").to_string().contains("not a regular file"));
    }
}
