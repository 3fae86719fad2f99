//! The `[sla]` table as the file writes it: the downtime allowed per period, and where it
//! counts.

use crate::clock::Millis;
use crate::config::values::Dur;
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
