//! The SLA budget: `[sla]` (the downtime allowed per period, the period, the environments whose
//! incidents spend it) and what the incidents in the ledger have spent of it.

use crate::clock::{Millis, human, now_ms, rfc3339};
use crate::context::Ctx;
use crate::ledger::{Incident, Ledger};
use anyhow::Result;
use serde::Serialize;

pub mod settings;
pub use settings::{Period, Sla};

/// The budget now: what is allowed, used and left in the period.
#[derive(Debug, Clone, Serialize)]
pub struct Budget {
    pub period: String,
    pub from: String,
    pub environments: Vec<String>,
    pub allowed_ms: i64,
    pub used_ms: i64,
    pub left_ms: i64,
    pub spent: bool,
    pub incident_count: usize,
    pub open_incidents: usize,
}

impl Budget {
    /// The budget the incidents of the period (from `from`) spent; an open one spends until now.
    pub fn of(sla: &Sla, from: Millis, incidents: &[Incident]) -> Budget {
        let allowed = sla.allowed_downtime.0.as_millis() as i64;
        let now = now_ms();
        let used: i64 = incidents.iter().map(|i| i.downtime_until(now)).sum();
        Budget {
            period: sla.period.describe(),
            from: rfc3339(from),
            environments: sla.environments.clone(),
            allowed_ms: allowed,
            used_ms: used,
            left_ms: (allowed - used).max(0),
            spent: used >= allowed,
            incident_count: incidents.len(),
            open_incidents: incidents.iter().filter(|i| i.restored_at.is_none()).count(),
        }
    }

    /// The budget now, from the ledger.
    pub fn now(sla: &Sla, ledger: &Ledger) -> Result<Budget> {
        let from = sla.period.start(now_ms());
        Ok(Budget::of(sla, from, &ledger.incidents(&sla.environments, from)?))
    }

    /// `SLA budget (calendar year since 2026-01-01): 0.5s used of 15m, 14m 59s left`.
    pub fn line(&self) -> String {
        format!(
            "SLA budget ({} since {}): {} used of {}, {} left",
            self.period,
            &self.from[..10.min(self.from.len())],
            human(self.used_ms),
            human(self.allowed_ms),
            human(self.left_ms)
        )
    }
}

/// The budget report (`--budget`): every incident of the period with its downtime, the total,
/// and what is left.
#[derive(Debug, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub budget: Budget,
    pub incidents: Vec<Incident>,
}

/// `promote --budget` / `rollback --budget`: reads only; without a ledger nothing is spent.
pub fn report(ctx: &Ctx) -> Result<crate::Outcome> {
    let sla = &ctx.config.sla;
    let from = sla.period.start(now_ms());
    let incidents = ctx.ledger_read_only()?.incidents(&sla.environments, from)?;
    let budget = Budget::of(sla, from, &incidents);
    ctx.ui.result(budget.line());
    let now = now_ms();
    for i in &incidents {
        ctx.ui.result(format!(
            "  {} {}: {} → {}, downtime {}{}",
            rfc3339(i.detected_at),
            i.env,
            i.bad_label.as_deref().unwrap_or("(nothing)"),
            i.restored_label.as_deref().unwrap_or("(not restored)"),
            match i.restored_at {
                Some(_) => human(i.downtime_until(now)),
                None => format!("{} so far (open)", human(i.downtime_until(now))),
            },
            i.reason.as_deref().map(|r| format!(" — {r}")).unwrap_or_default()
        ));
    }
    crate::Outcome::of(&Report { budget, incidents })
}
