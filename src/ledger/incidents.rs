//! Hand stops, incidents and the SLA budget they spend.

use super::{Cause, Incident, Ledger, Stop};
use crate::clock::{Millis, now_ms, rfc3339};
use anyhow::Result;
use rusqlite::{OptionalExtension, params};

impl Ledger {
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

pub(super) const INCIDENT_COLUMNS: &str =
    "SELECT id, env, bad_label, restored_label, detected_at, restored_at, downtime_ms, reason,
     took_traffic_at, rollback_started_at, charged_from, share_percent, cause, alert_id FROM incidents";

pub(super) fn incident_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Incident> {
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
