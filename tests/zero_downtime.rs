//! Zero dropped requests on the local platform: continuous load from loopback clients while
//! deploy-staging, promote and rollback switch versions behind each environment's nginx. Every
//! request must succeed, and the load must have seen both versions (the switches happened
//! under it).

use crate::support::Project;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What the load saw: requests, failures (with a sample), and the versions served.
#[derive(Default, Debug)]
struct Tally {
    requests: u64,
    failures: Vec<String>,
    versions: BTreeMap<String, u64>,
}

/// Clients hitting `base` until `stop` is set (or two minutes pass): one reusing its
/// connections (keep-alive), one opening a new connection per request.
fn load(base: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Tally> {
    std::thread::spawn(move || {
        let keepalive = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
        let fresh = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        let mut t = Tally::default();
        let until = Instant::now() + Duration::from_secs(120);
        while !stop.load(Ordering::SeqCst) && Instant::now() < until {
            for (client, path) in [(&keepalive, "/version"), (&fresh, "/"), (&keepalive, "/")] {
                t.requests += 1;
                match client.get(format!("{base}{path}")).send() {
                    Ok(r) if r.status().is_success() => {
                        if path == "/version" {
                            let body = r.text().unwrap_or_default();
                            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                            *t.versions.entry(v["version"].as_str().unwrap_or("?").to_string()).or_default() += 1;
                        }
                    }
                    Ok(r) => t.failures.push(format!("{path}: {}", r.status())),
                    Err(e) => t.failures.push(format!("{path}: {e}")),
                }
            }
        }
        t
    })
}

#[test]
fn deploy_promote_and_rollback_drop_no_request_under_load() {
    let p = Project::new();
    p.v1_everywhere();
    p.commit_incident();
    let stop = Arc::new(AtomicBool::new(false));
    let staging = load(p.url("staging"), stop.clone());
    let production = load(p.url("production"), stop.clone());

    p.cmd("deploy-staging").args(["--version", "v2"]).assert().success();
    p.cmd("promote")
        .args(["--version", "v2", "--skip-pre-traffic", "forced", "--force", "--reason", "load test"])
        .assert()
        .success();
    p.cmd("rollback").args(["--reason", "load test"]).assert().success();
    // v2 is now marked bad: promoting it again needs the override; then back once more.
    p.cmd("promote")
        .args(["--version", "v2", "--skip-pre-traffic", "forced", "--force", "--reason", "load test"])
        .assert()
        .success();
    p.cmd("rollback").args(["--reason", "load test"]).assert().success();
    stop.store(true, Ordering::SeqCst);
    let (staging, production) = (staging.join().expect("load"), production.join().expect("load"));

    for (env, t) in [("staging", &staging), ("production", &production)] {
        assert!(
            t.failures.is_empty(),
            "{env}: {} of {} requests failed: {:?}",
            t.failures.len(),
            t.requests,
            &t.failures[..t.failures.len().min(5)]
        );
        assert!(t.requests > 30, "{env}: the load ran ({} requests)", t.requests);
    }
    assert!(staging.versions.contains_key("v1") && staging.versions.contains_key("v2"), "{staging:?}");
    assert!(production.versions.contains_key("v1") && production.versions.contains_key("v2"), "{production:?}");
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
    p.assert_ledger_intact();
}
