//! What `safedeploy report` reads: every table's rows of a period, in one place.

use super::incidents::{INCIDENT_COLUMNS, incident_row};
use super::verifications::verification_row;
use super::{GateRun, Incident, Ledger, ReportDeployment, ReportRows, Verification};
use crate::clock::Millis;
use anyhow::Result;

impl Ledger {
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
        let verifications: Vec<Verification> =
            st.query_map([since], verification_row)?.collect::<rusqlite::Result<_>>()?;
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
}
