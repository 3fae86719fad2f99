//! The ledger: the durable record (SQLite, WAL) of versions, deployments, verifications and
//! incidents, and the one place that answers "what is the last known good version here?".
//!
//! Every write is one transaction, so a kill -9 at any moment leaves it consistent; a deployment
//! row is written `in_progress` first and closed later, and rows left open by a killed run are
//! marked `abandoned` by the next holder of the environment's lock. In a dry run nothing is
//! written: each write is announced as a `# ledger:` line of the plan.

use crate::clock::{Millis, now_ms, rfc3339};
use crate::ui::Ui;
use anyhow::{Context, Result};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

const FILE: &str = "ledger.sqlite3";

/// Schema migrations; `PRAGMA user_version` is the number applied.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE versions (
    label       TEXT PRIMARY KEY,
    commit_id   TEXT NOT NULL,
    checksum    TEXT NOT NULL,
    bundle      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    bad_at      INTEGER,
    bad_reason  TEXT
);
CREATE TABLE deployments (
    id          INTEGER PRIMARY KEY,
    env         TEXT NOT NULL,
    label       TEXT NOT NULL REFERENCES versions(label),
    action      TEXT NOT NULL,
    previous    TEXT,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    outcome     TEXT NOT NULL CHECK (outcome IN ('in_progress','healthy','failed','abandoned')),
    detail      TEXT,
    actor       TEXT,
    reason      TEXT
);
CREATE INDEX deployments_env ON deployments(env, started_at);
CREATE TABLE verifications (
    id      INTEGER PRIMARY KEY,
    env     TEXT NOT NULL,
    label   TEXT NOT NULL REFERENCES versions(label),
    at      INTEGER NOT NULL,
    passed  INTEGER NOT NULL,
    detail  TEXT
);
CREATE INDEX verifications_env ON verifications(env, at);
CREATE TABLE incidents (
    id             INTEGER PRIMARY KEY,
    env            TEXT NOT NULL,
    bad_label      TEXT,
    restored_label TEXT,
    detected_at    INTEGER NOT NULL,
    restored_at    INTEGER,
    downtime_ms    INTEGER,
    reason         TEXT
);
"#,
    r#"
CREATE TABLE gate_waivers (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    commit_id  TEXT NOT NULL,
    base       TEXT NOT NULL,
    checks     TEXT NOT NULL,
    reason     TEXT NOT NULL,
    actor      TEXT
);
"#,
    r#"
CREATE TABLE stops (
    id      INTEGER PRIMARY KEY,
    env     TEXT NOT NULL,
    label   TEXT,
    at      INTEGER NOT NULL,
    actor   TEXT,
    reason  TEXT
);
"#,
    // The exposure clock: when a version took traffic (its switch), and on an incident when the
    // bad version took traffic, when the rollback started, and where the budget's charge starts.
    r#"
ALTER TABLE deployments ADD COLUMN switched_at INTEGER;
ALTER TABLE incidents ADD COLUMN took_traffic_at INTEGER;
ALTER TABLE incidents ADD COLUMN rollback_started_at INTEGER;
ALTER TABLE incidents ADD COLUMN charged_from INTEGER;
"#,
    // A canary's incident: the share of the users (percent) that met the bad version; the
    // downtime charged is the span times that share.
    r#"
ALTER TABLE incidents ADD COLUMN share_percent INTEGER;
"#,
    // The report's facts: when a version's commit was made (lead time for changes), and every
    // gate verdict (bad changes stopped by the gate).
    r#"
ALTER TABLE versions ADD COLUMN committed_at INTEGER;
CREATE TABLE gate_runs (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    commit_id  TEXT NOT NULL,
    passed     INTEGER NOT NULL,
    checks     TEXT NOT NULL,
    actor      TEXT
);
CREATE INDEX gate_runs_at ON gate_runs(at);
"#,
    // What caused an incident, as a word the report counts by (see [`Cause`]); the reason stays
    // the people's text (a `--reason` replaces it, so it cannot say which layer acted).
    r#"
ALTER TABLE incidents ADD COLUMN cause TEXT;
ALTER TABLE incidents ADD COLUMN alert_id TEXT;
"#,
    // The release phase: each run of a version's release command (migrations) in an
    // environment, and on each deployment the release that ran before it.
    r#"
CREATE TABLE releases (
    id          INTEGER PRIMARY KEY,
    env         TEXT NOT NULL,
    label       TEXT NOT NULL,
    command     TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER NOT NULL,
    exit        TEXT NOT NULL,
    ok          INTEGER NOT NULL,
    tail        TEXT
);
CREATE INDEX releases_env ON releases(env, label);
ALTER TABLE deployments ADD COLUMN release_id INTEGER;
"#,
    // Rollback rehearsals: a version whose release passed in a staging environment, and the
    // production's last known good (`target`) started on a copy of that environment's migrated
    // data: whether a rollback from the one to the other would serve.
    r#"
CREATE TABLE rehearsals (
    id      INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    env     TEXT NOT NULL,
    label   TEXT NOT NULL,
    target  TEXT NOT NULL,
    ok      INTEGER NOT NULL,
    detail  TEXT
);
CREATE INDEX rehearsals_label ON rehearsals(label);
"#,
    // A metric in shadow mode: what it would have said of a version, never acted on.
    r#"
CREATE TABLE shadow_verdicts (
    id      INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    env     TEXT NOT NULL,
    label   TEXT NOT NULL,
    metric  TEXT NOT NULL,
    failed  INTEGER NOT NULL,
    detail  TEXT
);
CREATE INDEX shadow_verdicts_metric ON shadow_verdicts(metric);
"#,
    // Not enough evidence to judge a version (exit 4): neither a pass nor a verdict.
    r#"
CREATE TABLE inconclusive (
    id      INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    env     TEXT NOT NULL,
    label   TEXT NOT NULL,
    source  TEXT NOT NULL,
    detail  TEXT
);
CREATE INDEX inconclusive_label ON inconclusive(env, label);
"#,
];

pub use crate::rules::Cause;

/// A run of a version's release command (the Procfile's `release:` line, or `deploy.release`):
/// its schema migrations, once per environment, before its candidate starts.
#[derive(Debug, Clone)]
pub struct Released {
    pub command: String,
    pub started_at: crate::clock::Millis,
    pub ended_at: crate::clock::Millis,
    /// How it ended, in words ("exit status 0", "killed after its time limit of 10m").
    pub exit: String,
    pub ok: bool,
    /// The last lines of its output.
    pub tail: String,
}

/// How a deployment came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// deploy-staging
    Deploy,
    Promote,
    Rollback,
    /// A failed promote putting the previous version back.
    Restore,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deploy => "deploy",
            Action::Promote => "promote",
            Action::Rollback => "rollback",
            Action::Restore => "restore",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Version {
    pub label: String,
    pub commit: String,
    pub checksum: String,
    pub bundle: String,
    pub created_at: Millis,
    pub bad_at: Option<Millis>,
    pub bad_reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    pub id: i64,
    pub env: String,
    pub label: String,
    pub action: String,
    pub previous: Option<String>,
    pub started_at: Millis,
    pub finished_at: Option<Millis>,
    pub outcome: String,
    pub reason: Option<String>,
    pub actor: Option<String>,
}

/// A deployment as the report shows it, with its version's commit.
#[derive(Debug, Clone, Serialize)]
pub struct ReportDeployment {
    pub env: String,
    pub label: String,
    pub action: String,
    pub started_at: Millis,
    pub switched_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    pub outcome: String,
    pub actor: Option<String>,
    pub commit: Option<String>,
    pub committed_at: Option<Millis>,
}

/// A gate verdict.
#[derive(Debug, Clone, Serialize)]
pub struct GateRun {
    pub at: Millis,
    pub commit: String,
    pub passed: bool,
    pub checks: String,
}

/// Everything of a period the report reads.
#[derive(Debug, Default)]
pub struct ReportRows {
    pub deployments: Vec<ReportDeployment>,
    pub verifications: Vec<Verification>,
    pub incidents: Vec<Incident>,
    pub gate_runs: Vec<GateRun>,
}

/// A smoke check's recorded verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub env: String,
    pub label: String,
    pub at: Millis,
    pub passed: bool,
    pub detail: Option<String>,
}

/// An environment stopped by hand (`safedeploy stop`).
#[derive(Debug, Clone, Serialize)]
pub struct Stop {
    pub env: String,
    pub label: Option<String>,
    pub at: Millis,
    pub actor: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Incident {
    pub id: i64,
    pub env: String,
    pub bad_label: Option<String>,
    pub restored_label: Option<String>,
    /// The first failing verdict (a failed check, an alert, a failed start).
    pub detected_at: Millis,
    /// When `restored_label` served again through the environment's address.
    pub restored_at: Option<Millis>,
    pub downtime_ms: Option<i64>,
    pub reason: Option<String>,
    /// When the bad version took traffic (its switch), where known.
    pub took_traffic_at: Option<Millis>,
    /// When the rollback (or the restore of a failed promote) started.
    pub rollback_started_at: Option<Millis>,
    /// Where the downtime charged to the SLA budget starts: when the bad version took traffic,
    /// unless it passed a check after that (then its first failing verdict).
    pub charged_from: Option<Millis>,
    /// The share of the users (percent) that met the bad version, when not all did: a canary's.
    /// The downtime charged is the span times this share.
    pub share_percent: Option<i64>,
    /// [`Cause::as_str`]; none in incidents recorded before causes were.
    pub cause: Option<String>,
    /// The Datadog alert that caused it, if one did: an alert acts once.
    pub alert_id: Option<String>,
}

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

    // ---- versions ----

    pub fn version(&self, label: &str) -> Result<Option<Version>> {
        Ok(self
            .conn
            .query_row(
                "SELECT label, commit_id, checksum, bundle, created_at, bad_at, bad_reason FROM versions WHERE label = ?1",
                [label],
                |r| {
                    Ok(Version {
                        label: r.get(0)?,
                        commit: r.get(1)?,
                        checksum: r.get(2)?,
                        bundle: r.get(3)?,
                        created_at: r.get(4)?,
                        bad_at: r.get(5)?,
                        bad_reason: r.get(6)?,
                    })
                },
            )
            .optional()?
            .map(|v| Version { bad_reason: self.clean_opt(v.bad_reason), ..v }))
    }

    pub fn record_version(&self, v: &Version) -> Result<()> {
        self.write(
            || format!("record version {} (commit {})", v.label, v.commit),
            |c| {
                c.execute(
                    "INSERT INTO versions (label, commit_id, checksum, bundle, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![v.label, v.commit, v.checksum, v.bundle, v.created_at],
                )
            },
        )?;
        Ok(())
    }

    /// When `label`'s commit was made (the committer's date), for the lead time for changes.
    pub fn record_committed_at(&self, label: &str, at: Millis) -> Result<()> {
        self.write(
            || format!("record when {label}'s commit was made"),
            |c| c.execute("UPDATE versions SET committed_at = ?2 WHERE label = ?1", params![label, at]),
        )?;
        Ok(())
    }

    /// A gate verdict on `commit`: passed or not, and each check's status (`name=status`).
    pub fn record_gate_run(&self, commit: &str, passed: bool, checks: &str) -> Result<()> {
        let actor = &self.actor;
        self.write(
            || format!("record the gate's verdict on {commit}"),
            |c| {
                c.execute(
                    "INSERT INTO gate_runs (at, commit_id, passed, checks, actor) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![now_ms(), commit, passed, checks, actor],
                )
            },
        )?;
        Ok(())
    }

    /// What `safedeploy report` reads, from `since` on: every table's rows of the period.
    pub fn report_rows(&self, since: Millis) -> Result<ReportRows> {
        let mut rows = ReportRows::default();
        let mut st = self.conn.prepare(
            "SELECT d.env, d.label, d.action, d.started_at, d.switched_at, d.finished_at, d.outcome, d.actor,
                    v.commit_id, v.committed_at
             FROM deployments d LEFT JOIN versions v ON v.label = d.label
             WHERE d.started_at >= ?1 ORDER BY d.id",
        )?;
        let mapped = st.query_map([since], |r| {
            Ok(ReportDeployment {
                env: r.get(0)?,
                label: r.get(1)?,
                action: r.get(2)?,
                started_at: r.get(3)?,
                switched_at: r.get(4)?,
                finished_at: r.get(5)?,
                outcome: r.get(6)?,
                actor: r.get(7)?,
                commit: r.get(8)?,
                committed_at: r.get(9)?,
            })
        })?;
        rows.deployments = mapped.collect::<rusqlite::Result<_>>()?;
        let mut st =
            self.conn.prepare("SELECT env, label, at, passed, detail FROM verifications WHERE at >= ?1 ORDER BY id")?;
        let mapped = st.query_map([since], |r| {
            Ok(Verification { env: r.get(0)?, label: r.get(1)?, at: r.get(2)?, passed: r.get(3)?, detail: r.get(4)? })
        })?;
        let verifications: Vec<Verification> = mapped.collect::<rusqlite::Result<_>>()?;
        rows.verifications = verifications.into_iter().map(|v| self.clean_verification(v)).collect();
        let mut st = self.conn.prepare(&format!("{INCIDENT_COLUMNS} WHERE detected_at >= ?1 ORDER BY id"))?;
        let incidents: Vec<Incident> = st.query_map([since], incident_row)?.collect::<rusqlite::Result<_>>()?;
        rows.incidents = incidents.into_iter().map(|i| self.clean_incident(i)).collect();
        let mut st =
            self.conn.prepare("SELECT at, commit_id, passed, checks FROM gate_runs WHERE at >= ?1 ORDER BY id")?;
        let mapped = st.query_map([since], |r| {
            Ok(GateRun { at: r.get(0)?, commit: r.get(1)?, passed: r.get(2)?, checks: r.get(3)? })
        })?;
        rows.gate_runs = mapped.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Records a version the platform runs but safedeploy never built (an environment adopted
    /// as it was): no commit, no bundle. Nothing happens when the label is known.
    pub fn adopt(&self, label: &str) -> Result<()> {
        if self.version(label)?.is_some() {
            return Ok(());
        }
        self.write(
            || format!("record version {label}, found live on the platform (commit unknown)"),
            |c| {
                c.execute(
                    "INSERT OR IGNORE INTO versions (label, commit_id, checksum, bundle, created_at) VALUES (?1, '', '', '', ?2)",
                    params![label, crate::clock::now_ms()],
                )
            },
        )?;
        Ok(())
    }

    pub fn mark_bad(&self, label: &str, reason: &str) -> Result<()> {
        self.write(
            || format!("mark version {label} bad ({reason})"),
            |c| {
                let reason = self.clean(reason);
                c.execute(
                    "UPDATE versions SET bad_at = ?2, bad_reason = ?3 WHERE label = ?1 AND bad_at IS NULL",
                    params![label, now_ms(), reason],
                )
            },
        )?;
        Ok(())
    }

    /// Takes a version's bad mark away (a recorded pass after a forced promote: see
    /// `smoke::record`); the verdict that did so says what the mark was.
    pub fn clear_bad(&self, label: &str) -> Result<()> {
        self.write(
            || format!("clear version {label}'s bad mark"),
            |c| c.execute("UPDATE versions SET bad_at = NULL, bad_reason = NULL WHERE label = ?1", params![label]),
        )?;
        Ok(())
    }

    // ---- deployments ----

    /// Opens a deployment row (`in_progress`); returns its id (0 in a dry run).
    pub fn begin_deployment(
        &self,
        env: &str,
        label: &str,
        action: Action,
        previous: Option<&str>,
        reason: Option<&str>,
    ) -> Result<i64> {
        let action = action.as_str();
        let actor = &self.actor;
        let id = self.write(
            || format!("record {action} of {label} to {env} (in progress)"),
            |c| {
                c.execute(
                    "INSERT INTO deployments (env, label, action, previous, started_at, outcome, actor, reason)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'in_progress', ?6, ?7)",
                    params![env, label, action, previous, now_ms(), actor, reason.map(|r| self.clean(r))],
                )?;
                Ok(c.last_insert_rowid())
            },
        )?;
        Ok(id.unwrap_or(0))
    }

    /// The moment a deployment's version took traffic (the platform's switch).
    pub fn record_switch(&self, id: i64, at: Millis) -> Result<()> {
        self.write(
            || format!("record the switch at {}", rfc3339(at)),
            |c| c.execute("UPDATE deployments SET switched_at = ?2 WHERE id = ?1", params![id, at]),
        )?;
        Ok(())
    }

    /// When `label` last took traffic in `env`: the switch of its newest healthy deployment
    /// there (its end, for a deployment recorded before switches were).
    pub fn took_traffic(&self, env: &str, label: &str) -> Result<Option<Millis>> {
        Ok(self
            .conn
            .query_row(
                "SELECT COALESCE(switched_at, finished_at) FROM deployments
                 WHERE env = ?1 AND label = ?2 AND outcome = 'healthy' ORDER BY id DESC LIMIT 1",
                params![env, label],
                |r| r.get::<_, Option<Millis>>(0),
            )
            .optional()?
            .flatten())
    }

    /// Whether `label` passed a check in `env` at or after `since`.
    pub fn passed_since(&self, env: &str, label: &str, since: Millis) -> Result<bool> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM verifications WHERE env = ?1 AND label = ?2 AND passed = 1 AND at >= ?3)",
            params![env, label, since],
            |r| r.get(0),
        )?)
    }

    pub fn finish_deployment(&self, id: i64, healthy: bool, detail: &str) -> Result<()> {
        let outcome = if healthy { "healthy" } else { "failed" };
        self.write(
            || format!("close deployment as {outcome}"),
            |c| {
                c.execute(
                    "UPDATE deployments SET outcome = ?2, finished_at = ?3, detail = ?4 WHERE id = ?1",
                    params![id, outcome, now_ms(), self.clean(detail)],
                )
            },
        )?;
        Ok(())
    }

    /// Closes deployments a killed run left open; call while holding the environment's lock.
    pub fn abandon_stale(&self, env: &str) -> Result<usize> {
        if self.dry_run {
            return Ok(0);
        }
        let n = self.write(
            || format!("close deployments left open in {env}"),
            |c| {
                c.execute(
                    "UPDATE deployments SET outcome = 'abandoned', finished_at = ?2,
                     detail = 'the run that started it ended before closing it'
                     WHERE env = ?1 AND outcome = 'in_progress'",
                    params![env, now_ms()],
                )
            },
        )?;
        Ok(n.unwrap_or(0))
    }

    fn deployment_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Deployment> {
        Ok(Deployment {
            id: r.get(0)?,
            env: r.get(1)?,
            label: r.get(2)?,
            action: r.get(3)?,
            previous: r.get(4)?,
            started_at: r.get(5)?,
            finished_at: r.get(6)?,
            outcome: r.get(7)?,
            reason: r.get(8)?,
            actor: r.get(9)?,
        })
    }

    /// The newest deployment to `env` that became healthy: what the ledger believes is live.
    pub fn live_deployment(&self, env: &str) -> Result<Option<Deployment>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, env, label, action, previous, started_at, finished_at, outcome, reason, actor
                 FROM deployments WHERE env = ?1 AND outcome = 'healthy' ORDER BY id DESC LIMIT 1",
                [env],
                Self::deployment_row,
            )
            .optional()?
            .map(|d| self.clean_deployment(d)))
    }

    pub fn deployments(&self, env: &str) -> Result<Vec<Deployment>> {
        let mut st = self.conn.prepare(
            "SELECT id, env, label, action, previous, started_at, finished_at, outcome, reason, actor
             FROM deployments WHERE env = ?1 ORDER BY id",
        )?;
        let rows: Vec<Deployment> = st.query_map([env], Self::deployment_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows.into_iter().map(|d| self.clean_deployment(d)).collect())
    }

    // ---- releases ----

    /// Records a run of `label`'s release command in `env`; returns its id.
    pub fn record_release(&self, env: &str, label: &str, r: &Released) -> Result<i64> {
        let id = self.write(
            || format!("record the release of {label} in {env} ({})", r.exit),
            |c| {
                c.execute(
                    "INSERT INTO releases (env, label, command, started_at, ended_at, exit, ok, tail)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        env,
                        label,
                        self.clean(&r.command),
                        r.started_at,
                        r.ended_at,
                        r.exit,
                        r.ok,
                        self.clean(&r.tail)
                    ],
                )?;
                Ok(c.last_insert_rowid())
            },
        )?;
        Ok(id.unwrap_or(0))
    }

    /// When `label`'s release last passed in `env`, if it ever did: a release runs once per
    /// environment.
    pub fn released_in(&self, env: &str, label: &str) -> Result<Option<Millis>> {
        Ok(self
            .conn
            .query_row(
                "SELECT MAX(ended_at) FROM releases WHERE env = ?1 AND label = ?2 AND ok = 1",
                params![env, label],
                |r| r.get::<_, Option<Millis>>(0),
            )
            .optional()?
            .flatten())
    }

    /// Records a rollback rehearsal: in `env`, `target` on `label`'s migrated data.
    pub fn record_rehearsal(&self, env: &str, label: &str, target: &str, ok: bool, detail: &str) -> Result<()> {
        self.write(
            || format!("record the rehearsal of a rollback from {label} to {target} in {env}"),
            |c| {
                c.execute(
                    "INSERT INTO rehearsals (at, env, label, target, ok, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![now_ms(), env, label, target, ok, self.clean(detail)],
                )
            },
        )?;
        Ok(())
    }

    /// A shadow metric's would-be verdict on `label` in `env`.
    pub fn record_shadow(&self, env: &str, label: &str, metric: &str, failed: bool, detail: &str) -> Result<()> {
        self.write(
            || format!("record shadow metric {metric:?}'s would-be verdict on {label} in {env}"),
            |c| {
                c.execute(
                    "INSERT INTO shadow_verdicts (at, env, label, metric, failed, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![now_ms(), env, label, metric, failed, self.clean(detail)],
                )
            },
        )?;
        Ok(())
    }

    /// Not enough evidence to judge `label` in `env` (`source`: the canary, a metric): recorded
    /// beside the verdicts, never as one.
    pub fn record_inconclusive(&self, env: &str, label: &str, source: &str, detail: &str) -> Result<()> {
        self.write(
            || format!("record that {source} could not judge {label} in {env}"),
            |c| {
                c.execute(
                    "INSERT INTO inconclusive (at, env, label, source, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![now_ms(), env, label, source, self.clean(detail)],
                )
            },
        )?;
        Ok(())
    }

    /// Per shadow metric: the versions it judged, those it would have failed, and of those the
    /// ones that proved healthy (a passing verdict recorded in the same environment after the
    /// would-be failure): how often it would have failed a good version.
    pub fn shadow_summary(&self) -> Result<Vec<(String, i64, i64, i64)>> {
        let mut st = self.conn.prepare(
            "SELECT s.metric, COUNT(DISTINCT s.env || ' ' || s.label),
                    COUNT(DISTINCT CASE WHEN s.failed THEN s.env || ' ' || s.label END),
                    COUNT(DISTINCT CASE WHEN s.failed AND EXISTS (
                        SELECT 1 FROM verifications v WHERE v.env = s.env AND v.label = s.label AND v.passed AND v.at > s.at
                    ) THEN s.env || ' ' || s.label END)
             FROM shadow_verdicts s GROUP BY s.metric ORDER BY s.metric",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The newest rehearsal of a rollback from `label` to `target`: (passed, detail, env).
    pub fn rehearsal(&self, label: &str, target: &str) -> Result<Option<(bool, String, String)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT ok, COALESCE(detail, ''), env FROM rehearsals WHERE label = ?1 AND target = ?2 ORDER BY id DESC LIMIT 1",
                params![label, target],
                |r| Ok((r.get::<_, bool>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)),
            )
            .optional()?
            .map(|(ok, d, e)| (ok, self.clean(&d), e)))
    }

    /// The release that ran before deployment `id`.
    pub fn record_deployment_release(&self, id: i64, release: i64) -> Result<()> {
        self.write(
            || format!("record release {release} on deployment {id}"),
            |c| c.execute("UPDATE deployments SET release_id = ?1 WHERE id = ?2", params![release, id]),
        )?;
        Ok(())
    }

    // ---- verifications ----

    pub fn record_verification(&self, env: &str, label: &str, passed: bool, detail: &str) -> Result<Millis> {
        let at = now_ms();
        let verdict = if passed { "passed" } else { "failed" };
        self.write(
            || format!("record that {label} {verdict} the smoke checks in {env}"),
            |c| {
                c.execute(
                    "INSERT INTO verifications (env, label, at, passed, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![env, label, at, passed, self.clean(detail)],
                )
            },
        )?;
        Ok(at)
    }

    /// Last known good in `env`: the newest version (by the ledger's own order, never the wall
    /// clock's) whose newest verdict there is a pass and which is not marked bad. A failing
    /// verdict after a pass (a later check, a bake round, a failed verification after a
    /// restore) takes it away.
    pub fn last_known_good(&self, env: &str) -> Result<Option<String>> {
        self.known_good_except(env, &[])
    }

    /// The last known good in `env` other than `label`: what to restore when `label` itself
    /// is found bad.
    pub fn last_known_good_except(&self, env: &str, label: &str) -> Result<Option<String>> {
        self.known_good_except(env, &[label])
    }

    /// The last known good in `env` among the versions not in `except`: the ledger's facts (each
    /// version's newest verdict there, in the ledger's order; the versions marked bad) judged
    /// by [`crate::rules::last_known_good`].
    pub fn known_good_except(&self, env: &str, except: &[&str]) -> Result<Option<String>> {
        let mut st = self.conn.prepare(
            "SELECT x.label, x.passed FROM verifications x
             WHERE x.env = ?1 AND x.id = (SELECT MAX(y.id) FROM verifications y WHERE y.env = x.env AND y.label = x.label)
             ORDER BY x.id",
        )?;
        let newest: Vec<(String, bool)> =
            st.query_map([env], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
        let mut st = self.conn.prepare("SELECT label FROM versions WHERE bad_at IS NOT NULL")?;
        let bad: Vec<String> = st.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        let verdicts: Vec<(&str, bool)> = newest.iter().map(|(l, p)| (l.as_str(), *p)).collect();
        let bad: Vec<&str> = bad.iter().map(String::as_str).collect();
        Ok(crate::rules::last_known_good(&verdicts, &bad, except).map(str::to_string))
    }

    /// Whether `label` is known good in `env`: its newest verdict there is a pass and it is not
    /// marked bad.
    pub fn known_good_in(&self, env: &str, label: &str) -> Result<bool> {
        Ok(self.newest_verdict(env, label)? == Some(true) && self.version(label)?.is_none_or(|v| v.bad_at.is_none()))
    }

    /// `label`'s newest verdict in `env`: passed or not; `None` when it has none there.
    pub fn newest_verdict(&self, env: &str, label: &str) -> Result<Option<bool>> {
        Ok(self
            .conn
            .query_row(
                "SELECT passed FROM verifications WHERE env = ?1 AND label = ?2 ORDER BY id DESC LIMIT 1",
                [env, label],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Whether `label`'s newest verdict in `env` is a failure, or it is marked bad: a version
    /// that failed there is never kept warm.
    pub fn failed_in(&self, env: &str, label: &str) -> Result<bool> {
        let bad = self.version(label)?.is_some_and(|v| v.bad_at.is_some());
        Ok(bad || self.failed_since_last_pass(env, label)?.is_some())
    }

    /// The newest verdict on `label` in `env` when it is a failure: its detail. A version that
    /// passed and then failed (a bake round, a later check) is suspect.
    pub fn failed_since_last_pass(&self, env: &str, label: &str) -> Result<Option<String>> {
        let newest: Option<(bool, Option<String>)> = self
            .conn
            .query_row(
                "SELECT passed, detail FROM verifications WHERE env = ?1 AND label = ?2 ORDER BY id DESC LIMIT 1",
                [env, label],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(newest
            .filter(|(passed, _)| !passed)
            .map(|(_, d)| d.map(|d| self.clean(&d)).unwrap_or_else(|| "a failed check".into())))
    }

    /// Whether `label` has ever passed the smoke checks in `env`.
    pub fn verified_in(&self, env: &str, label: &str) -> Result<bool> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM verifications WHERE env = ?1 AND label = ?2 AND passed = 1)",
            [env, label],
            |r| r.get(0),
        )?)
    }

    /// The first failed verification of `label` in `env` at or after `since`.
    pub fn first_failure_since(&self, env: &str, label: &str, since: Millis) -> Result<Option<Millis>> {
        Ok(self.conn.query_row(
            "SELECT MIN(at) FROM verifications WHERE env = ?1 AND label = ?2 AND passed = 0 AND at >= ?3",
            params![env, label, since],
            |r| r.get(0),
        )?)
    }

    // ---- gate waivers ----

    /// Records that `checks` of the gate were waived for `commit`, and why.
    pub fn record_waiver(&self, commit: &str, base: &str, checks: &str, reason: &str) -> Result<()> {
        let actor = &self.actor;
        self.write(
            || format!("record the waiver of {checks} for {commit} ({reason})"),
            |c| {
                c.execute(
                    "INSERT INTO gate_waivers (at, commit_id, base, checks, reason, actor) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![now_ms(), commit, base, checks, self.clean(reason), actor],
                )
            },
        )?;
        Ok(())
    }

    /// Records that `env` was stopped by hand; `label` is what ran there.
    pub fn record_stop(&self, env: &str, label: Option<&str>, reason: Option<&str>) -> Result<()> {
        let actor = &self.actor;
        self.write(
            || format!("record {env} as stopped by hand"),
            |c| {
                c.execute(
                    "INSERT INTO stops (env, label, at, actor, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![env, label, now_ms(), actor, reason.map(|r| self.clean(r))],
                )
            },
        )?;
        Ok(())
    }

    /// The last hand stop of `env`, when nothing was deployed there after it.
    pub fn stopped(&self, env: &str) -> Result<Option<Stop>> {
        let stop = self
            .conn
            .query_row(
                "SELECT env, label, at, actor, reason FROM stops WHERE env = ?1 ORDER BY id DESC LIMIT 1",
                [env],
                |r| Ok(Stop { env: r.get(0)?, label: r.get(1)?, at: r.get(2)?, actor: r.get(3)?, reason: r.get(4)? }),
            )
            .optional()?;
        let last_deploy = self.deployments(env)?.last().map(|d| d.started_at).unwrap_or(0);
        Ok(stop.filter(|s| s.at >= last_deploy).map(|s| self.clean_stop(s)))
    }

    pub fn stops(&self, env: &str) -> Result<Vec<Stop>> {
        let mut st = self.conn.prepare("SELECT env, label, at, actor, reason FROM stops WHERE env = ?1 ORDER BY id")?;
        let rows: Vec<Stop> = st
            .query_map([env], |r| {
                Ok(Stop { env: r.get(0)?, label: r.get(1)?, at: r.get(2)?, actor: r.get(3)?, reason: r.get(4)? })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows.into_iter().map(|s| self.clean_stop(s)).collect())
    }

    pub fn verifications(&self, env: &str) -> Result<Vec<Verification>> {
        let mut st =
            self.conn.prepare("SELECT env, label, at, passed, detail FROM verifications WHERE env = ?1 ORDER BY id")?;
        let rows: Vec<Verification> = st
            .query_map([env], |r| {
                Ok(Verification {
                    env: r.get(0)?,
                    label: r.get(1)?,
                    at: r.get(2)?,
                    passed: r.get(3)?,
                    detail: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows.into_iter().map(|v| self.clean_verification(v)).collect())
    }

    // ---- incidents and the SLA budget ----

    /// Opens an incident before anything is done about it (`restored_at` empty): a run killed
    /// while restoring leaves it open, and the next run in the environment closes it, so no
    /// incident is lost and the budget is never under-counted. Returns its id (0 in a dry run).
    pub fn open_incident(&self, i: &Incident) -> Result<i64> {
        let id = self.write(
            || {
                let restored = i.restored_label.as_deref().unwrap_or("-");
                format!(
                    "record incident in {}: {} replaced by {restored}, detected {} (open until {restored} serves)",
                    i.env,
                    i.bad_label.as_deref().unwrap_or("-"),
                    rfc3339(i.detected_at)
                )
            },
            |c| {
                c.execute(
                    "INSERT INTO incidents (env, bad_label, restored_label, detected_at, reason, took_traffic_at,
                     rollback_started_at, charged_from, share_percent, cause, alert_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    params![
                        i.env,
                        i.bad_label,
                        i.restored_label,
                        i.detected_at,
                        i.reason.as_deref().map(|r| self.clean(r)),
                        i.took_traffic_at,
                        i.rollback_started_at,
                        i.charged_from,
                        i.share_percent,
                        i.cause,
                        i.alert_id
                    ],
                )?;
                Ok(c.last_insert_rowid())
            },
        )?;
        Ok(id.unwrap_or(0))
    }

    /// Closes an open incident: `restored` serves again from `at`.
    pub fn close_incident(&self, id: i64, restored: &str, at: Millis, note: Option<&str>) -> Result<()> {
        // The charge is the rules' (crate::rules::downtime), from the row's own facts.
        let open = self
            .conn
            .query_row(&format!("{INCIDENT_COLUMNS} WHERE id = ?1 AND restored_at IS NULL"), [id], incident_row)
            .optional()?;
        let downtime = open.as_ref().map(|i| i.downtime_until(at));
        self.write(
            || format!("close the incident: {restored} serves again from {}", rfc3339(at)),
            |c| {
                c.execute(
                    "UPDATE incidents SET restored_label = ?2, restored_at = ?3, downtime_ms = ?5,
                     reason = COALESCE(reason, '') || COALESCE(?4, '')
                     WHERE id = ?1 AND restored_at IS NULL",
                    params![id, restored, at, note.map(|n| self.clean(n)), downtime],
                )
            },
        )?;
        Ok(())
    }

    /// The incident a Datadog alert caused, if it caused one.
    pub fn incident_for_alert(&self, alert_id: &str) -> Result<Option<Incident>> {
        Ok(self
            .conn
            .query_row(&format!("{INCIDENT_COLUMNS} WHERE alert_id = ?1 ORDER BY id LIMIT 1"), [alert_id], incident_row)
            .optional()?
            .map(|i| self.clean_incident(i)))
    }

    /// The incidents of `env` still open (newest last).
    pub fn open_incidents(&self, env: &str) -> Result<Vec<Incident>> {
        let mut st =
            self.conn.prepare(&format!("{INCIDENT_COLUMNS} WHERE env = ?1 AND restored_at IS NULL ORDER BY id"))?;
        let rows: Vec<Incident> = st.query_map([env], incident_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows.into_iter().map(|i| self.clean_incident(i)).collect())
    }

    pub fn incidents_of(&self, env: &str) -> Result<Vec<Incident>> {
        let mut st = self.conn.prepare(&format!("{INCIDENT_COLUMNS} WHERE env = ?1 ORDER BY id"))?;
        let rows: Vec<Incident> = st.query_map([env], incident_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows.into_iter().map(|i| self.clean_incident(i)).collect())
    }

    pub fn incidents(&self, envs: &[String], since: Millis) -> Result<Vec<Incident>> {
        let mut st = self.conn.prepare(&format!("{INCIDENT_COLUMNS} WHERE detected_at >= ?1 ORDER BY id"))?;
        let rows = st.query_map([since], incident_row)?;
        let all: Vec<Incident> = rows.collect::<rusqlite::Result<_>>()?;
        Ok(all.into_iter().filter(|i| envs.iter().any(|e| e == &i.env)).map(|i| self.clean_incident(i)).collect())
    }
}

const INCIDENT_COLUMNS: &str =
    "SELECT id, env, bad_label, restored_label, detected_at, restored_at, downtime_ms, reason,
     took_traffic_at, rollback_started_at, charged_from, share_percent, cause, alert_id FROM incidents";

fn incident_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Incident> {
    Ok(Incident {
        id: r.get(0)?,
        env: r.get(1)?,
        bad_label: r.get(2)?,
        restored_label: r.get(3)?,
        detected_at: r.get(4)?,
        restored_at: r.get(5)?,
        downtime_ms: r.get(6)?,
        reason: r.get(7)?,
        took_traffic_at: r.get(8)?,
        rollback_started_at: r.get(9)?,
        charged_from: r.get(10)?,
        share_percent: r.get(11)?,
        cause: r.get(12)?,
        alert_id: r.get(13)?,
    })
}

impl Incident {
    /// Its downtime: as recorded once closed; while open, until `now` (an incident still open
    /// spends the budget as it goes).
    pub fn downtime_until(&self, now: Millis) -> i64 {
        self.downtime_ms.unwrap_or_else(|| {
            let cause = self.cause.as_deref().and_then(Cause::parse).unwrap_or(Cause::Smoke);
            crate::rules::downtime(cause, self.charged_from.unwrap_or(self.detected_at), now, self.share_percent)
        })
    }
}

fn inode(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.ino())
}
