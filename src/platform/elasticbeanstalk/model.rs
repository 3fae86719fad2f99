//! Elastic Beanstalk's answers as the aws CLI gives them (botocore's shapes: environments,
//! events, application versions, instances' enhanced health), and what a canary reads from
//! them: each version's answers to users and its latency percentiles.

use serde::Deserialize;

/// An environment as `describe-environments` shows it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct EnvDesc {
    pub(super) environment_name: String,
    #[serde(default)]
    pub(super) version_label: Option<String>,
    pub(super) status: String,
    #[serde(default)]
    pub(super) health: Option<String>,
    #[serde(rename = "CNAME", default)]
    pub(super) cname: Option<String>,
}

impl EnvDesc {
    pub(super) fn label(&self) -> &str {
        self.version_label.as_deref().unwrap_or("(none)")
    }
    pub(super) fn health(&self) -> &str {
        self.health.as_deref().unwrap_or("Grey")
    }
    pub(super) fn owns(&self, cname: &str) -> bool {
        let have = self.cname.as_deref().unwrap_or_default().to_ascii_lowercase();
        let want = cname.to_ascii_lowercase();
        have == want || have.strip_prefix(&want).is_some_and(|rest| rest.starts_with('.'))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Event {
    pub(super) event_date: String,
    pub(super) message: String,
    #[serde(default)]
    pub(super) severity: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct AppVersion {
    #[serde(default)]
    pub(super) source_bundle: Option<S3Location>,
    #[serde(default)]
    pub(super) status: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct S3Location {
    pub(super) s3_bucket: String,
    pub(super) s3_key: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct InfoEntry {
    #[serde(default)]
    pub(super) ec2_instance_id: Option<String>,
    #[serde(default)]
    pub(super) sample_timestamp: Option<String>,
    pub(super) message: String,
}

/// One instance as `describe-instances-health` shows it: its id and most recent deployment.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct InstanceHealth {
    pub(super) instance_id: String,
    #[serde(default)]
    pub(super) deployment: Option<InstanceDeployment>,
    /// What the instance answered users over its last `Duration` seconds (enhanced health).
    #[serde(default)]
    pub(super) application_metrics: Option<ApplicationMetrics>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ApplicationMetrics {
    #[serde(default)]
    pub(super) duration: Option<u64>,
    #[serde(default)]
    pub(super) request_count: Option<u64>,
    #[serde(default)]
    pub(super) status_codes: Option<StatusCodes>,
    #[serde(default)]
    pub(super) latency: Option<LatencyPercentiles>,
}

/// An instance's response-time percentiles over its window, in seconds.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct LatencyPercentiles {
    #[serde(default)]
    pub(super) p50: Option<f64>,
    #[serde(default)]
    pub(super) p95: Option<f64>,
}

/// A version's answers in one report of enhanced health: its counts, and its latency
/// percentiles as the request-weighted mean of its instances' (EB gives percentiles per
/// instance, never the answers themselves, so this is an estimate, said as one).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Answered {
    pub(super) stream: crate::judge::Stream,
    /// Requests behind the percentiles, and their weighted sums (ms).
    pub(super) timed: u64,
    pub(super) p50_sum: f64,
    pub(super) p95_sum: f64,
}

impl Answered {
    pub(super) fn p50_ms(&self) -> f64 {
        if self.timed == 0 { 0.0 } else { self.p50_sum / self.timed as f64 }
    }
    pub(super) fn p95_ms(&self) -> f64 {
        if self.timed == 0 { 0.0 } else { self.p95_sum / self.timed as f64 }
    }
}

/// Whether one report shows the candidate slower than the stable version by at least
/// `floor_ms` on its median or p95, both sides having answered enough requests to have
/// percentiles worth reading. `None`: too few requests to say.
pub(super) fn slower_in_report(candidate: &Answered, stable: &Answered, floor_ms: f64) -> Option<bool> {
    let enough = crate::judge::LATENCY_MIN as u64;
    if floor_ms <= 0.0 || candidate.timed < enough || stable.timed < enough {
        return None;
    }
    Some(candidate.p95_ms() - stable.p95_ms() >= floor_ms || candidate.p50_ms() - stable.p50_ms() >= floor_ms)
}

/// The latency rule over a canary's reports of enhanced health, one report at a time (pure, so
/// its sequences are tested without a clock): the candidate fails when it is slower than the
/// stable version by the margin in two judged reports running. A report is judged only once
/// the candidate answered users before it: a new instance's first answers are its slowest
/// (imports, caches, a JIT), and its warm-up must never convict it. EB gives percentiles, not
/// the answers, so one report's blip is never a verdict either.
#[derive(Debug, Default)]
pub(super) struct LatencyWatch {
    slow_reports: u32,
    answered_before: u64,
}

impl LatencyWatch {
    /// Takes the next report; `true` once the candidate has failed the rule.
    pub(super) fn report(&mut self, candidate: &Answered, stable: &Answered, floor_ms: f64) -> bool {
        let warmed = self.answered_before >= crate::judge::LATENCY_MIN as u64;
        self.answered_before += candidate.stream.requests;
        match slower_in_report(candidate, stable, floor_ms).filter(|_| warmed) {
            Some(true) => self.slow_reports += 1,
            Some(false) => self.slow_reports = 0,
            None => {}
        }
        self.slow_reports >= 2
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct StatusCodes {
    #[serde(rename = "Status5xx", default)]
    pub(super) status_5xx: Option<u64>,
}

/// Each version's answers to users in one report of enhanced health, summed over its
/// instances, and the seconds the report covers.
pub(super) fn answered_by_version(list: &[InstanceHealth]) -> (std::collections::BTreeMap<String, Answered>, u64) {
    let mut out: std::collections::BTreeMap<String, Answered> = Default::default();
    let mut window = 0;
    for i in list {
        let Some(m) = &i.application_metrics else { continue };
        window = window.max(m.duration.unwrap_or(0));
        let a = out.entry(i.label().to_string()).or_default();
        let n = m.request_count.unwrap_or(0);
        a.stream.requests += n;
        a.stream.errors += m.status_codes.as_ref().and_then(|c| c.status_5xx).unwrap_or(0).min(n);
        if let Some(LatencyPercentiles { p50: Some(p50), p95: Some(p95) }) = m.latency
            && n > 0
            && p50.is_finite()
            && p95.is_finite()
        {
            a.timed += n;
            a.p50_sum += p50 * 1000.0 * n as f64;
            a.p95_sum += p95 * 1000.0 * n as f64;
        }
    }
    (out, window)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct InstanceDeployment {
    #[serde(default)]
    pub(super) version_label: Option<String>,
    #[serde(default)]
    pub(super) status: Option<String>,
}

impl InstanceHealth {
    pub(super) fn label(&self) -> &str {
        self.deployment.as_ref().and_then(|d| d.version_label.as_deref()).unwrap_or("(none)")
    }
    pub(super) fn deployment_status(&self) -> &str {
        self.deployment.as_ref().and_then(|d| d.status.as_deref()).unwrap_or("no deployment record")
    }
    /// EB's record says this instance runs `label`, deployed.
    pub(super) fn runs(&self, label: &str) -> bool {
        self.deployment
            .as_ref()
            .is_some_and(|d| d.version_label.as_deref() == Some(label) && d.status.as_deref() == Some("Deployed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(label: &str, requests: u64, p50: f64, p95: f64) -> InstanceHealth {
        serde_json::from_value(serde_json::json!({
            "InstanceId": format!("i-{label}-{requests}"),
            "Deployment": {"VersionLabel": label},
            "ApplicationMetrics": {"Duration": 10, "RequestCount": requests, "StatusCodes": {"Status5xx": 1},
                "Latency": {"P50": p50, "P95": p95}}
        }))
        .expect("an instance")
    }

    #[test]
    fn a_versions_percentiles_are_weighted_by_its_instances_requests() {
        let list = [instance("v2", 30, 0.1, 0.3), instance("v2", 10, 0.5, 0.7), instance("v1", 100, 0.05, 0.1)];
        let (by, window) = answered_by_version(&list);
        let v2 = by["v2"];
        assert_eq!((v2.stream.requests, v2.stream.errors, v2.timed, window), (40, 2, 40, 10));
        assert!((v2.p50_ms() - 200.0).abs() < 1e-9 && (v2.p95_ms() - 400.0).abs() < 1e-9, "{v2:?}");
        // Slower by the margin on the p95 (or the median); too few requests is no answer; a
        // margin of 0 judges nothing.
        assert_eq!(slower_in_report(&v2, &by["v1"], 100.0), Some(true));
        assert_eq!(slower_in_report(&v2, &by["v1"], 301.0), Some(false));
        assert_eq!(slower_in_report(&by["v1"], &v2, 100.0), Some(false));
        let (few, _) = answered_by_version(&[instance("v2", 29, 0.9, 0.9)]);
        // Reports in order: a warm-up report is never judged; two slow judged reports running
        // fail; a fast one between resets.
        let (slow, _) = answered_by_version(&[instance("v2", 40, 0.4, 0.6)]);
        let (fast, _) = answered_by_version(&[instance("v2", 40, 0.05, 0.1)]);
        let stable = &by["v1"];
        let run = |reports: &[&Answered]| {
            let mut w = LatencyWatch::default();
            reports.iter().position(|c| w.report(c, stable, 100.0))
        };
        let (s, f) = (&slow["v2"], &fast["v2"]);
        assert_eq!(run(&[s, f, f, f]), None, "slow only while warming up");
        assert_eq!(run(&[s, s, f, f]), None, "the warm-up report is not judged");
        assert_eq!(run(&[s, s, s]), Some(2));
        assert_eq!(run(&[f, s, f, s, f]), None, "never two running");
        assert_eq!(run(&[f, s, s]), Some(2));
        assert_eq!(slower_in_report(&few["v2"], &by["v1"], 100.0), None);
        assert_eq!(slower_in_report(&v2, &by["v1"], 0.0), None);
    }
}
