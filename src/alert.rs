//! The JSON a Datadog webhook sends when a monitor alerts, as this project's webhook template
//! shapes it (README "Datadog alerts"), read by collect-logs (which environment, which window)
//! and rollback (which environment). A `Recovered` transition asks for nothing.

use crate::clock::{Millis, parse_rfc3339, rfc3339};
use crate::context::Ctx;
use crate::error::Error;
use crate::usage;
use anyhow::Result;
use serde::Serialize;
use std::io::Read;
use std::path::Path;

#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub alert_id: String,
    pub transition: String,
    pub title: String,
    pub at: Millis,
    pub hostname: Option<String>,
    pub tags: Vec<String>,
    pub scope: Option<String>,
    pub link: Option<String>,
    /// The safedeploy environment the alert is about.
    pub env: String,
}

impl Alert {
    pub fn recovered(&self) -> bool {
        self.transition.eq_ignore_ascii_case("recovered")
    }
    /// Whether its transition is one of `transitions` (`logs.alert_transitions`: by default
    /// `Triggered` and `Re-Triggered`; a `Warn`, `No Data` or `Renotify` asks for no rollback).
    pub fn triggers(&self, transitions: &[crate::config::Text]) -> bool {
        transitions.iter().any(|t| crate::logs::settings::same_transition(t, &self.transition))
    }
    pub fn describe(&self) -> String {
        format!("Datadog alert {} ({}: {}) at {}", self.alert_id, self.transition, self.title, rfc3339(self.at))
    }
}

fn text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `$DATE` is milliseconds since the epoch; an RFC 3339 time is accepted too.
fn time(s: &str) -> Option<Millis> {
    match s.parse::<i64>() {
        Ok(n) if n < 0 => None,
        Ok(n) if n > 10_000_000_000 => Some(n),
        // Seconds, as some templates send.
        Ok(n) => n.checked_mul(1000),
        Err(_) => parse_rfc3339(s),
    }
}

/// Reads a payload from a file, or stdin for `-`, and finds its environment: an `env:NAME` tag
/// (or scope) mapped through `logs.datadog_environments`, else taken as the environment's name.
pub fn read(ctx: &Ctx, source: &Path) -> Result<Alert> {
    let name = source.display().to_string();
    let raw = read_bounded(ctx, source, &name)?;
    parse(&raw, &name, &ctx.config)
}

/// A webhook payload is small: past this it is not one.
const MAX_PAYLOAD: u64 = 1 << 20;

/// Reads a payload (a file, a FIFO, or stdin for `-`) in a reader thread, so a writer that
/// never comes or never ends is no hang: SIGINT/SIGTERM ends the wait (exit 130, nothing done).
fn read_bounded(ctx: &Ctx, source: &Path, name: &str) -> Result<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = source.to_path_buf();
    std::thread::spawn(move || {
        let read = || -> std::io::Result<Vec<u8>> {
            let mut raw = vec![];
            if path == Path::new("-") {
                std::io::stdin().take(MAX_PAYLOAD + 1).read_to_end(&mut raw)?;
            } else {
                std::fs::File::open(&path)?.take(MAX_PAYLOAD + 1).read_to_end(&mut raw)?;
            }
            Ok(raw)
        };
        let _ = tx.send(read());
    });
    let raw = loop {
        match rx.recv_timeout(std::time::Duration::from_millis(50)) {
            Ok(r) => break r.map_err(|e| usage!("--datadog-payload {name}: cannot read: {e}"))?,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                ctx.check_interrupt(|| format!("--datadog-payload {name} was never read whole; nothing was done"))?;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(usage!("--datadog-payload {name}: cannot read"));
            }
        }
    };
    if raw.len() as u64 > MAX_PAYLOAD {
        return Err(usage!("--datadog-payload {name}: over {} KiB; a webhook payload is smaller", MAX_PAYLOAD / 1024));
    }
    String::from_utf8(raw).map_err(|_| usage!("--datadog-payload {name}: not UTF-8 text"))
}

/// Reads a webhook payload (`name` says where it came from, for errors) against the config.
pub fn parse(raw: &str, name: &str, config: &crate::config::Config) -> Result<Alert> {
    let v: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| usage!("--datadog-payload {name}: not JSON: {e}"))?;
    let field = |k: &str| v.get(k).and_then(text);
    let need = |k: &str| {
        field(k).ok_or_else(|| usage!("--datadog-payload {name}: missing field {k:?} (see README, Datadog alerts)"))
    };
    let alert_id = need("alert_id")?;
    let transition = need("transition")?;
    let date = need("date")?;
    let at = time(&date)
        .ok_or_else(|| usage!("--datadog-payload {name}: date {date:?}: expected epoch milliseconds or RFC 3339"))?;
    let tags: Vec<String> = match v.get("tags") {
        Some(serde_json::Value::Array(a)) => a.iter().filter_map(text).collect(),
        Some(t) => text(t)
            .map(|s| s.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect())
            .unwrap_or_default(),
        None => vec![],
    };
    // The scope names what triggered (the monitor's group); tags are the monitor's own and may
    // name several environments. The scope decides; tags only when they name one.
    let scope = field("scope");
    let envs_of = |items: &mut dyn Iterator<Item = &str>| {
        let mut envs: Vec<String> = items.filter_map(|t| t.trim().strip_prefix("env:")).map(str::to_string).collect();
        envs.sort();
        envs.dedup();
        envs
    };
    let in_scope = envs_of(&mut scope.iter().flat_map(|s| s.split(',')));
    let in_tags = envs_of(&mut tags.iter().map(String::as_str));
    let env_tag = match (in_scope.as_slice(), in_tags.as_slice()) {
        ([one], _) | ([], [one]) => one.clone(),
        ([], []) => {
            return Err(usage!("--datadog-payload {name}: no env:NAME tag or scope says which environment alerted"));
        }
        (many, _) if many.len() > 1 => {
            return Err(usage!("--datadog-payload {name}: the scope names several environments ({})", many.join(", ")));
        }
        (_, many) => {
            return Err(usage!(
                "--datadog-payload {name}: the tags name several environments ({}) and no env: scope says which alerted",
                many.join(", ")
            ));
        }
    };
    let env = config.logs.datadog_environments.get(&env_tag).cloned().unwrap_or(env_tag);
    if !config.environments.contains_key(&env) {
        let known: Vec<&str> = config.environments.keys().map(String::as_str).collect();
        return Err(Error::usage(format!(
            "--datadog-payload {name}: the alert is for environment {env:?}, which {} does not know (known: {})",
            config.path.display(),
            known.join(", ")
        ))
        .with_hint("map Datadog's env tag values with [logs] datadog_environments = { prod = \"production\" }")
        .into());
    }
    Ok(Alert {
        alert_id,
        transition,
        title: field("title").unwrap_or_default(),
        at,
        hostname: field("hostname"),
        tags,
        scope,
        link: field("link"),
        env,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `scripts/fuzz webhook_payload`: a negative date overflowed when read as seconds.
    #[test]
    fn fuzz_regression_a_negative_date_is_refused_not_overflowed() {
        assert_eq!(time("-080000000000000023"), None);
        assert_eq!(time("1763950000"), Some(1_763_950_000_000));
        assert_eq!(time("1763950000000"), Some(1_763_950_000_000));
        let cfg = crate::config::Config::parse(
            "[app]\nname = \"x\"\n[environments.production]\nurl = \"http://127.0.0.1:1\"\n[[smoke.checks]]\nname = \"home\"\npath = \"/\"\n",
            std::path::Path::new("safedeploy.toml"),
        )
        .expect("config");
        let crash = include_str!("../fuzz/regressions/webhook_payload/crash-27d310c086b8b4ddc7f4f8d84911d1b5d02c54d5");
        let err = parse(crash, "payload.json", &cfg).expect_err("refused");
        assert!(err.to_string().contains("date \"-080000000000000023\": expected epoch milliseconds"), "{err}");
    }

    fn two_envs() -> crate::config::Config {
        crate::config::Config::parse(
            "[app]\nname = \"x\"\n[environments.staging]\nurl = \"http://127.0.0.1:1\"\n[environments.production]\nurl = \"http://127.0.0.1:2\"\n[[smoke.checks]]\nname = \"home\"\npath = \"/\"\n",
            std::path::Path::new("safedeploy.toml"),
        )
        .expect("config")
    }

    fn payload(tags: &str, scope: &str, date: &str) -> String {
        format!(
            r#"{{"alert_id": "1", "transition": "Triggered", "title": "t", "date": "{date}", "tags": "{tags}", "scope": "{scope}"}}"#
        )
    }

    #[test]
    fn the_scope_decides_the_environment_and_tags_only_when_they_name_one() {
        let cfg = two_envs();
        let env =
            |tags: &str, scope: &str| parse(&payload(tags, scope, "1763950000000"), "p.json", &cfg).map(|a| a.env);
        assert_eq!(env("env:staging,env:production", "env:production").expect("scope"), "production");
        assert_eq!(env("env:staging,env:production", "host:web-1,env:staging").expect("scope"), "staging");
        assert_eq!(env("service:x,env:production", "").expect("one tag"), "production");
        assert_eq!(env("env:production,env:production", "").expect("the same twice"), "production");
        let e = env("env:staging,env:production", "").expect_err("ambiguous");
        assert!(e.to_string().contains("the tags name several environments (production, staging)"), "{e}");
        let e = env("", "env:staging,env:production").expect_err("ambiguous scope");
        assert!(e.to_string().contains("the scope names several environments"), "{e}");
    }

    #[test]
    fn dates_with_an_offset_are_read_as_the_same_moment() {
        let cfg = two_envs();
        let at = |date: &str| parse(&payload("env:production", "", date), "p.json", &cfg).map(|a| a.at);
        let utc = at("2026-03-01T00:00:00Z").expect("utc");
        assert_eq!(at("2026-03-01T01:00:00+01:00").expect("offset"), utc);
        assert_eq!(at("2026-02-28T16:00:00-08:00").expect("offset"), utc);
        assert!(at("2026-03-01T01:00:00+99:00").is_err());
    }
}
