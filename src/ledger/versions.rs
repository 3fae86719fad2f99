//! Versions (their bundles, commits and bad marks), and the gate's verdicts and waivers.

use super::{Ledger, Version};
use crate::clock::{Millis, now_ms};
use anyhow::Result;
use rusqlite::{OptionalExtension, params};

impl Ledger {
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

    /// What a user who named a version the ledger does not know is told: the newest labels
    /// registered (at most five), or that none is.
    pub fn unknown_version_hint(&self) -> Result<String> {
        let mut stmt = self.conn.prepare("SELECT label FROM versions ORDER BY created_at DESC, rowid DESC LIMIT 6")?;
        let labels: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        Ok(match labels.len() {
            0 => "no version is registered yet: deploy-staging --version LABEL registers one".to_string(),
            n => format!(
                "the {}versions deploy-staging registered: {}{} (safedeploy history lists them)",
                if n > 5 { "newest " } else { "" },
                labels.iter().take(5).map(String::as_str).collect::<Vec<_>>().join(", "),
                if n > 5 { ", …" } else { "" }
            ),
        })
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
}
