//! The ledger: the durable record (SQLite, WAL) of versions, deployments, verifications and
//! incidents, and the one place that answers "what is the last known good version here?".
//!
//! Every write is one transaction, so a kill -9 at any moment leaves it consistent; a deployment
//! row is written `in_progress` first and closed later, and rows left open by a killed run are
//! marked `abandoned` by the next holder of the environment's lock. In a dry run nothing is
//! written: each write is announced as a `# ledger:` line of the plan.
//!
//! By what it records: `versions` (with the gate's verdicts and waivers), `deployments` (with
//! the release phase), `verifications` (and from them the last known good; shadow and
//! inconclusive verdicts beside them), `incidents` (with hand stops and the SLA budget);
//! `report` reads a period across them; `schema` holds the migrations, `rows` what is handed out.

use crate::ui::Ui;
use anyhow::{Context, Result};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

mod deployments;
mod incidents;
mod report;
mod rows;
mod schema;
mod verifications;
mod versions;

pub use rows::*;
use schema::MIGRATIONS;

pub(crate) const FILE: &str = "ledger.sqlite3";

pub struct Ledger {
    conn: Connection,
    dry_run: bool,
    /// Opened by a command that only reads: a write is a bug, refused.
    read_only: bool,
    ui: Ui,
    /// Who acts (recorded on deployments and waivers).
    actor: String,
    /// The file and its inode when opened: a write goes ahead only while the path still names
    /// that file (a ledger deleted or replaced under a run would swallow its writes).
    file: Option<(std::path::PathBuf, u64)>,
}

impl Ledger {
    /// Opens (creating and migrating) the ledger in `state_dir`. In a dry run an absent ledger is
    /// not created: an empty in-memory one stands in, so reads still answer.
    pub fn open(state_dir: &Path, dry_run: bool, ui: Ui, actor: String) -> Result<Ledger> {
        let path = state_dir.join(FILE);
        let conn = if dry_run {
            if path.exists() { Self::open_for_reading(&path) } else { Connection::open_in_memory() }
        } else {
            // The state dir is this user's alone, and so are the ledger and its WAL files
            // (SQLite gives those the database file's mode).
            crate::statedir::prepare(state_dir)?;
            crate::statedir::open_private(&path, crate::statedir::LEDGER_MODE)?;
            for side in ["-wal", "-shm"] {
                let p = path.with_file_name(format!("{FILE}{side}"));
                if p.symlink_metadata().is_ok() {
                    crate::statedir::open_private(&p, crate::statedir::LEDGER_MODE)?;
                }
            }
            Connection::open(&path)
        }
        .with_context(|| format!("opening ledger {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(15))?;
        let file = if dry_run { None } else { inode(&path).map(|i| (path.clone(), i)) };
        let ledger = Ledger { conn, dry_run, read_only: false, ui, actor, file };
        ledger.migrate(dry_run && path.exists()).with_context(|| format!("ledger {}", path.display()))?;
        Ok(ledger)
    }

    /// The ledger for a command that only reads (status, history, report): nothing is created
    /// (an absent state dir or ledger reads as empty) and a user who may only read the state
    /// dir can still run it.
    pub fn open_read_only(state_dir: &Path, ui: Ui, actor: String) -> Result<Ledger> {
        let path = state_dir.join(FILE);
        let conn = if path.exists() { Self::open_for_reading(&path) } else { Connection::open_in_memory() }
            .with_context(|| format!("opening ledger {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(15))?;
        let ledger = Ledger { conn, dry_run: true, read_only: true, ui, actor, file: None };
        ledger.migrate(path.exists()).with_context(|| format!("ledger {}", path.display()))?;
        Ok(ledger)
    }

    /// A read-only connection that creates no file. With no write-ahead log present the database
    /// is opened `immutable` (a read-only open of a WAL database would otherwise create its
    /// `-wal` and `-shm` files); with one present, a plain read-only open sees its commits.
    fn open_for_reading(path: &Path) -> rusqlite::Result<Connection> {
        let wal = path.with_file_name(format!("{FILE}-wal"));
        if wal.exists() {
            return Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY);
        }
        let escaped = path.to_string_lossy().replace('%', "%25").replace('?', "%3f").replace('#', "%23");
        Connection::open_with_flags(
            format!("file:{escaped}?immutable=1"),
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
        )
    }

    fn migrate(&self, read_only: bool) -> Result<()> {
        if !read_only {
            self.conn.pragma_update(None, "journal_mode", "WAL")?;
            self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        }
        self.conn.pragma_update(None, "foreign_keys", "ON")?;
        let applied: usize = self.conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if applied > MIGRATIONS.len() {
            return Err(crate::could_not_act!(
                "ledger schema version {applied} is newer than this safedeploy understands ({})",
                MIGRATIONS.len()
            ));
        }
        if read_only {
            if applied < MIGRATIONS.len() {
                return Err(crate::could_not_act!("ledger needs a schema upgrade; run once without --dry-run"));
            }
            return Ok(());
        }
        if applied == MIGRATIONS.len() {
            return Ok(());
        }
        // Two runs may open an old ledger at once: the upgrade holds the write lock from the
        // start, and the version is read again under it, so each migration runs once.
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, rusqlite::TransactionBehavior::Immediate)?;
        let applied: usize = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i + 1)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// A text as the ledger keeps and hands it out: with secrets masked. A failing answer's body
    /// can hold a password; the ledger never stores it, and a ledger written before masking
    /// covered a shape still reads masked.
    fn clean(&self, text: &str) -> String {
        self.ui.redactor.redact(text)
    }

    fn clean_opt(&self, text: Option<String>) -> Option<String> {
        text.map(|t| self.clean(&t))
    }

    fn clean_verification(&self, v: Verification) -> Verification {
        Verification { detail: self.clean_opt(v.detail), ..v }
    }

    fn clean_incident(&self, i: Incident) -> Incident {
        Incident { reason: self.clean_opt(i.reason), ..i }
    }

    fn clean_deployment(&self, d: Deployment) -> Deployment {
        Deployment { reason: self.clean_opt(d.reason), ..d }
    }

    fn clean_stop(&self, s: Stop) -> Stop {
        Stop { reason: self.clean_opt(s.reason), ..s }
    }

    /// Runs a write, or in a dry run announces it and returns `None`.
    fn write<T>(
        &self,
        what: impl FnOnce() -> String,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<Option<T>> {
        if self.read_only {
            return Err(crate::could_not_act!("internal: a command that only reads tried to {}", what()));
        }
        if self.dry_run {
            self.ui.plan(format!("# ledger: would {}", what()));
            return Ok(None);
        }
        crate::failpoint::step(|| format!("# ledger: {}", what()))?;
        if let Some((path, ino)) = &self.file
            && inode(path) != Some(*ino)
        {
            return Err(crate::error::Error::could_not_act(format!(
                "the ledger {} was removed or replaced while this run had it open; nothing more is recorded",
                path.display()
            ))
            .with_hint("put the ledger back (a backup of the state dir), then run again")
            .into());
        }
        let tx = self.conn.unchecked_transaction()?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(Some(out))
    }
}

fn inode(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.ino())
}
