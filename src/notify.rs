//! Telling people: a Slack incoming webhook and/or a Datadog event (`POST /api/v1/events`),
//! through the HTTP chokepoint, redacted and size-bounded. The webhook URL and the API key come
//! from environment variables (Jenkins credentials) and are never printed.

use crate::context::Ctx;
use crate::http::{Body, Request};
use crate::usage;
use anyhow::Result;
use serde_json::json;

/// Slack shows up to about 3,000 characters of a text block; Datadog events take 4,000.
const SLACK_MAX: usize = 3000;
const DATADOG_MAX: usize = 4000;

fn bounded(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max - 20).collect();
    format!("{cut}\n… (cut; see the report)")
}

/// Whether `--notify` has somewhere to go (exit 2 if not): asked before anything is done.
pub fn ready(ctx: &Ctx) -> Result<()> {
    let n = &ctx.config.logs;
    if ctx.env.get(&n.slack_webhook_env).is_none() && ctx.env.get(&n.datadog_api_key_env).is_none() {
        return Err(usage!(
            "--notify: no destination: set {} (a Slack incoming webhook) or {} (a Datadog API key)",
            n.slack_webhook_env,
            n.datadog_api_key_env
        ));
    }
    Ok(())
}

/// How a notification reads at a glance: Datadog's event `alert_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// A version is live and healthy.
    Success,
    /// Nothing changed.
    Info,
    /// Production was restored: users were served again, after an incident.
    Warning,
    /// A run failed, or errors were found.
    Error,
}

impl Severity {
    fn alert_type(self) -> &'static str {
        match self {
            Severity::Success => "success",
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// Sends `title` and `text` to every configured destination; returns the failures (a failed
/// notification must not lose the report, so the caller decides what it means).
pub fn send(ctx: &Ctx, title: &str, text: &str, tags: &[String], severity: Severity) -> Result<Vec<String>> {
    let n = &ctx.config.logs;
    let slack = ctx.env.get(&n.slack_webhook_env).map(str::to_string);
    let dd_key = ctx.env.get(&n.datadog_api_key_env).map(str::to_string);
    // A URL or key read from a secret's variable is never printed, whatever the variable's name.
    for v in slack.iter().chain(dd_key.iter()) {
        ctx.ui.redactor.add_value(v.clone());
    }
    ready(ctx)?;
    let text = ctx.ui.redactor.redact(text);
    let mut failures = vec![];
    let mut post = |what: &str, req: Request| match ctx.http.send(&req) {
        Ok(None) => {}
        Ok(Some(r)) if (200..300).contains(&r.status) => ctx.ui.status(format!("notified {what}")),
        Ok(Some(r)) => failures.push(format!("{what}: {} answered {} {}", req.method, r.status, r.body_start())),
        Err(e) => failures.push(format!("{what}: {e}")),
    };
    if let Some(url) = slack {
        let mut req = Request::get(url);
        req.method = "POST".into();
        req.body = Some(Body::Json(json!({"text": bounded(&format!("*{title}*\n{text}"), SLACK_MAX)})));
        post("Slack", req);
    }
    if let Some(key) = dd_key {
        let base = match (&n.datadog_api_url, &ctx.config.smoke.datadog) {
            (Some(u), _) => u.base(),
            (None, Some(d)) => d.api_base(),
            (None, None) => "https://api.datadoghq.com".into(),
        };
        let mut req = Request::get(format!("{}/api/v1/events", base.trim_end_matches('/')));
        req.method = "POST".into();
        req.headers = vec![("DD-API-KEY".into(), key)];
        let mut all_tags = vec!["source:safedeploy".to_string()];
        all_tags.extend(tags.iter().cloned());
        req.body = Some(Body::Json(json!({
            "title": bounded(title, 100), "text": bounded(&text, DATADOG_MAX),
            "alert_type": severity.alert_type(), "source_type_name": "safedeploy", "tags": all_tags,
        })));
        post("Datadog", req);
    }
    Ok(failures)
}

/// promote's and rollback's outcome, told (`--notify`): the environment, the version, the
/// users' exposure and the budget left, and the suspect — the bad version's commit and author.
/// A notification that fails is a warning: it never changes the verdict.
pub fn outcome(ctx: &Ctx, tool: &str, env: &str, result: &Result<crate::Outcome>) {
    let (title, severity, mut lines) = match result {
        Ok(o) => {
            let s = &o.summary;
            let version = s["restored_version"].as_str().or(s["version"].as_str()).unwrap_or("-");
            let (title, severity) = match (tool, s["changed"].as_bool()) {
                ("rollback", Some(true)) => (format!("rollback: {env}: {version} restored"), Severity::Warning),
                (_, Some(false)) => (format!("{tool}: {env}: nothing to do ({version})"), Severity::Info),
                _ => (format!("{tool}: {env}: {version} is live"), Severity::Success),
            };
            let mut lines = vec![];
            if let Some(bad) = s["bad_version"].as_str() {
                lines.push(format!("bad version: {bad}"));
            }
            if let Some(ms) = s["downtime_ms"].as_i64() {
                lines.push(format!("users exposed: {} (charged to the SLA budget)", crate::clock::human(ms)));
            }
            (title, severity, lines)
        }
        Err(e) => {
            let first = format!("{e}");
            let title = format!("{tool}: {env}: FAILED — {}", first.lines().next().unwrap_or_default());
            (title, Severity::Error, vec![format!("{e:#}")])
        }
    };
    // The ledger's view, whatever the outcome: the newest incident here, and the budget.
    if let Ok(ledger) = ctx.ledger_read_only() {
        if let Ok(Some(i)) = ledger.incidents_of(env).map(|v| v.into_iter().next_back()) {
            if result.is_err() || lines.iter().all(|l| !l.starts_with("users exposed")) {
                let share = i.share_percent.map(|p| format!(" ({p} % of users)")).unwrap_or_default();
                lines.push(format!(
                    "last incident: {} → {}, exposure {}{share}",
                    i.bad_label.as_deref().unwrap_or("-"),
                    i.restored_label.as_deref().unwrap_or("-"),
                    crate::clock::human(i.downtime_until(crate::clock::now_ms()))
                ));
            }
            if let Some(bad) = i.bad_label.as_deref()
                && let Ok(Some(v)) = ledger.version(bad)
                && !v.commit.is_empty()
            {
                let who =
                    crate::git::read(ctx, &ctx.config.source_dir(), &["show", "-s", "--format=%an: %s", &v.commit])
                        .unwrap_or_default();
                lines.push(format!("suspect: {bad} = commit {} {who}", crate::git::short(&v.commit)));
            }
        }
        if let Ok(b) = crate::sla::Budget::now(&ctx.config.sla, &ledger) {
            lines.push(b.line());
        }
    }
    if let Some(url) = ctx.env.build_url() {
        lines.push(format!("build: {url}"));
    }
    match send(ctx, &title, &lines.join("\n"), &[format!("env:{env}"), format!("tool:{tool}")], severity) {
        Ok(failures) => {
            for f in failures {
                ctx.ui.warn(format!("notification failed: {f}"));
            }
        }
        Err(e) => ctx.ui.warn(format!("notification failed: {e:#}")),
    }
}
