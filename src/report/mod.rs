//! `safedeploy report`: the ledger of a period at a glance — what was deployed where, by whom,
//! from which commit, with what outcome; the incidents and their exposure; the SLA budget's
//! burn; the four DORA keys; and the bad versions stopped, by the layer that stopped them. One
//! computation ([`build`]) feeds both the `--json` document and the HTML page ([`html`]), so
//! the page never shows a number the document does not.

mod html;

use crate::clock::{Millis, now_ms, rfc3339};
use crate::context::Ctx;
use crate::ledger::{Incident, ReportRows};
use crate::rules;
use crate::{Outcome, usage};
use anyhow::Result;
use serde::Serialize;
use std::path::Path;

/// At most this many deployments are listed on the page (newest first); every figure is
/// computed from all of them.
pub const TIMELINE_ROWS: usize = 500;

#[derive(Debug, Serialize)]
pub struct Report {
    pub generated_at: String,
    pub from: String,
    pub to: String,
    /// The environments whose incidents spend the SLA budget.
    pub production: Vec<String>,
    pub deployments: Vec<TimelineRow>,
    /// How many deployments the period holds (the timeline may list fewer).
    pub deployment_count: usize,
    pub incidents: Vec<IncidentRow>,
    pub budget: Burn,
    pub dora: Dora,
    pub stopped: Stopped,
    /// Each metric in shadow mode: how often it would have failed a version, and how often a
    /// version that proved healthy.
    pub shadow_metrics: Vec<ShadowRow>,
}

#[derive(Debug, Serialize)]
pub struct ShadowRow {
    pub metric: String,
    /// Versions (per environment) it judged.
    pub versions: i64,
    pub would_fail: i64,
    /// Of those it would have failed, the ones that passed their checks there afterwards.
    pub would_fail_healthy: i64,
}

#[derive(Debug, Serialize)]
pub struct TimelineRow {
    pub env: String,
    pub at: String,
    pub version: String,
    pub action: String,
    pub actor: Option<String>,
    pub commit: Option<String>,
    pub outcome: String,
}

#[derive(Debug, Serialize)]
pub struct IncidentRow {
    pub env: String,
    pub bad_version: Option<String>,
    pub restored_version: Option<String>,
    pub took_traffic_at: Option<String>,
    pub detected_at: String,
    pub restored_at: Option<String>,
    /// What was charged to the budget (the exposure, times a canary's share).
    pub exposure_ms: i64,
    pub share_percent: i64,
    pub reason: Option<String>,
}

/// The budget of the period and how it was spent: `points` are (ms since `from`, ms used so
/// far), one per incident, in order.
#[derive(Debug, Serialize)]
pub struct Burn {
    /// The start of the SLA's period (the chart's left edge).
    pub from: String,
    pub allowed_ms: i64,
    pub used_ms: i64,
    pub left_ms: i64,
    pub points: Vec<(i64, i64)>,
    pub span_ms: i64,
}

/// The four DORA keys over the period, for the production environments.
#[derive(Debug, Serialize)]
pub struct Dora {
    /// Healthy deployments to production.
    pub deployments: usize,
    pub days: f64,
    pub per_week: f64,
    /// Median time from a change's commit to its switch in production.
    pub lead_time_ms: Option<i64>,
    /// Production deployments whose version caused an incident there, of all of them.
    pub change_failure_rate: Option<f64>,
    pub failed_changes: usize,
    /// Median time from the first failing verdict to the good version serving again.
    pub time_to_restore_ms: Option<i64>,
}

/// Bad versions (and, for the gate, commits) stopped, by the layer that stopped them.
#[derive(Debug, Serialize, Default)]
pub struct Stopped {
    pub gate: usize,
    pub staging_smoke: usize,
    pub pre_traffic: usize,
    pub canary: usize,
    pub production_smoke: usize,
    pub alert: usize,
    /// Rolled back by a person on their own word (no verdict on the version there).
    pub by_hand: usize,
}

pub struct ReportRequest<'a> {
    pub env: Option<&'a str>,
    pub since: Option<&'a str>,
    pub html: Option<&'a Path>,
}

/// `safedeploy report`.
pub fn report(ctx: &Ctx, req: &ReportRequest<'_>) -> Result<Outcome> {
    if let Some(e) = req.env {
        ctx.config.environment(e)?;
    }
    let now = now_ms();
    let period = ctx.config.sla.period.start(now);
    let from = match req.since {
        Some(s) => since(s, now)?,
        None => period,
    };
    let ledger = ctx.ledger_read_only()?;
    let rows = ledger.report_rows(from)?;
    let budget = ledger.incidents(&ctx.config.sla.environments, period)?;
    let mut r = build(ctx, &rows, &budget, Window { only: req.env, from, period, now });
    r.shadow_metrics = ledger
        .shadow_summary()?
        .into_iter()
        .map(|(metric, versions, would_fail, would_fail_healthy)| ShadowRow {
            metric,
            versions,
            would_fail,
            would_fail_healthy,
        })
        .collect();
    if let Some(out) = req.html {
        ctx.check_report_path(out, "--html", &[])?;
    }
    if req.html.is_none() && !ctx.ui.json {
        return Err(usage!("report: expected --html FILE (the page) or --json (the document), or both"));
    }
    if let Some(out) = req.html {
        let page = html::render(&r, &ctx.config.app.name);
        ctx.write_report(out, &page, "the report page")?;
    }
    let d = &r.dora;
    let or_dash = |ms: Option<i64>| ms.map(crate::clock::human).unwrap_or_else(|| "—".into());
    ctx.ui.result(format!(
        "report {} → {}: {} deployment(s), {} incident(s); SLA budget {} left of {}",
        &r.from[..10.min(r.from.len())],
        &r.to[..10.min(r.to.len())],
        r.deployment_count,
        r.incidents.len(),
        crate::clock::human(r.budget.left_ms),
        crate::clock::human(r.budget.allowed_ms)
    ));
    ctx.ui.result(format!(
        "DORA: {:.1} deployments a week; lead time {}; change failure rate {}; time to restore {}",
        d.per_week,
        or_dash(d.lead_time_ms),
        d.change_failure_rate.map(|x| format!("{:.1} %", x * 100.0)).unwrap_or_else(|| "—".into()),
        or_dash(d.time_to_restore_ms)
    ));
    if let Some(out) = req.html {
        ctx.ui.result(format!("report page: {}", out.display()));
    }
    Outcome::of(&r)
}

/// `--since`: an RFC 3339 date or time, or a duration back from now (`30d`, `12h`).
fn since(s: &str, now: Millis) -> Result<Millis> {
    let t = s.trim();
    // A date alone is its midnight (UTC).
    let when = if t.len() == 10 { format!("{t}T00:00:00Z") } else { t.to_string() };
    crate::clock::parse_when(&when, now).filter(|ms| *ms <= now).ok_or_else(|| {
        usage!("--since {s:?}: expected a date (2026-01-01), an RFC 3339 time, or a duration back from now (30d)")
    })
}

fn median(mut xs: Vec<i64>) -> Option<i64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_unstable();
    let n = xs.len();
    Some(if n % 2 == 1 { xs[n / 2] } else { (xs[n / 2 - 1] + xs[n / 2]) / 2 })
}

/// What a report covers: one environment or all, from `from` to `now`; the SLA budget's own
/// period starts at `period`.
pub struct Window<'a> {
    pub only: Option<&'a str>,
    pub from: Millis,
    pub period: Millis,
    pub now: Millis,
}

/// Everything the page and the document show, from the rows of the period and the incidents of
/// the SLA budget's period.
pub fn build(ctx: &Ctx, rows: &ReportRows, budget_incidents: &[Incident], w: Window<'_>) -> Report {
    let Window { only, from, period, now } = w;
    let production: Vec<String> = ctx.config.sla.environments.clone();
    let is_prod = |e: &str| production.iter().any(|p| p == e);
    let wanted = |e: &str| only.is_none_or(|o| o == e);
    let deployments: Vec<_> = rows.deployments.iter().filter(|d| wanted(&d.env)).collect();
    let incidents: Vec<&Incident> = rows.incidents.iter().filter(|i| wanted(&i.env)).collect();
    let timeline = deployments
        .iter()
        .rev()
        .take(TIMELINE_ROWS)
        .map(|d| TimelineRow {
            env: d.env.clone(),
            at: rfc3339(d.started_at),
            version: d.label.clone(),
            action: d.action.clone(),
            actor: d.actor.clone(),
            commit: d.commit.as_deref().map(|c| crate::git::short(c).to_string()),
            outcome: d.outcome.clone(),
        })
        .collect();
    let budget = burn(ctx, budget_incidents, period, now);
    let dora = dora(&deployments, &incidents, &is_prod, from, now);
    let stopped = stopped(rows, &is_prod, &wanted);
    Report {
        generated_at: rfc3339(now),
        from: rfc3339(from),
        to: rfc3339(now),
        production,
        deployment_count: deployments.len(),
        deployments: timeline,
        incidents: incidents
            .iter()
            .map(|i| IncidentRow {
                env: i.env.clone(),
                bad_version: i.bad_label.clone(),
                restored_version: i.restored_label.clone(),
                took_traffic_at: i.took_traffic_at.map(rfc3339),
                detected_at: rfc3339(i.detected_at),
                restored_at: i.restored_at.map(rfc3339),
                exposure_ms: i.downtime_until(now),
                share_percent: i.share_percent.unwrap_or(100),
                reason: i.reason.clone(),
            })
            .collect(),
        budget,
        dora,
        stopped,
        shadow_metrics: vec![],
    }
}

/// The budget: the SLA environments' incidents of its own period, in order.
fn burn(ctx: &Ctx, budget_incidents: &[Incident], period: Millis, now: Millis) -> Burn {
    let mut used = 0;
    let mut points = vec![];
    for i in budget_incidents {
        used += i.downtime_until(now);
        points.push((i.restored_at.unwrap_or(now) - period, used));
    }
    let allowed = ctx.config.sla.allowed_downtime.0.as_millis() as i64;
    Burn {
        allowed_ms: allowed,
        used_ms: used,
        left_ms: (allowed - used).max(0),
        points,
        span_ms: now - period,
        from: rfc3339(period),
    }
}

/// DORA's four figures, over production: deployments a week, lead time for changes, change
/// failure rate, and time to restore.
fn dora(
    deployments: &[&crate::ledger::ReportDeployment],
    incidents: &[&Incident],
    is_prod: &dyn Fn(&str) -> bool,
    from: Millis,
    now: Millis,
) -> Dora {
    let to_prod: Vec<_> =
        deployments.iter().filter(|d| is_prod(&d.env) && d.outcome == "healthy" && d.action == "promote").collect();
    let days = ((now - from) as f64 / 86_400_000.0).max(1.0 / 24.0);
    let lead: Vec<i64> = to_prod
        .iter()
        .filter_map(|d| Some(d.switched_at.or(d.finished_at)? - d.committed_at?))
        .filter(|ms| *ms >= 0)
        .collect();
    let bad_in_prod: std::collections::HashSet<(&str, &str)> = incidents
        .iter()
        .filter(|i| is_prod(&i.env))
        .filter_map(|i| Some((i.env.as_str(), i.bad_label.as_deref()?)))
        .collect();
    let failed_changes = to_prod.iter().filter(|d| bad_in_prod.contains(&(d.env.as_str(), d.label.as_str()))).count();
    let restores: Vec<i64> = incidents
        .iter()
        .filter(|i| is_prod(&i.env))
        .filter_map(|i| Some(i.restored_at? - i.detected_at))
        .map(|ms| ms.max(0))
        .collect();
    Dora {
        deployments: to_prod.len(),
        days,
        per_week: to_prod.len() as f64 / days * 7.0,
        lead_time_ms: median(lead),
        change_failure_rate: (!to_prod.is_empty()).then(|| failed_changes as f64 / to_prod.len() as f64),
        failed_changes,
        time_to_restore_ms: median(restores),
    }
}

/// The bad versions each layer stopped: a commit the gate failed, and the versions
/// [`rules::stopped_by_layer`] attributes to each layer from the verdicts and incidents.
fn stopped(rows: &ReportRows, is_prod: &dyn Fn(&str) -> bool, wanted: &dyn Fn(&str) -> bool) -> Stopped {
    use std::collections::HashSet;
    let mut s = Stopped {
        gate: rows.gate_runs.iter().filter(|g| !g.passed).map(|g| g.commit.as_str()).collect::<HashSet<_>>().len(),
        ..Default::default()
    };
    let verdicts: Vec<rules::VerdictFact<'_>> = rows
        .verifications
        .iter()
        .filter(|v| wanted(&v.env))
        .map(|v| rules::VerdictFact {
            label: &v.label,
            production: is_prod(&v.env),
            passed: v.passed,
            detail: v.detail.as_deref().unwrap_or_default(),
        })
        .collect();
    let incidents: Vec<rules::IncidentFact<'_>> = rows
        .incidents
        .iter()
        .filter(|i| is_prod(&i.env) && wanted(&i.env))
        .filter_map(|i| {
            Some(rules::IncidentFact {
                bad: i.bad_label.as_deref()?,
                cause: i.cause.as_deref().and_then(rules::Cause::parse),
                shared: i.share_percent.is_some(),
                reason: i.reason.as_deref().unwrap_or_default(),
            })
        })
        .collect();
    let by = rules::stopped_by_layer(&verdicts, &incidents);
    let count = |l: rules::Layer| by.get(&l).map_or(0, |s| s.len());
    s.staging_smoke = count(rules::Layer::StagingSmoke);
    s.pre_traffic = count(rules::Layer::PreTraffic);
    s.canary = count(rules::Layer::Canary);
    s.production_smoke = count(rules::Layer::ProductionSmoke);
    s.alert = count(rules::Layer::Alert);
    s.by_hand = count(rules::Layer::ByHand);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_date_a_time_or_a_duration_back_and_never_the_future() {
        let now = crate::clock::parse_rfc3339("2026-12-01T12:00:00Z").expect("now");
        assert_eq!(since("2026-01-01", now).ok(), crate::clock::parse_rfc3339("2026-01-01T00:00:00Z"));
        assert_eq!(since(" 2026-11-30T06:00:00Z ", now).ok(), crate::clock::parse_rfc3339("2026-11-30T06:00:00Z"));
        assert_eq!(since("2h", now).ok(), Some(now - 7_200_000));
        for bad in ["2027-01-01", "", "-", "..", "yesterday", "2026-13-01"] {
            assert!(since(bad, now).is_err(), "{bad:?}");
        }
    }
}
