//! Smoke-check verdicts, and from them the last known good version of an environment; beside
//! them, what is never a verdict: a shadow metric's would-be verdicts, and "inconclusive".

use super::{Ledger, Verification};
use crate::clock::{Millis, now_ms};
use anyhow::Result;
use rusqlite::{OptionalExtension, params};

impl Ledger {
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

    pub fn verifications(&self, env: &str) -> Result<Vec<Verification>> {
        let mut st =
            self.conn.prepare("SELECT env, label, at, passed, detail FROM verifications WHERE env = ?1 ORDER BY id")?;
        let rows: Vec<Verification> = st.query_map([env], verification_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows.into_iter().map(|v| self.clean_verification(v)).collect())
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
}

/// A `SELECT env, label, at, passed, detail FROM verifications` row.
pub(super) fn verification_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Verification> {
    Ok(Verification { env: r.get(0)?, label: r.get(1)?, at: r.get(2)?, passed: r.get(3)?, detail: r.get(4)? })
}
