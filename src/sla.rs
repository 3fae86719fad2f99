//! The SLA budget: `[sla]` (the downtime allowed per period, the period, the environments whose
//! incidents spend it) and what the incidents in the ledger have spent of it.

use crate::clock::{Millis, human, now_ms, rfc3339};
use crate::config::Dur;
use crate::context::Ctx;
use crate::ledger::{Incident, Ledger};
use anyhow::Result;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sla {
    /// Downtime allowed per period (0: none at all).
    pub allowed_downtime: Dur<0, 31_622_400_000>,
    /// `"calendar year"` (UTC; the default) or a rolling window such as `"90d"`.
    pub period: Period,
    /// Environments whose incidents spend the budget; only promote deploys to them.
    pub environments: Vec<String>,
}

impl Default for Sla {
    fn default() -> Self {
        Sla {
            allowed_downtime: Dur::secs(15 * 60),
            period: Period::CalendarYear,
            environments: vec!["production".into()],
        }
    }
}

/// The period an SLA budget is counted over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Period {
    #[default]
    CalendarYear,
    /// A rolling window, from an hour to ten years.
    Rolling(Duration),
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if matches!(s.trim(), "calendar year" | "calendar-year" | "year") {
            return Ok(Period::CalendarYear);
        }
        let text = s.trim().strip_prefix("rolling").unwrap_or(s.trim()).trim();
        match Dur::<3_600_000, 315_360_000_000>::parse(text) {
            Ok(d) => Ok(Period::Rolling(d.0)),
            Err(_) => Err(serde::de::Error::custom(format!(
                "invalid period {s:?}; expected \"calendar year\" or a rolling window from 1h to 10 years, such as \"90d\""
            ))),
        }
    }
}

impl Serialize for Period {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.describe())
    }
}

impl Period {
    /// Where the period that contains `now` starts.
    pub fn start(&self, now: Millis) -> Millis {
        match self {
            Period::CalendarYear => crate::clock::year_start(now),
            Period::Rolling(d) => now - d.as_millis() as i64,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Period::CalendarYear => "calendar year".into(),
            Period::Rolling(d) => format!("rolling {}", humantime::format_duration(*d)),
        }
    }
}

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
