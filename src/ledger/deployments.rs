//! Deployments (opened `in_progress`, closed later, abandoned when a killed run left them open)
//! and the release phase's runs and rehearsals.

use super::{Action, Deployment, Ledger, Released};
use crate::clock::{Millis, now_ms, rfc3339};
use anyhow::Result;
use rusqlite::{OptionalExtension, params};

impl Ledger {
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
}
