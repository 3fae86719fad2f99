//! Metrics as evidence in a canary, against a real Prometheus (Debian's, started by the test)
//! scraping a target whose values the test sets per version: the candidate judged against the
//! stable version in the same window, a lift under the effect-size floor passing, no data said
//! as no verdict, a shadow metric recorded and never acted on.

use crate::server::{Resp, Server};
use crate::support::{Project, output};
use std::sync::{Arc, Mutex};

/// The exposition the target serves: one gauge per version.
fn exposition(values: &[(&str, f64)]) -> String {
    let mut out = String::from("# TYPE app_error_ratio gauge\n");
    for (v, x) in values {
        out.push_str(&format!("app_error_ratio{{version=\"{v}\"}} {x}\n"));
    }
    out
}

fn new_version(p: &Project, label: &str) {
    p.write("NOTES.md", &format!("{label}\n"));
    p.commit_all(label, "Dev");
    p.cmd("deploy-staging").args(["--version", label]).assert().success();
    p.cmd("smoke-check").args(["--env", "staging", "--record"]).assert().success();
}

#[test]
fn a_canary_is_judged_on_prometheus_metrics_against_the_stable_version() {
    let values = Arc::new(Mutex::new(vec![("v1", 0.01), ("v2", 0.015)]));
    let v = values.clone();
    let target = Server::start(move |r, _| match r.path.as_str() {
        "/metrics" => {
            let vals = v.lock().expect("values").clone();
            Resp::new(200, exposition(&vals)).header("Content-Type", "text/plain; version=0.0.4")
        }
        _ => Resp::new(404, "no"),
    });
    let prom = crate::prom::Prometheus::start(&[format!("127.0.0.1:{}", target.port)]);
    let p = Project::new();
    p.v1_everywhere();
    p.edit_config(|c| {
        c + &format!(
            r#"
[[smoke.metrics]]
name = "error ratio"
provider = "prometheus"
url = "{url}"
query = 'max(app_error_ratio{{version="{{{{version}}}}"}})'
max_ratio = 2.0
min_delta = 0.02
phases = ["canary"]
interval = "1s"

[[smoke.metrics]]
name = "queue depth"
provider = "prometheus"
url = "{url}"
query = 'max(app_queue_depth{{version="{{{{version}}}}"}})'
phases = ["canary"]
interval = "1s"

[[smoke.metrics]]
name = "strict ratio"
provider = "prometheus"
url = "{url}"
query = 'max(app_error_ratio{{version="{{{{version}}}}"}})'
compare = "absolute"
max = 0.001
mode = "shadow"
phases = ["canary"]
interval = "1s"
"#,
            url = prom.url()
        )
    });
    p.commit_all("metrics", "Dev");
    new_version(&p, "v2");
    prom.wait_until(|| prom.query("app_error_ratio{version=\"v2\"}").is_some(), "v2's value scraped");

    // v2: 1.5 % against 1 %: more, but under the floor of 2 points: it passes; the queue-depth
    // metric has no data (no verdict, said); the shadow metric would fail it, and only says so.
    let a = p.cmd("promote").args(["--canary", "10", "--bake", "3s"]).assert().success();
    let err = output(&a).1;
    assert!(err.contains("metric / error ratio: passed: candidate 0.0150 vs stable 0.0100"), "{err}");
    assert!(
        err.contains("metric / queue depth: no verdict (no_data = \"ignore\"): no data for the candidate"),
        "{err}"
    );
    assert!(
        err.contains("metric / strict ratio: shadow: would fail: candidate 0.0150 against a maximum of 0.001"),
        "{err}"
    );
    assert_eq!(p.served_version("production").as_deref(), Some("v2"));
    assert!(
        p.query_i64("SELECT COUNT(*) FROM shadow_verdicts WHERE metric = 'strict ratio' AND label = 'v2' AND failed")
            >= 1
    );

    // v3: 30 % against v2's 1.5 %: failed on the metric, aborted, v2 serves everyone.
    values.lock().expect("values").push(("v3", 0.30));
    new_version(&p, "v3");
    prom.wait_until(|| prom.query("app_error_ratio{version=\"v3\"}").is_some_and(|x| x > 0.2), "v3's value scraped");
    let a = p.cmd("promote").args(["--canary", "10", "--bake", "3s"]).assert().code(1);
    let err = output(&a).1;
    assert!(
        err.contains(
            "v3 failed a canary round in production: metric / error ratio: failed: candidate 0.3000 vs stable 0.0150"
        ),
        "{err}"
    );
    assert_eq!(p.served_version("production").as_deref(), Some("v2"));
    assert_eq!(p.query_strings("SELECT label FROM versions WHERE bad_at IS NOT NULL"), vec!["v3"]);

    // The report says how often the shadow metric would have failed versions that proved
    // healthy: v2 passed its checks in production after the would-be failure.
    p.cmd("smoke-check").args(["--env", "production", "--record"]).assert().success();
    let a = p.cmd("safedeploy").args(["report", "--json"]).assert().success();
    let doc: serde_json::Value = serde_json::from_str(&output(&a).0).expect("json");
    let shadow = doc["shadow_metrics"].as_array().expect("shadow_metrics");
    let strict = shadow.iter().find(|m| m["metric"] == "strict ratio").expect("the shadow metric");
    assert_eq!(strict["would_fail_healthy"], 1, "{strict:#}");
    assert!(strict["versions"].as_i64().is_some_and(|n| n >= 2), "{strict:#}");
}

/// The example app's own `/metrics` (prometheus-client, labelled by `SAFEDEPLOY_VERSION`),
/// scraped by a real Prometheus through staging's address: a bake judges each version's 5xx
/// share of its users' requests, on a page the journey never visits.
#[test]
fn a_bake_is_judged_on_the_example_apps_own_metrics_scraped_by_prometheus() {
    let p = Project::new();
    p.cmd("deploy-staging").args(["--version", "v1"]).assert().success();
    let prom = crate::prom::Prometheus::start(&[format!("127.0.0.1:{}", p.staging_port)]);
    let share = |v: &str| {
        format!(
            "(sum(rate(http_requests_total{{version=\"{v}\",status=~\"5..\"}}[3s])) or vector(0)) / sum(rate(http_requests_total{{version=\"{v}\"}}[3s]))"
        )
    };
    p.edit_config(|c| {
        c + &format!(
            r#"
[[smoke.metrics]]
name = "5xx share"
provider = "prometheus"
url = "{}"
query = '{}'
compare = "absolute"
max = 0.05
phases = ["bake"]
interval = "1s"

[[smoke.metrics]]
name = "5xx share over the window"
provider = "prometheus"
url = "{}"
query = '{}'
range = true
step = "1s"
window = "4s"
compare = "absolute"
max = 0.05
phases = ["bake"]
interval = "1s"
"#,
            prom.url(),
            share("{{version}}"),
            prom.url(),
            share("{{version}}")
        )
    });
    // Users on the home page and on a report page the journey never visits.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = crate::support::users_on(
        p.url("staging"),
        &["/", "/report"],
        std::time::Duration::from_millis(20),
        stop.clone(),
    );
    prom.wait_until(|| prom.query(&share("v1")).is_some(), "v1's requests scraped");
    let a = p
        .cmd("smoke-check")
        .args(["--env", "staging", "--watch", "3s", "--interval", "1s", "--json"])
        .assert()
        .success();
    let doc: serde_json::Value = serde_json::from_str(&output(&a).0).expect("json");
    let metric = |doc: &serde_json::Value, name: &str| {
        doc["checks"].as_array().and_then(|c| c.iter().find(|x| x["chain"] == "metric" && x["name"] == name)).cloned()
    };
    for name in ["5xx share", "5xx share over the window"] {
        let m = metric(&doc, name).unwrap_or_else(|| panic!("{name} judged: {doc:#}"));
        assert_eq!(m["passed"], true, "{doc:#}");
        assert_eq!(m["detail"], "passed: candidate 0.0000 against a maximum of 0.05", "{doc:#}");
    }

    // v2 answers the report page 500: its users' 5xx share is a half, by its own metrics.
    let app = std::fs::read_to_string(p.app.join("application.py")).expect("app");
    p.write(
        "application.py",
        &app.replace(
            "@app.get(\"/health\")",
            "@app.get(\"/report\")\ndef report():\n    return \"no\\n\", 500\n\n\n@app.get(\"/health\")",
        ),
    );
    p.commit_all("v2", "Dev");
    p.cmd("deploy-staging").args(["--version", "v2"]).assert().success();
    prom.wait_until(|| prom.query(&share("v2")).is_some_and(|x| x > 0.3), "v2's 5xx scraped");
    let a =
        p.cmd("smoke-check").args(["--env", "staging", "--watch", "3s", "--interval", "1s", "--json"]).assert().code(1);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    load.join().expect("users");
    let (out, err) = output(&a);
    assert!(
        err.contains("metric / 5xx share: failed: candidate 0.") && err.contains("against a maximum of 0.05"),
        "{err}"
    );
    // The range query's mean over the window fails it too (Prometheus' matrix answer).
    let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    let m = metric(&doc, "5xx share over the window").expect("the range metric judged");
    assert_eq!(m["passed"], false, "{doc:#}");
    assert!(m["detail"].as_str().is_some_and(|d| d.starts_with("failed: candidate 0.")), "{doc:#}");
}
