//! rollback acts whenever production is bad, and only then: a hung live version is restarted,
//! a failed check or a triggered alert on the live known good version restores the one before
//! it, the restore is timed to when the good version serves (not to when the bad one stopped),
//! and deploy-staging never reaches production.

use crate::support::{Project, output};
use predicates::prelude::*;

/// A harmless v2 that passes everywhere: the last known good in production.
fn v2_good_everywhere(p: &Project) {
    p.v1_everywhere();
    let tpl = std::fs::read_to_string(p.app.join("application.py")).expect("app");
    p.write("application.py", &format!("{tpl}\n# v2: a comment only\n"));
    p.write("tests/test_v2.py", "def test_v2():\n    assert True\n");
    p.commit_all("v2: harmless", "Team");
    p.cmd("deploy-staging").args(["--version", "v2"]).assert().success();
    p.cmd("smoke-check").args(["--env", "staging", "--record"]).assert().success();
    p.cmd("promote").assert().success();
    p.cmd("smoke-check").args(["--env", "production", "--record"]).assert().success();
    assert_eq!(p.served_version("production").as_deref(), Some("v2"));
}

fn alert(p: &Project, transition: &str) -> std::path::PathBuf {
    let path = p.app.join(format!("alert-{}.json", transition.replace(' ', "-")));
    let body = format!(
        r#"{{"alert_id": "4711", "transition": "{transition}", "title": "5xx rate above 2%", "date": "{}",
            "tags": "service:url-shortener,env:production"}}"#,
        safedeploy::clock::now_ms()
    );
    std::fs::write(&path, body).expect("payload");
    path
}

#[test]
fn a_hung_live_version_is_restarted_not_called_nothing_to_roll_back() {
    use nix::sys::signal::{Signal, killpg};
    let p = Project::new();
    p.v1_everywhere();
    let hung = p.env_pid("production").expect("production's group");
    killpg(nix::unistd::Pid::from_raw(hung), Signal::SIGSTOP).expect("SIGSTOP");
    p.cmd("smoke-check").args(["--env", "production"]).assert().code(1);
    let a = p.cmd("rollback").args(["--json"]).assert().success();
    let (out, err) = output(&a);
    let doc: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(doc["changed"], true, "{out}{err}");
    assert_eq!(doc["restored_version"], "v1");
    assert!(
        err.contains("production: restoring v1 (v1 was live but did not answer its health path; restarted)"),
        "{err}"
    );
    assert_eq!(p.served_version("production").as_deref(), Some("v1"), "production answers again");
    assert_ne!(p.env_pid("production"), Some(hung), "a new process serves");
    assert!(!crate::support::group_alive(hung), "the hung one is gone");
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM versions WHERE bad_at IS NOT NULL"), 0, "v1 is not marked bad");
    assert_eq!(
        p.query_i64("SELECT COUNT(*) FROM incidents WHERE bad_label = 'v1' AND restored_label = 'v1' AND restored_at IS NOT NULL"),
        1
    );
    // Now it is healthy: nothing to do.
    p.cmd("rollback").assert().success().stdout(predicate::str::contains("nothing to roll back"));
}

#[test]
fn a_triggered_alert_on_the_live_known_good_version_restores_the_one_before() {
    let p = Project::new();
    v2_good_everywhere(&p);
    // Warn, No Data and Renotify ask for no rollback.
    for transition in ["Warn", "No Data", "Renotify"] {
        p.cmd("rollback")
            .arg("--datadog-payload")
            .arg(alert(&p, transition))
            .assert()
            .success()
            .stdout(predicate::str::contains("rollback acts on Triggered, Re-Triggered only; nothing to roll back"));
        assert_eq!(p.served_version("production").as_deref(), Some("v2"), "{transition}");
    }
    let a = p.cmd("rollback").arg("--datadog-payload").arg(alert(&p, "Triggered")).assert().success();
    let (_, err) = output(&a);
    assert!(err.contains("production: rolling back v2 → v1"), "{err}");
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
    let why = p.query_strings("SELECT bad_reason FROM versions WHERE label = 'v2'");
    assert!(why[0].contains("Datadog alert 4711 (Triggered: 5xx rate above 2%)"), "{why:?}");
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM incidents WHERE bad_label = 'v2' AND restored_label = 'v1'"), 1);
    // v2 passed its checks after it took traffic: the charge starts at the alert, not its switch.
    let switched = p.query_i64("SELECT switched_at FROM deployments WHERE label = 'v2' AND env = 'production'");
    assert!(p.query_i64("SELECT charged_from FROM incidents") > switched);
    assert_eq!(p.query_i64("SELECT charged_from FROM incidents"), p.query_i64("SELECT detected_at FROM incidents"));
    // v1 is healthy and nothing speaks against it now.
    p.cmd("rollback").assert().success().stdout(predicate::str::contains("nothing to roll back"));
}

#[test]
fn a_failed_check_after_the_live_version_passed_makes_it_suspect() {
    let p = Project::new();
    p.v1_everywhere();
    good_everywhere_with_a_switch(&p, "v2");
    // A later check fails (a bug the first checks did not cover, or a bake round).
    std::fs::write(p.state.join("local/envs/production/data/break-v2"), "").expect("break v2");
    p.cmd("smoke-check").args(["--env", "production", "--record"]).assert().code(1);
    p.cmd("rollback").assert().success().stderr(predicate::str::contains("production: rolling back v2 → v1"));
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
    let why = p.query_strings("SELECT bad_reason FROM versions WHERE label = 'v2'");
    assert!(why[0].starts_with("failed its check: shorten and follow / shorten a URL"), "{why:?}");

    // A changed check that the restored version fails too: not "restored", exit 1, and the
    // incident stays open until a version serves.
    p.edit_config(|c| c.replace("expect_status = [302]", "expect_status = [418]"));
    let a = p.cmd("safedeploy").args(["status", "--env", "production"]).assert().success();
    assert!(output(&a).0.contains("production: v1, healthy"), "{}", output(&a).0);
    p.cmd("smoke-check").args(["--env", "production", "--record"]).assert().code(1);
    let a = p.cmd("safedeploy").args(["status", "--env", "production"]).assert().success();
    assert!(output(&a).0.contains("production: v1, FAILING its checks"), "{}", output(&a).0);
}

#[test]
fn a_suspect_version_with_no_earlier_good_one_stays_and_is_not_marked_bad() {
    let p = Project::new();
    p.v1_everywhere();
    let a = p.cmd("rollback").arg("--datadog-payload").arg(alert(&p, "Triggered")).assert().code(3);
    let (_, err) = output(&a);
    assert!(err.contains("v1 is suspect (Datadog alert 4711"), "{err}");
    assert!(
        err.contains("there is no earlier known good version in production to restore; v1 stays, not marked bad"),
        "{err}"
    );
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM versions WHERE bad_at IS NOT NULL"), 0);
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
}

#[test]
fn the_restore_is_timed_to_when_the_good_version_serves_not_to_the_bad_ones_stop() {
    let p = Project::new();
    p.v1_everywhere();
    // v2 keeps a child that ignores SIGTERM: stopping it takes the whole grace (3 s here).
    let procfile = std::fs::read_to_string(p.app.join("Procfile")).expect("Procfile");
    p.write("Procfile", &procfile.replace("web: ", "web: (trap '' TERM; sleep 60) & "));
    p.commit_all("v2 with a stubborn child", "Team");
    p.cmd("deploy-staging").args(["--version", "v2"]).assert().success();
    p.cmd("promote")
        .args(["--version", "v2", "--skip-pre-traffic", "forced", "--force", "--reason", "test"])
        .assert()
        .success();
    let started = std::time::Instant::now();
    let a = p.cmd("rollback").args(["--reason", "test", "--json"]).assert().success();
    let took = started.elapsed();
    let (out, err) = output(&a);
    assert!(err.contains("ignored SIGTERM for 3s; it was killed"), "the stop took the grace: {err}");
    assert!(took.as_millis() >= 3000, "the run includes the stop ({took:?})");
    let doc: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    let ttr = doc["time_to_restore_ms"].as_i64().expect("ttr");
    assert!(ttr < 2500, "time to restore {ttr} ms excludes the old version's stop grace: {out}");
    let downtime = p.query_i64("SELECT downtime_ms FROM incidents WHERE bad_label = 'v2'");
    assert_eq!(downtime, doc["downtime_ms"].as_i64().expect("downtime"));
    let restored = p.query_i64("SELECT restored_at FROM incidents WHERE bad_label = 'v2'");
    let finished = p.query_i64("SELECT finished_at FROM deployments WHERE action = 'rollback'");
    assert!(finished - restored >= 2500, "restored ({restored}) before the stop ended ({finished})");
}

#[test]
fn deploy_staging_refuses_an_environment_that_only_promote_may_change() {
    let p = Project::new();
    p.v1_everywhere();
    let a = p.cmd("deploy-staging").args(["--version", "v9", "--env", "production"]).assert().code(2);
    let (out, err) = output(&a);
    assert!(out.is_empty());
    assert!(
        err.contains("deploy-staging: error: deploy-staging deploys to staging environments only; production is one whose incidents spend the SLA budget (sla.environments)"),
        "{err}"
    );
    assert!(err.contains("hint: promote --version v9 --to production"), "{err}");
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM versions WHERE label = 'v9'"), 0);
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
}

/// A warm record that cannot be read (a disk filled mid-write, a hand edit) does not block the
/// rollback: it is said, and the previous version is started afresh.
#[test]
fn an_unreadable_warm_record_is_a_cold_start_not_a_blocked_rollback() {
    let p = Project::new();
    v2_good_everywhere(&p);
    let warm = p.state.join("local/envs/production/warm.json");
    assert!(warm.exists(), "v1 is kept warm");
    let stale_warm_pid = p.warm_pid("production");
    std::fs::write(&warm, "{\"state\": {\"label\": \"v1\", \"pid\": tru").expect("corrupt");
    let a = p.cmd("safedeploy").args(["status"]).assert().success();
    assert!(output(&a).1.contains("warm.json"), "status says the record is unreadable: {:?}", output(&a));
    let a = p.cmd("rollback").args(["--to", "v1", "--reason", "test"]).assert().success();
    let (_, err) = output(&a);
    assert!(err.contains("no warm previous is used, a rollback starts the version afresh"), "{err}{:?}", output(&a).0);
    assert!(err.contains("starting v1"), "a cold start: {err}");
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
    let record = std::fs::read_to_string(&warm).unwrap_or_default();
    assert!(record.is_empty() || serde_json::from_str::<serde_json::Value>(&record).is_ok(), "written anew: {record}");
    // The warm copy the record named retires by itself (its retire file); kill it here so the
    // stray check below sees only what is recorded.
    if let Some(pid) = stale_warm_pid {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

/// A version `label` that passes everywhere, with a switch: once `data/break-LABEL` exists in
/// the environment's data dir, its /shorten answers 500 (its health route still answers 200,
/// as a version whose database no longer fits it would).
fn good_everywhere_with_a_switch(p: &Project, label: &str) {
    let app = std::fs::read_to_string(p.app.join("application.py")).expect("app");
    let marker = "    data = request.get_json(silent=True) or request.form\n";
    let base = match app.find("    if os.path.exists(os.path.join(os.environ.get(\"SAFEDEPLOY_DATA_DIR\"") {
        Some(_) => {
            app.lines()
                .filter(|l| !l.contains("break-v") && !l.contains("return \"broken\\n\", 500"))
                .collect::<Vec<_>>()
                .join("\n")
                + "\n"
        }
        None => app,
    };
    let changed = base.replace(
        marker,
        &format!("    if os.path.exists(os.path.join(os.environ.get(\"SAFEDEPLOY_DATA_DIR\", \".\"), \"break-{label}\")):\n        return \"broken\\n\", 500\n{marker}"),
    );
    assert!(changed.contains(&format!("break-{label}")), "the app's /shorten changed; update this test");
    p.write("application.py", &changed);
    p.commit_all(&format!("{label}: breakable"), "Team");
    p.cmd("deploy-staging").args(["--version", label]).assert().success();
    p.cmd("smoke-check").args(["--env", "staging", "--record"]).assert().success();
    p.cmd("promote").args(["--version", label]).assert().success();
    p.cmd("smoke-check").args(["--env", "production", "--record"]).assert().success();
}

/// Restored means served: a restored version whose users' pages fail (its health route still
/// answers) is not "restored". Its failure is recorded, the incident stays open, and the next
/// older known good version is tried; the last known good is the newest version whose newest
/// verdict is a pass; status says healthy only from a passing verdict.
#[test]
fn a_restore_that_does_not_serve_its_users_is_not_restored_and_the_next_good_version_is_tried() {
    let p = Project::new();
    p.v1_everywhere();
    good_everywhere_with_a_switch(&p, "v2");
    good_everywhere_with_a_switch(&p, "v3");
    // v4, the incident's bad commit, forced in, fails its check.
    p.commit_incident();
    p.cmd("deploy-staging").args(["--version", "v4"]).assert().success();
    p.cmd("promote")
        .args(["--version", "v4", "--force", "--reason", "t", "--skip-pre-traffic", "t"])
        .assert()
        .success();
    p.cmd("smoke-check").args(["--env", "production", "--record"]).assert().code(1);
    assert!(p.warm_pid("production").is_some(), "v3, which passed, is kept warm");
    // v3 and v2 no longer serve their users once restored (their health routes still answer).
    std::fs::write(p.state.join("local/envs/production/data/break-v3"), "").expect("break v3");
    std::fs::write(p.state.join("local/envs/production/data/break-v2"), "").expect("break v2");
    let a = p.cmd("rollback").args(["--json"]).assert().success();
    let (out, err) = output(&a);
    assert!(err.contains("production: v3 was switched to but fails its checks"), "{err}");
    assert!(err.contains("trying the known good version before it, v2"), "{err}");
    assert!(err.contains("production: v2 was switched to but fails its checks"), "{err}");
    assert!(err.contains("trying the known good version before it, v1"), "{err}");
    let doc: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(doc["restored_version"], "v1", "{doc:#}");
    assert_eq!(doc["tried"], serde_json::json!(["v3", "v2"]), "{doc:#}");
    assert!(doc["verified_ms"].as_i64().expect("verified") >= doc["time_to_restore_ms"].as_i64().expect("switched"));
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
    assert_eq!(
        p.query_strings(
            "SELECT label || ':' || passed FROM verifications WHERE env = 'production' ORDER BY id DESC LIMIT 3"
        ),
        vec!["v1:1", "v2:0", "v3:0"]
    );
    assert_eq!(p.query_strings("SELECT restored_label FROM incidents"), vec!["v1"]);
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM incidents WHERE restored_at IS NULL"), 0);
    assert_eq!(
        p.query_strings("SELECT label FROM versions WHERE bad_at IS NOT NULL"),
        vec!["v4"],
        "v2 and v3 failed, not condemned"
    );
    let a = p.cmd("safedeploy").args(["status", "--env", "production", "--json"]).assert().success();
    let st: serde_json::Value = serde_json::from_str(&output(&a).0).expect("json");
    assert_eq!(st["environments"][0]["last_known_good"], "v1", "v2's and v3's newest verdicts are failures: {st:#}");
    assert_eq!(st["environments"][0]["healthy"], true, "{st:#}");
    assert!(p.stray_processes().is_empty(), "{:?}", p.stray_processes());
}

/// A version that failed in an environment is never kept warm there, and `rollback --to` names
/// a version known good there, or says why it restores another.
#[test]
fn a_failed_version_is_never_warm_and_rollback_to_needs_a_known_good_version() {
    let p = Project::new();
    p.v1_everywhere();
    // v2, the bad commit, fails staging's check; forced into production, it fails there too.
    p.commit_incident();
    p.cmd("deploy-staging").args(["--version", "v2"]).assert().success();
    p.cmd("smoke-check").args(["--env", "staging", "--record"]).assert().code(1);
    p.cmd("promote")
        .args(["--version", "v2", "--force", "--reason", "t", "--skip-pre-traffic", "t"])
        .assert()
        .success();
    p.cmd("smoke-check").args(["--env", "production", "--record"]).assert().code(1);
    // v3, the fix, replaces it in staging and production: v2 is stopped, not kept warm.
    p.git(&["checkout", "HEAD~1", "--", "application.py"]);
    p.write("NOTES", "v3\n");
    p.commit_all("v3: the fix", "Team");
    p.cmd("deploy-staging").args(["--version", "v3"]).assert().success();
    assert_eq!(p.warm_pid("staging"), None, "v2 failed staging: not kept warm there");
    p.cmd("smoke-check").args(["--env", "staging", "--record"]).assert().success();
    let a = p.cmd("promote").args(["--version", "v3"]).assert().success();
    assert!(!output(&a).1.contains("v2 keeps running without traffic"), "{}", output(&a).1);
    assert_eq!(p.warm_pid("production"), None, "v2 failed production: not kept warm there");
    p.cmd("smoke-check").args(["--env", "production", "--record"]).assert().success();
    // A planned rollback, away from a version known good here (no failing verdict, no alert),
    // charges nothing and condemns nothing.
    let a = p.cmd("rollback").args(["--env", "production", "--to", "v1", "--reason", "drill"]).assert().success();
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
    assert!(output(&a).0.contains("nothing is charged"), "{}", output(&a).0);
    assert_eq!(p.query_i64("SELECT downtime_ms FROM incidents WHERE bad_label = 'v3'"), 0);
    assert_eq!(p.query_strings("SELECT cause FROM incidents WHERE bad_label = 'v3'"), vec!["planned"]);
    assert!(p.query_strings("SELECT label FROM versions WHERE bad_at IS NOT NULL AND label = 'v3'").is_empty());
    // v3 is still known good in production: --to v3 needs nothing more.
    p.cmd("rollback").args(["--env", "production", "--to", "v3", "--reason", "back"]).assert().success();
    assert_eq!(p.served_version("production").as_deref(), Some("v3"));
    // A label with no recorded pass in production: refused without --force, named.
    p.write("NOTES", "v4\n");
    p.commit_all("v4", "Team");
    p.cmd("deploy-staging").args(["--version", "v4"]).assert().success();
    let a = p.cmd("rollback").args(["--env", "production", "--to", "v4", "--reason", "t"]).assert().code(2);
    assert!(
        output(&a)
            .1
            .contains("--to v4: v4 is not known good in production: it never passed a recorded check in production"),
        "{}",
        output(&a).1
    );
    assert_eq!(p.served_version("production").as_deref(), Some("v3"), "nothing changed");
    p.cmd("rollback").args(["--env", "production", "--to", "v4", "--force"]).assert().code(2);
    let a = p
        .cmd("rollback")
        .args(["--env", "production", "--to", "v4", "--force", "--reason", "hotfix by hand"])
        .assert()
        .success();
    assert!(output(&a).1.contains("overriding: v4 is not known good in production"), "{}", output(&a).1);
    assert_eq!(p.served_version("production").as_deref(), Some("v4"));
}

/// An alert is evidence only against a version that was live when it fired, and only once.
#[test]
fn an_alert_from_before_the_version_took_traffic_or_delivered_twice_condemns_nothing() {
    let p = Project::new();
    v2_good_everywhere(&p);
    let old = format!(
        r#"{{"alert_id": "77", "transition": "Triggered", "title": "5xx", "date": "{}", "tags": "env:production"}}"#,
        safedeploy::clock::now_ms() - 3_600_000
    );
    std::fs::write(p.app.join("old.json"), old).expect("payload");
    let a = p.cmd("rollback").args(["--datadog-payload", "old.json"]).assert().success();
    assert!(output(&a).0.contains("before v2 took traffic"), "{}", output(&a).0);
    let ancient =
        r#"{"alert_id": "78", "transition": "Triggered", "title": "5xx", "date": "1", "tags": "env:production"}"#;
    std::fs::write(p.app.join("ancient.json"), ancient).expect("payload");
    p.cmd("rollback").args(["--datadog-payload", "ancient.json"]).assert().success();
    assert_eq!(p.served_version("production").as_deref(), Some("v2"));
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM incidents"), 0, "nothing charged");
    // A real alert acts once; delivered again, it does not condemn v1, restored after it.
    let now = alert(&p, "Triggered");
    p.cmd("rollback").args(["--datadog-payload"]).arg(&now).assert().success();
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
    let a = p.cmd("rollback").args(["--datadog-payload"]).arg(&now).assert().success();
    assert!(output(&a).0.contains("this alert already acted"), "{}", output(&a).0);
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
    assert_eq!(p.query_strings("SELECT label FROM versions WHERE bad_at IS NOT NULL"), vec!["v2"]);
    let detected = p.query_i64("SELECT detected_at FROM incidents");
    let took = p.query_i64("SELECT took_traffic_at FROM incidents");
    assert!(detected >= took, "detected ({detected}) never before it took traffic ({took})");
}
