//! The ledger's rows as the rest of the product reads them.

use crate::clock::Millis;
use serde::Serialize;

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
