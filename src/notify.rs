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

/// Sends `title` and `text` to every configured destination; returns the failures (a failed
/// notification must not lose the report, so the caller decides what it means).
pub fn send(ctx: &Ctx, title: &str, text: &str, tags: &[String]) -> Result<Vec<String>> {
    let n = &ctx.config.logs;
    let slack = ctx.env.get(&n.slack_webhook_env).map(str::to_string);
    let dd_key = ctx.env.get(&n.datadog_api_key_env).map(str::to_string);
    // A URL or key read from a secret's variable is never printed, whatever the variable's name.
    for v in slack.iter().chain(dd_key.iter()) {
        ctx.ui.redactor.add_value(v.clone());
    }
    if slack.is_none() && dd_key.is_none() {
        return Err(usage!(
            "--notify: no destination: set {} (a Slack incoming webhook) or {} (a Datadog API key)",
            n.slack_webhook_env,
            n.datadog_api_key_env
        ));
    }
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
            "alert_type": "error", "source_type_name": "safedeploy", "tags": all_tags,
        })));
        post("Datadog", req);
    }
    Ok(failures)
}
