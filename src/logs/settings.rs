//! `[logs]`: what collect-logs selects and keeps, how it reads a Datadog alert, and where it
//! sends its notifications.

use crate::config::{Count, Dur, HttpUrl, Pattern, Text};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Logs {
    /// Regex of interesting lines (default: error levels, exceptions, tracebacks, HTTP 5xx).
    pub pattern: Option<Pattern>,
    /// Records of context around each match.
    pub context: Count<0, 50>,
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
