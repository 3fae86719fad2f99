//! The alert path: a Datadog webhook payload drives rollback and collect-logs (the steps of
//! jenkins/alert.Jenkinsfile, run in order against a real incident), notifications reach a local
//! server speaking the Slack and Datadog request shapes, and bad payloads are exit 2.

use crate::server::{Resp, Server};
use crate::support::{Project, output};
use predicates::prelude::*;
use std::sync::{Arc, Mutex};

/// What the notification server received: path, DD-API-KEY header, body.
type Received = Arc<Mutex<Vec<(String, Option<String>, String)>>>;

const SECRET_KEY: &str = "AKIAIOSFODNN7SAFEDEP";

/// A local server speaking Slack's webhook and Datadog's events shapes, which the project's
/// config now posts Datadog events to; what it received.
fn notification_server(p: &Project) -> (Server, Received) {
    let received: Received = Arc::default();
    let r = received.clone();
    let hooks = Server::start(move |req, _| {
        r.lock().expect("lock").push((
            req.path.clone(),
            req.header("DD-API-KEY").map(str::to_string),
            String::from_utf8_lossy(&req.body).into_owned(),
        ));
        Resp::new(if req.path == "/api/v1/events" { 202 } else { 200 }, "ok")
    });
    p.edit_config(|c| c.replace("[logs]\n", &format!("[logs]\ndatadog_api_url = \"{}\"\n", hooks.url())));
    (hooks, received)
}

fn payload(transition: &str, env_tag: &str) -> String {
    format!(
        r#"{{"alert_id": "4711", "transition": "{transition}", "title": "[{transition}] url-shortener 5xx rate",
            "date": "{}", "hostname": "web-1", "tags": "service:url-shortener,{env_tag}",
            "scope": "{env_tag}", "link": "https://app.datadoghq.com/monitors/4711"}}"#,
        safedeploy::clock::now_ms()
    )
}

/// v1 everywhere, then v2 forced into production, failing, with a secret in its log.
fn incident() -> Project {
    let p = Project::new();
    p.v2_failing_in_production();
    let log = p.state.join("local/envs/production/app.log");
    let mut text = std::fs::read_to_string(&log).expect("log");
    text.push_str(&format!(
        "{} [ERROR] upload failed with key {SECRET_KEY}\n",
        safedeploy::clock::rfc3339(safedeploy::clock::now_ms())
    ));
    std::fs::write(&log, text).expect("log");
    p
}

#[test]
fn the_alert_jobs_steps_restore_production_report_the_suspect_and_notify() {
    let p = incident();
    let (hooks, received) = notification_server(&p);
    std::fs::write(p.app.join("datadog-payload.json"), payload("Triggered", "env:production")).expect("payload");

    let steps = crate::support::jenkins_steps(&crate::support::repo_file("jenkins/alert.Jenkinsfile"));
    assert_eq!(
        steps.iter().map(|s| s.split(' ').next().unwrap_or("")).collect::<Vec<_>>(),
        ["rollback", "collect-logs"]
    );
    let mut outputs = String::new();
    for step in &steps {
        let out = p
            .sh_step(step)
            .env("SLACK_WEBHOOK_URL", format!("{}/services/T000/B000/slacksecret123", hooks.url()))
            .env("DD_API_KEY", "dd-api-key-0123456789")
            .output()
            .expect("sh");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "`{step}` failed:\n{text}");
        outputs.push_str(&text);
    }
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
    assert!(p.query_strings("SELECT reason FROM incidents")[0].starts_with("Datadog alert 4711 (Triggered"));
    assert_eq!(p.query_strings("SELECT cause FROM incidents"), vec!["alert"]);

    let report = std::fs::read_to_string(p.app.join("error_hunt.txt")).expect("report");
    assert!(
        report.contains("exception: TypeError: the JSON object must be str, bytes or bytearray, not TextIOWrapper"),
        "{report}"
    );
    assert!(report.contains("=== suspect change\napplication.py:67 in load_urls"), "{report}");
    assert!(
        report.contains("subject: Read the stored URLs with json.loads") && report.contains("author: New Hire"),
        "{report}"
    );
    assert!(report.contains("+        return json.loads(urls_file)"), "the hunk: {report}");

    let got = received.lock().expect("lock").clone();
    let slack = got.iter().find(|(path, _, _)| path.starts_with("/services/")).expect("a Slack post");
    let event = got.iter().find(|(path, _, _)| path == "/api/v1/events").expect("a Datadog event");
    let slack_json: serde_json::Value = serde_json::from_str(&slack.2).expect("slack json");
    let text = slack_json["text"].as_str().expect("text");
    assert!(text.contains("TypeError") && text.contains("Suspect: application.py:67 in load_urls"), "{text}");
    assert_eq!(event.1.as_deref(), Some("dd-api-key-0123456789"));
    let event_json: serde_json::Value = serde_json::from_str(&event.2).expect("event json");
    assert_eq!(event_json["alert_type"], "error");
    crate::support::check_shapes(&[("slack_webhook", slack_json.clone()), ("datadog_event", event_json.clone())]);
    assert!(event_json["tags"].to_string().contains("env:production"));

    for secret in [SECRET_KEY, "slacksecret123", "dd-api-key-0123456789"] {
        assert!(!report.contains(secret), "{secret} in the report");
        assert!(!outputs.contains(secret), "{secret} in the console");
        assert!(!slack.2.contains(secret) && !event.2.contains(secret), "{secret} in a notification");
    }
}

#[test]
fn a_recovered_alert_and_a_staging_alert_change_nothing() {
    let p = incident();
    std::fs::write(p.app.join("recovered.json"), payload("Recovered", "env:production")).expect("payload");
    p.cmd("rollback")
        .args(["--datadog-payload", "recovered.json"])
        .assert()
        .success()
        .stdout(predicate::str::contains("recovered: nothing to roll back"));
    p.cmd("collect-logs")
        .args(["--datadog-payload", "recovered.json"])
        .assert()
        .success()
        .stdout(predicate::str::contains("recovered: nothing to collect"));
    std::fs::write(p.app.join("staging.json"), payload("Triggered", "env:staging")).expect("payload");
    p.cmd("rollback")
        .args(["--datadog-payload", "staging.json"])
        .assert()
        .success()
        .stdout(predicate::str::contains("the alert is for staging; rollback on alerts acts on production only"));
    assert_eq!(p.served_version("production").as_deref(), Some("v2"), "nothing was rolled back");
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM incidents"), 0);
    // A payload on stdin, and a mapping of Datadog's env tag values.
    p.edit_config(|c| c.replace("[logs]\n", "[logs]\ndatadog_environments = { prod = \"production\" }\n"));
    p.cmd("collect-logs")
        .args(["--datadog-payload", "-", "--out", "hunt.txt"])
        .write_stdin(payload("Triggered", "env:prod"))
        .assert()
        .success()
        .stdout(predicate::str::contains("TypeError"));
}

#[test]
fn bad_payloads_are_exit_2_and_a_failed_notification_keeps_the_report() {
    let p = incident();
    for (body, message) in [
        ("not json".to_string(), "not JSON"),
        (r#"{"transition": "Triggered", "date": "1"}"#.to_string(), "missing field \"alert_id\""),
        (payload("Triggered", "env:qa"), "the alert is for environment \"qa\", which"),
        (payload("Triggered", "service:x"), "no env:NAME tag or scope"),
        (format!("{{\"pad\": \"{}\"}}", "x".repeat(2 << 20)), "over 1024 KiB; a webhook payload is smaller"),
        ("\u{feff}\u{0}\u{ff}".to_string() + &String::from_utf8_lossy(&[0xff, 0xfe]), "not JSON"),
    ] {
        std::fs::write(p.app.join("bad.json"), body).expect("payload");
        p.cmd("collect-logs")
            .args(["--datadog-payload", "bad.json"])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(message));
        p.cmd("rollback")
            .args(["--datadog-payload", "bad.json"])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(message));
    }
    assert_eq!(p.served_version("production").as_deref(), Some("v2"));

    let down = Server::start(|_, _| Resp::new(500, "boom"));
    std::fs::write(p.app.join("ok.json"), payload("Triggered", "env:production")).expect("payload");
    let a = p
        .cmd("collect-logs")
        .args(["--datadog-payload", "ok.json", "--notify", "--out", "kept.txt"])
        .env("SLACK_WEBHOOK_URL", format!("{}/services/x", down.url()))
        .assert()
        .code(3);
    let (_, err) = output(&a);
    assert!(
        err.contains("the report is written to kept.txt, but the notification failed: Slack: POST answered 500 boom"),
        "{err}"
    );
    assert!(p.app.join("kept.txt").exists());
    p.cmd("collect-logs")
        .args(["--env", "production", "--notify"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--notify: no destination"));
}

#[test]
fn promote_and_rollback_tell_slack_and_datadog_their_outcome_exposure_budget_and_suspect() {
    let p = Project::new();
    p.v1_everywhere();
    p.commit_incident();
    p.cmd("deploy-staging").args(["--version", "v2"]).assert().success();
    let (hooks, received) = notification_server(&p);
    let slack = format!("{}/services/T000/B000/slacksecret123", hooks.url());
    // No destination: exit 2 before anything is done.
    p.cmd("promote").args(["--version", "v2", "--force", "--reason", "t", "--notify"]).assert().code(2);
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM deployments WHERE label = 'v2' AND env = 'production'"), 0);
    let notified = |bin: &str, args: &[&str], code: i32| {
        let a = p
            .cmd(bin)
            .args(args)
            .arg("--notify")
            .env("SLACK_WEBHOOK_URL", &slack)
            .env("DD_API_KEY", "dd-api-key-0123456789")
            .assert()
            .code(code);
        let (out, err) = output(&a);
        for secret in ["slacksecret123", "dd-api-key-0123456789"] {
            assert!(!out.contains(secret) && !err.contains(secret), "{secret} printed by {bin}");
        }
        let got = std::mem::take(&mut *received.lock().expect("lock"));
        let slack_post = got.iter().find(|(path, _, _)| path.starts_with("/services/")).expect("a Slack post").clone();
        let event = got.iter().find(|(path, _, _)| path == "/api/v1/events").expect("a Datadog event").clone();
        let text = serde_json::from_str::<serde_json::Value>(&slack_post.2).expect("slack json")["text"]
            .as_str()
            .expect("text")
            .to_string();
        let ev: serde_json::Value = serde_json::from_str(&event.2).expect("event json");
        assert!(ev["tags"].to_string().contains("env:production"), "{ev}");
        assert!(ev["text"].as_str().unwrap_or_default().chars().count() <= 4000);
        assert!(text.chars().count() <= 3000);
        let slack_json: serde_json::Value = serde_json::from_str(&slack_post.2).expect("slack json");
        crate::support::check_shapes(&[("slack_webhook", slack_json), ("datadog_event", ev.clone())]);
        (text, ev)
    };
    // Stopped before traffic: the failure, the budget untouched.
    let (text, ev) = notified("promote", &["--version", "v2", "--force", "--reason", "t"], 1);
    assert!(text.contains("promote: production: FAILED — v2 was stopped before it took traffic"), "{text}");
    assert!(text.contains("SLA budget (calendar year since"), "{text}");
    assert!(ev["title"].as_str().unwrap_or_default().starts_with("promote: production: FAILED"), "{ev}");
    assert_eq!(ev["alert_type"], "error", "{ev}");
    // Forced in, then rolled back: the exposure, the budget left, the suspect commit.
    p.cmd("promote")
        .args(["--version", "v2", "--force", "--reason", "t", "--skip-pre-traffic", "t"])
        .assert()
        .success();
    p.cmd("smoke-check").args(["--env", "production", "--record"]).assert().code(1);
    let (text, ev) = notified("rollback", &[], 0);
    assert!(text.contains("rollback: production: v1 restored"), "{text}");
    assert_eq!(ev["alert_type"], "warning", "a restore follows an incident: {ev}");
    assert!(text.contains("bad version: v2"), "{text}");
    assert!(text.contains("users exposed: "), "{text}");
    assert!(
        text.contains("suspect: v2 = commit ") && text.contains("New Hire: Read the stored URLs with json.loads"),
        "{text}"
    );
    // Nothing to do is said too; a failing destination is a warning, never the verdict.
    let (text, ev) = notified("rollback", &[], 0);
    assert!(text.contains("nothing to do (v1)"), "{text}");
    assert_eq!(ev["alert_type"], "info", "{ev}");
    p.cmd("rollback")
        .arg("--notify")
        .env("SLACK_WEBHOOK_URL", "http://127.0.0.1:9/hooks/nobody-listens")
        .assert()
        .success()
        .stderr(predicate::str::contains("notification failed: Slack"));
}

/// Datadog's documented webhook variables (docs.datadoghq.com/integrations/webhooks, "Variables").
const DATADOG_WEBHOOK_VARIABLES: &[&str] = &[
    "AGGREG_KEY",
    "ALERT_CYCLE_KEY",
    "ALERT_ID",
    "ALERT_METRIC",
    "ALERT_PRIORITY",
    "ALERT_QUERY",
    "ALERT_SCOPE",
    "ALERT_STATUS",
    "ALERT_TITLE",
    "ALERT_TRANSITION",
    "ALERT_TYPE",
    "DATE",
    "EMAIL",
    "EVENT_MSG",
    "EVENT_TITLE",
    "EVENT_TYPE",
    "HOSTNAME",
    "ID",
    "LAST_UPDATED",
    "LINK",
    "LOGS_SAMPLE",
    "METRIC_NAMESPACE",
    "ORG_ID",
    "ORG_NAME",
    "PRIORITY",
    "SNAPSHOT",
    "TAGS",
    "TEXT_ONLY_MSG",
    "USER",
    "USERNAME",
];

#[test]
fn the_documented_webhook_payload_uses_only_datadogs_variables_and_gives_every_field_rollback_reads() {
    let readme = crate::support::repo_file("README.md");
    let start = readme.find("\"alert_id\": \"$ALERT_ID\"").expect("the payload template in the README");
    let template = &readme[readme[..start].rfind('{').expect("{")..start + readme[start..].find('}').expect("}") + 1];
    let doc: serde_json::Value = serde_json::from_str(template).expect("the template is JSON");
    let fields = doc.as_object().expect("object");
    for (field, value) in fields {
        let var = value.as_str().and_then(|v| v.strip_prefix('$')).unwrap_or_default();
        assert!(DATADOG_WEBHOOK_VARIABLES.contains(&var), "{field}: ${var} is not one of Datadog's webhook variables");
    }
    // Every field the payload reader needs is in the template, and the template parses.
    for need in ["alert_id", "transition", "date", "tags"] {
        assert!(fields.contains_key(need), "{need} missing from the template");
    }
    let filled: String = template
        .replace("$ALERT_ID", "1")
        .replace("$ALERT_TRANSITION", "Triggered")
        .replace("$EVENT_TITLE", "t")
        .replace("$DATE", &safedeploy::clock::now_ms().to_string())
        .replace("$HOSTNAME", "web-1")
        .replace("$TAGS", "env:production")
        .replace("$ALERT_SCOPE", "env:production")
        .replace("$LINK", "https://app.datadoghq.com/monitors/1");
    let p = Project::new();
    std::fs::write(p.app.join("filled.json"), filled).expect("payload");
    p.cmd("collect-logs").args(["--datadog-payload", "filled.json", "--out", "r.txt"]).assert().success();
}

/// A payload named as a FIFO whose writer never comes: SIGTERM ends the wait (exit 130), as it
/// ends every other wait; before, the read ignored it and the job hung until killed.
#[test]
fn a_fifo_payload_that_never_comes_is_ended_by_sigterm() {
    let p = Project::new();
    let fifo = p.app.join("payload.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    for bin in ["collect-logs", "rollback"] {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin(bin))
            .args(["--datadog-payload", "payload.fifo"])
            .current_dir(&p.app)
            .env("PATH", crate::support::tools_path())
            .env("SAFEDEPLOY_STATE_DIR", &p.state)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let pid = child.id() as i32;
        // Waiting on the FIFO: a thread of the process sleeps in the kernel's FIFO open.
        let waiting = || {
            std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten().any(|t| {
                std::fs::read_to_string(t.path().join("wchan"))
                    .is_ok_and(|w| w.contains("partner") || w.contains("fifo"))
            })
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !waiting() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM).expect("kill");
        let ended = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while child.try_wait().expect("wait").is_none() && std::time::Instant::now() < ended {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let hung = child.try_wait().expect("wait").is_none();
        if hung {
            let _ = child.kill();
        }
        let out = child.wait_with_output().expect("output");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!hung, "{bin} ignored SIGTERM while waiting on the FIFO");
        assert_eq!(out.status.code(), Some(130), "{bin}: {err}");
        assert!(err.contains("payload.fifo was never read whole; nothing was done"), "{bin}: {err}");
    }
}

/// The layer that stopped a version is recorded, not guessed from the reason's text: an alert
/// rollback given `--reason` still counts as the alert's, and a rollback by hand (no failing
/// verdict on the version) is a row of its own.
#[test]
fn the_report_counts_each_rollback_at_the_layer_that_caused_it_whatever_its_reason() {
    let p = incident();
    std::fs::write(p.app.join("alert.json"), payload("Triggered", "env:production")).expect("payload");
    p.cmd("rollback").args(["--datadog-payload", "alert.json", "--reason", "paged at 3 a.m."]).assert().success();
    assert_eq!(p.query_strings("SELECT cause || ':' || reason FROM incidents"), vec!["alert:paged at 3 a.m."]);
    // v3, the fix (v1's code), passing staging, then rolled back by hand.
    p.git(&["checkout", "HEAD~1", "--", "."]);
    p.write("NOTES", "v3\n");
    p.commit_all("v3: a note", "Team");
    p.cmd("deploy-staging").args(["--version", "v3"]).assert().success();
    p.cmd("smoke-check").args(["--env", "staging", "--record"]).assert().success();
    p.cmd("promote").args(["--version", "v3"]).assert().success();
    // Rolled back on a person's word before any check of it in production: by hand.
    p.cmd("rollback").args(["--reason", "a manual test"]).assert().success();
    assert_eq!(p.query_strings("SELECT cause FROM incidents WHERE bad_label = 'v3'"), vec!["by_hand"]);
    let a = p.cmd("safedeploy").args(["report", "--json"]).assert().success();
    let doc: serde_json::Value = serde_json::from_str(&output(&a).0).expect("json");
    assert_eq!(doc["stopped"]["alert"], 1, "{}", doc["stopped"]);
    assert_eq!(doc["stopped"]["by_hand"], 1, "{}", doc["stopped"]);
    assert_eq!(doc["stopped"]["production_smoke"], 0, "{}", doc["stopped"]);
}
