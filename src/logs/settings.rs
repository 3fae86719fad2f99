//! `[logs]`: what collect-logs selects and keeps, how it reads a Datadog alert, and where it
//! sends its notifications.

use crate::config::locate::{Locator, Seg};
use crate::config::values::{Count, Dur, HttpUrl, Pattern, Text};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The most records of context kept around a match, by `logs.context` or `--context`: each
/// record of it is held for every open window, so it bounds collect-logs' memory.
pub const MAX_CONTEXT: u64 = 50;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Logs {
    /// Regex of interesting lines (default: error levels, exceptions, tracebacks, HTTP 5xx).
    pub pattern: Option<Pattern>,
    /// Records of context around each match.
    pub context: Count<0, MAX_CONTEXT>,
    /// Where the platform runs the app: cut off traceback paths to find the repository path.
    pub app_prefixes: Vec<String>,
    /// With `--datadog-payload`: how far before the alert the window starts.
    pub alert_lookback: Dur<1_000, 604_800_000>,
    /// Datadog `env:` tag values → environment names, where they differ.
    pub datadog_environments: BTreeMap<String, String>,
    /// The alert transitions rollback acts on; any other (`Warn`, `No Data`, `Renotify`,
    /// `Recovered`) is acknowledged and changes nothing.
    pub alert_transitions: Vec<Text>,
    /// `--notify`: the variables holding the Slack webhook URL and the Datadog API key.
    pub slack_webhook_env: Text,
    pub datadog_api_key_env: Text,
    /// The Datadog API for events (default: smoke.datadog's, else api.datadoghq.com).
    pub datadog_api_url: Option<HttpUrl>,
}

impl Default for Logs {
    fn default() -> Self {
        Logs {
            pattern: None,
            context: Count(3),
            app_prefixes: vec!["/var/app/current/".into()],
            alert_lookback: Dur::secs(30 * 60),
            datadog_environments: BTreeMap::new(),
            alert_transitions: vec![Text("Triggered".into()), Text("Re-Triggered".into())],
            slack_webhook_env: Text("SLACK_WEBHOOK_URL".into()),
            datadog_api_key_env: Text("DD_API_KEY".into()),
            datadog_api_url: None,
        }
    }
}

/// The transitions a Datadog monitor's webhook can carry (`$ALERT_TRANSITION`), with which of
/// them say the monitor is alerting.
const TRANSITIONS: &[(&str, bool)] = &[
    ("Triggered", true),
    ("Re-Triggered", true),
    ("Warn", true),
    ("Re-Warn", true),
    ("No Data", true),
    ("Re-No Data", true),
    ("Renotify", true),
    ("Recovered", false),
];

/// Compared as Datadog's variants are written: `Re-Triggered`, `re triggered`, `ReTriggered`.
pub fn same_transition(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
    norm(a) == norm(b)
}

/// The alert settings that would silently switch the alert path off, or mean nothing: exit 2.
/// The logs section's rules; `envs` are the environments' names.
pub fn validate(logs: &Logs, envs: &[&str], at: &Locator) -> Result<()> {
    use Seg::Key;
    let field = [Key("logs"), Key("alert_transitions")];
    let names = || TRANSITIONS.iter().filter(|(_, alerting)| *alerting).map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
    if logs.alert_transitions.is_empty() {
        return Err(at.bad(&field,
            format!(
                "an empty list makes every alert \"nothing to roll back\"; expected transitions of {} (default: Triggered, Re-Triggered); to stop alert rollbacks, stop sending the webhook",
                names()
            ),
        ));
    }
    for t in &logs.alert_transitions {
        match TRANSITIONS.iter().find(|(n, _)| same_transition(n, t)) {
            Some((_, true)) => {}
            Some((n, false)) => {
                return Err(at.bad(
                    &field,
                    format!("{n:?} says the monitor is fine again; rolling back on it would condemn a good version"),
                ));
            }
            None => {
                return Err(
                    at.bad(&field, format!("{:?} is no Datadog transition; expected one of {}", t.as_str(), names()))
                );
            }
        }
    }
    let field = [Key("logs"), Key("datadog_environments")];
    for (tag, env) in &logs.datadog_environments {
        if tag.trim().is_empty() || tag.contains([',', ' ']) {
            return Err(at.bad(&field, format!("{tag:?}: expected an env tag's value (the NAME of env:NAME)")));
        }
        if !envs.contains(&env.as_str()) {
            let known = envs;
            return Err(at.bad(
                &field,
                format!(
                    "{tag} = {env:?} names no environment (known: {}); its alerts would be refused",
                    known.join(", ")
                ),
            ));
        }
    }
    Ok(())
}
