//! The secrets sweep: AWS keys, a Slack webhook URL and a Datadog key are planted in the
//! config, the environment, the app's logs and a child command's output; every binary runs,
//! for real and as a dry run, and nothing any of them prints, writes as a report or sends as
//! a notification may contain one of them.

use crate::server::{Resp, Server};
use crate::support::{Project, output};
use std::sync::{Arc, Mutex};

const AWS_KEY_ID: &str = "AKIAPLANTED0KEY0ID00";
const AWS_SECRET: &str = "plantedAwsSecretKey/0123456789abcdefABCDEF";
const DD_KEY: &str = "planteddatadogkey0123456789abcdef";
const SLACK_PATH: &str = "/services/T0PLANTED/B0PLANTED/plantedSlackSecret42";
const CONFIG_TOKEN: &str = "plantedConfigToken0123456789";

#[test]
fn no_planted_secret_appears_in_any_output_report_or_notification() {
    let p = Project::new();
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let r = received.clone();
    let hooks = Server::start(move |req, _| {
        let headers: Vec<String> = req.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        r.lock().expect("lock").push(format!(
            "{} {}\n{}\n{}",
            req.method,
            req.path,
            headers.join("\n"),
            String::from_utf8_lossy(&req.body)
        ));
        Resp::new(if req.path == "/api/v1/events" { 202 } else { 200 }, "ok")
    });
    let slack_url = format!("https://hooks.slack.com{SLACK_PATH}");

    // In the config: a bearer token the smoke checks send, and an app variable holding it.
    p.edit_config(|c| {
        c.replace("[logs]\n", &format!("[logs]\ndatadog_api_url = \"{}\"\n", hooks.url()))
            .replace(
                "[environments.production]\n",
                &format!("[environments.production]\nenv = {{ API_TOKEN = \"{CONFIG_TOKEN}\" }}\n"),
            )
            .replace(
                "name = \"the form is served\"\n",
                &format!("name = \"the form is served\"\nheaders = {{ authorization = \"Bearer {CONFIG_TOKEN}\" }}\n"),
            )
    });
    // In the app's logs: the Procfile prints every kind of secret before starting the app.
    let procfile = std::fs::read_to_string(p.app.join("Procfile")).expect("Procfile");
    let web = procfile.lines().find_map(|l| l.strip_prefix("web:")).expect("web line").trim().to_string();
    p.write(
        "boot.sh",
        &format!(
            "echo \"boot token=$API_TOKEN aws={AWS_KEY_ID} secret_access_key={AWS_SECRET} DD-API-KEY: {DD_KEY} hook={slack_url}\"\nexec {web}\n"
        ),
    );
    p.write("Procfile", "web: sh boot.sh\n");
    // In a child command's output: the gate's test command prints them too.
    p.edit_config(|c| {
        c.replacen(
            "command = [",
            &format!(
                "command = [\"sh\", \"-c\", \"echo aws={AWS_KEY_ID} secret_access_key={AWS_SECRET} {slack_url} DD-API-KEY: {DD_KEY}; exec \\\"$0\\\" \\\"$@\\\"\", "
            ),
            1,
        )
    });
    p.commit_all("Plant secrets", "Team");

    let seen = std::cell::RefCell::new(String::new());
    let run = |bin: &str, args: &[&str], expect: i32| {
        let a = p
            .cmd(bin)
            .args(args)
            .env("AWS_ACCESS_KEY_ID", AWS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
            .env("DD_API_KEY", DD_KEY)
            .env("SLACK_WEBHOOK_URL", format!("{}{SLACK_PATH}", hooks.url()))
            .assert();
        let code = a.get_output().status.code();
        let (out, err) = output(&a);
        assert_eq!(code, Some(expect), "{bin} {args:?}:\n{out}{err}");
        seen.borrow_mut().push_str(&format!("\n### {bin} {args:?} → {code:?}\n{out}{err}"));
    };
    for dry in [true, false] {
        let d: &[&str] = if dry { &["--dry-run"] } else { &[] };
        let with = |a: &[&'static str]| [a, d].concat();
        run("gate-tests", &with(&["--junit-out", "gate.xml"]), 0);
        run("deploy-staging", &with(&["--version", "v1"]), 0);
        if dry {
            continue;
        }
        run("smoke-check", &with(&["--env", "staging", "--record", "--junit-out", "smoke.xml"]), 0);
        run("promote", &with(&[]), 0);
        run("smoke-check", &with(&["--env", "production", "--record"]), 0);
    }
    p.commit_incident();
    run("deploy-staging", &["--version", "v2"], 0);
    run("promote", &["--version", "v2", "--skip-pre-traffic", "forced", "--force", "--reason", "sweep"], 0);
    run("smoke-check", &["--env", "production", "--record"], 1);
    for d in [true, false] {
        let dry: &[&str] = if d { &["--dry-run"] } else { &[] };
        run("rollback", &[&["--reason", "sweep"], dry].concat(), 0);
        run("collect-logs", &[&["--env", "production", "--notify", "--out", "hunt.txt", "--json"], dry].concat(), 0);
    }
    run("promote", &["--budget", "--json"], 0);
    let mut seen = seen.into_inner();

    // Everything that left the tools: their output, the files they wrote, what they sent.
    for f in ["hunt.txt", "gate.xml", "smoke.xml"] {
        let text = std::fs::read_to_string(p.app.join(f)).unwrap_or_else(|_| panic!("{f} was written"));
        seen.push_str(&format!("\n### file {f}\n{text}"));
    }
    let sent = received.lock().expect("lock").join("\n### request\n");
    assert!(sent.contains("/api/v1/events") && sent.contains("/services/"), "both notifications went out:\n{sent}");
    // The key reaches Datadog in its header and the webhook is the address posted to, where they
    // belong; nowhere else.
    let sent_without_auth: String = sent
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("dd-api-key:") && !l.starts_with("POST /services/"))
        .collect::<Vec<_>>()
        .join("\n");
    seen.push_str(&sent_without_auth);
    // The planted values really were there to leak: the app printed them, unredacted, into its log.
    let app_log = std::fs::read_to_string(p.state.join("local/envs/production/app.log")).expect("app log");
    assert!(app_log.contains(AWS_SECRET) && app_log.contains(CONFIG_TOKEN), "the app did print the secrets");

    for secret in [AWS_KEY_ID, AWS_SECRET, DD_KEY, SLACK_PATH, "plantedSlackSecret42", CONFIG_TOKEN] {
        if let Some(at) = seen.find(secret) {
            let from = seen[..at].rfind("\n###").unwrap_or(0);
            panic!("{secret} leaked:\n{}", &seen[from..(at + 200).min(seen.len())]);
        }
    }
}

#[test]
fn configured_secrets_reach_the_app_and_the_callers_do_not() {
    let p = Project::new();
    p.edit_config(|c| {
        c.replace(
            "[environments.staging]\n",
            "[environments.staging]\nenv = { API_TOKEN = \"token-from-the-config\", PLAIN = \"plain-from-the-config\" }\n",
        )
        // A webhook in a variable whose name does not look secret: the config names it as one.
        .replace("[logs]\n", "[logs]\nslack_webhook_env = \"CHAT_HOOK\"\n")
    });
    let procfile = std::fs::read_to_string(p.app.join("Procfile")).expect("Procfile");
    let web = procfile.lines().find_map(|l| l.strip_prefix("web:")).expect("web line").trim().to_string();
    p.write(
        "Procfile",
        &format!(
            "web: echo \"app sees token=$API_TOKEN plain=$PLAIN other=$OTHER_SECRET hook=$CHAT_HOOK\"; exec {web}\n"
        ),
    );
    p.commit_all("Print what the app is given", "Team");
    let a = p
        .cmd("deploy-staging")
        .args(["--version", "v1"])
        .env("API_TOKEN", "token-from-the-shell")
        .env("OTHER_SECRET", "secret-of-the-shell")
        .env("CHAT_HOOK", "https://chat.example/hook-of-the-shell")
        .assert()
        .success();
    let (out, err) = output(&a);
    assert!(!format!("{out}{err}").contains("token-from-the-config"), "the value is not printed:\n{out}{err}");
    let log = std::fs::read_to_string(p.state.join("local/envs/staging/app.log")).expect("app log");
    assert!(
        log.contains("app sees token=token-from-the-config plain=plain-from-the-config other= hook=\n"),
        "the configured values win, the caller's secrets stay out:\n{log}"
    );
}

/// The class of a secret inside quoted JSON: a failing answer's body names its secrets in JSON
/// (`{"db_password":"…"}`). Every sink must mask them: the console, each `--json` document
/// (where serializing escapes the quotes), the report page (where HTML escapes them) and the
/// ledger's own file, which keeps failure details.
#[test]
fn secrets_inside_quoted_json_are_masked_in_every_json_output_the_page_and_the_ledger() {
    const PASSWORD: &str = "hunter2-db-passw0rd";
    const TOKEN: &str = "tok-9f8e7d6c5b4a";
    const STRIPE: &str = "sk_live_51Hplanted0stripe0key";
    const DSN_KEY: &str = "0123456789abcdef0123456789abcdef";
    let body = format!(
        r#"{{"error":"boom","db_password":"{PASSWORD}","api_token":"{TOKEN}","stripe":"{STRIPE}","sentry":"https://{DSN_KEY}@o1.ingest.example/42","nested":{{"client_secret":"{PASSWORD}"}}}}"#
    );
    let server = Server::start(move |r, _| match r.path.as_str() {
        "/version" => Resp::new(200, "{\"version\": \"v1\"}"),
        _ => Resp::new(500, body.clone()).header("content-type", "application/json"),
    });
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    std::fs::write(
        dir.path().join("safedeploy.toml"),
        format!(
            "[app]\nname = \"fixture\"\n\n[environments.test]\nurl = \"{}\"\n\n[smoke]\nversion_path = \"/version\"\ndeadline = \"3s\"\ninterval = \"50ms\"\nconsecutive = 1\ntimeout = \"1s\"\n\n[[smoke.checks]]\nname = \"home\"\npath = \"/\"\n",
            server.url()
        ),
    )
    .expect("config");
    let run = |bin: &str, args: &[&str], expect: i32| -> String {
        let a = assert_cmd::Command::cargo_bin(bin)
            .expect("bin")
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SAFEDEPLOY_STATE_DIR", &state)
            .args(args)
            .timeout(std::time::Duration::from_secs(60))
            .assert();
        let (out, err) = output(&a);
        assert_eq!(a.get_output().status.code(), Some(expect), "{bin} {args:?}:\n{out}{err}");
        format!("{out}{err}")
    };
    let mut seen = String::new();
    for json in [&[][..], &["--json"][..]] {
        let args = [&["--env", "test", "--expect-version", "v1", "--record"][..], json].concat();
        let text = run("smoke-check", &args, 1);
        if !json.is_empty() {
            let doc = text.lines().find(|l| l.starts_with('{')).expect("a JSON document");
            serde_json::from_str::<serde_json::Value>(doc).unwrap_or_else(|e| panic!("still JSON ({e}): {doc}"));
        }
        seen += &text;
    }
    // A traceback whose exception line carries the same JSON: collect-logs' exception field.
    let log = dir.path().join("app.log");
    std::fs::write(
        &log,
        format!(
            "Traceback (most recent call last):\n  File \"/app/settings.py\", line 3, in load\nValueError: bad settings {{\"db_password\": \"{PASSWORD}\", \"api_token\": \"{TOKEN}\"}}\n"
        ),
    )
    .expect("log");
    let hunt = run("collect-logs", &["--input", "app.log", "--json", "--out", "hunt.txt"], 0);
    assert!(hunt.contains("\"exception\":\"ValueError: bad settings"), "{hunt}");
    seen += &hunt;
    seen += &std::fs::read_to_string(dir.path().join("hunt.txt")).expect("report");
    // The failure really was there to leak: the checker saw the body and said it failed.
    assert!(seen.contains("500") && seen.contains("boom"), "the failing answer is reported:\n{seen}");
    seen += &run("safedeploy", &["history", "--json"], 0);
    seen += &run("safedeploy", &["report", "--json", "--html", "page.html"], 0);
    seen += &std::fs::read_to_string(dir.path().join("page.html")).expect("page");
    assert!(seen.contains("****"), "something was masked:\n{seen}");
    // The ledger's own bytes (the database and its write-ahead log) never held them.
    for f in std::fs::read_dir(&state).expect("state dir").flatten() {
        if f.file_name().to_string_lossy().starts_with("ledger") {
            seen += &String::from_utf8_lossy(&std::fs::read(f.path()).expect("ledger file"));
        }
    }
    for secret in [PASSWORD, TOKEN, STRIPE, DSN_KEY] {
        assert!(!seen.contains(secret), "{secret} leaked:\n{seen}");
    }
}
