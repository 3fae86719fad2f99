//! Datadog monitors as evidence in a canary round or a bake: each monitor's state judged by
//! policy, so only what speaks against the version is a verdict.
//!
//! - `OK` passes; `Alert` fails — unless the monitor has been alerting since before the judged
//!   version took traffic (its `overall_state_modified`): that alert is not this version's.
//! - `Warn` and `No Data` (with `Unknown`) follow `smoke.datadog.warn` / `no_data`, whose
//!   default is no verdict, said as such: low traffic right after a deploy produces `No Data`.
//! - `Ignored` and `Skipped` are no verdict.
//!
//! Monitors are named by id (`GET /api/v1/monitor/{id}`) and by tags
//! (`GET /api/v1/monitor?monitor_tags=a,b`). An API that cannot answer is "could not act".

use super::spec::{Datadog, StatePolicy};
use crate::clock::Millis;
use crate::context::Ctx;
use crate::http::Request;
use anyhow::Result;
use serde::Serialize;

/// What one monitor says of the version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Judged {
    Pass,
    Fail,
    /// No verdict either way, and why.
    NotJudged(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct MonitorState {
    pub id: u64,
    pub name: String,
    pub state: String,
    pub judged: Judged,
}

impl MonitorState {
    pub fn failed(&self) -> bool {
        self.judged == Judged::Fail
    }

    /// The monitor as the console says it.
    pub fn describe(&self) -> String {
        let name = if self.name.is_empty() { String::new() } else { format!(" ({})", self.name) };
        match &self.judged {
            Judged::NotJudged(why) => {
                format!("Datadog monitor {}{name} is {}: no verdict ({why})", self.id, self.state)
            }
            _ => format!("Datadog monitor {}{name} is {}", self.id, self.state),
        }
    }
}

/// The judgement of one state. `changed_at`: when the monitor entered it; `since`: when the
/// judged version took traffic (or its promote began).
pub fn judge(dd: &Datadog, state: &str, changed_at: Option<Millis>, since: Option<Millis>) -> Judged {
    let policy = |p: StatePolicy, field: &str| match p {
        StatePolicy::Fail => Judged::Fail,
        StatePolicy::Ignore => Judged::NotJudged(format!("smoke.datadog.{field} = \"ignore\"")),
    };
    match state {
        "OK" => Judged::Pass,
        "Alert" => match (changed_at, since) {
            (Some(c), Some(s)) if c < s => Judged::NotJudged(format!(
                "alerting since {}, before the version took traffic",
                crate::clock::rfc3339(c)
            )),
            _ => Judged::Fail,
        },
        "Warn" => policy(dd.warn, "warn"),
        "No Data" | "Unknown" => policy(dd.no_data, "no_data"),
        other => Judged::NotJudged(format!("{other} is no verdict")),
    }
}

/// Every named monitor's state, judged: those by id, then those the tags find (once each).
pub fn read(ctx: &Ctx, dd: &Datadog, since: Option<Millis>) -> Result<Vec<MonitorState>> {
    let key = |var: &str| {
        ctx.env
            .get(var)
            .map(str::to_string)
            .ok_or_else(|| crate::usage!("smoke.datadog: {var} is not set; the monitor API needs it"))
    };
    let (api, app) = (key(&dd.api_key_env)?, key(&dd.app_key_env)?);
    let get = |url: String, what: &str| -> Result<Option<serde_json::Value>> {
        let mut req = Request::get(url).timeout(ctx.config.smoke.timeout.0);
        req.headers = vec![("DD-API-KEY".into(), api.clone()), ("DD-APPLICATION-KEY".into(), app.clone())];
        let Some(r) = ctx.http.send(&req)? else { return Ok(None) };
        if r.status != 200 {
            return Err(crate::could_not_act!("{what}: GET {} answered {} {}", req.url, r.status, r.body_start()));
        }
        serde_json::from_str(&r.body)
            .map(Some)
            .map_err(|e| crate::could_not_act!("{what}: the answer is not JSON ({e})"))
    };
    let mut found: Vec<serde_json::Value> = vec![];
    for id in &dd.monitors {
        found.extend(get(format!("{}/api/v1/monitor/{id}", dd.api_base()), &format!("Datadog monitor {id}"))?);
    }
    if !dd.monitor_tags.is_empty() {
        let tags: Vec<&str> = dd.monitor_tags.iter().map(|t| t.as_str()).collect();
        let mut url = reqwest::Url::parse(&format!("{}/api/v1/monitor", dd.api_base()))
            .map_err(|e| crate::usage!("smoke.datadog: {e}"))?;
        url.query_pairs_mut().append_pair("monitor_tags", &tags.join(","));
        let what = format!("Datadog monitors tagged {}", tags.join(","));
        if let Some(list) = get(url.to_string(), &what)? {
            let list = list.as_array().cloned().ok_or_else(|| crate::could_not_act!("{what}: expected a list"))?;
            if list.is_empty() && !ctx.dry_run {
                return Err(crate::could_not_act!(
                    "{what}: no monitor carries these tags, so none can judge the version; check smoke.datadog.monitor_tags"
                ));
            }
            found.extend(list);
        }
    }
    let mut out: Vec<MonitorState> = vec![];
    for m in found {
        let id = m.get("id").and_then(|v| v.as_u64()).unwrap_or_default();
        if out.iter().any(|o| o.id == id) {
            continue;
        }
        let state = m
            .get("overall_state")
            .and_then(|s| s.as_str())
            .map(str::to_string)
            .ok_or_else(|| crate::could_not_act!("Datadog monitor {id}: the answer has no overall_state"))?;
        let changed_at = m.get("overall_state_modified").and_then(|s| s.as_str()).and_then(crate::clock::parse_rfc3339);
        let name = m.get("name").and_then(|s| s.as_str()).unwrap_or_default().to_string();
        let judged = judge(dd, &state, changed_at, since);
        out.push(MonitorState { id, name, state, judged });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_state_is_judged_by_its_policy_and_an_older_alert_is_not_the_versions() {
        let lenient = Datadog::default();
        let strict = Datadog { warn: StatePolicy::Fail, no_data: StatePolicy::Fail, ..Datadog::default() };
        let ignored = |why: &str| Judged::NotJudged(why.to_string());
        let (before, took, after) = (Some(1_000), Some(2_000), Some(3_000));
        let cases = [
            // (policy, state, changed at, version took traffic at) → judged
            (&lenient, "OK", None, took, Judged::Pass),
            (&lenient, "Alert", after, took, Judged::Fail),
            (&lenient, "Alert", None, took, Judged::Fail),
            (&lenient, "Alert", before, None, Judged::Fail),
            (
                &lenient,
                "Alert",
                before,
                took,
                ignored("alerting since 1970-01-01T00:00:01.000Z, before the version took traffic"),
            ),
            (&lenient, "Warn", after, took, ignored("smoke.datadog.warn = \"ignore\"")),
            (&lenient, "No Data", after, took, ignored("smoke.datadog.no_data = \"ignore\"")),
            (&lenient, "Unknown", after, took, ignored("smoke.datadog.no_data = \"ignore\"")),
            (&strict, "Warn", after, took, Judged::Fail),
            (&strict, "No Data", after, took, Judged::Fail),
            (&strict, "Ignored", after, took, ignored("Ignored is no verdict")),
            (&strict, "Skipped", after, took, ignored("Skipped is no verdict")),
        ];
        for (dd, state, changed, since, want) in cases {
            assert_eq!(judge(dd, state, changed, since), want, "{state} {:?} {:?}", dd.warn, dd.no_data);
        }
    }
}
