//! The pipeline end to end on the local platform, against the real example app: deploy, verify,
//! promote, the incident's v2, rollback, the error report — asserting exit codes, output, what
//! is served and what the ledger says.

use crate::support::{Project, Transcript, output, process_running};
use predicates::prelude::*;

#[test]
fn v1_through_the_pipeline_then_v2_is_stopped_rolled_back_and_reported() {
    let p = Project::new();
    let mut t = Transcript::default();

    // v1: staging, verified, promoted, verified.
    let a = p.cmd("deploy-staging").args(["--version", "v1"]).assert().success();
    t.step(&p, "deploy-staging --version v1", &a);
    let (out, _) = output(&a);
    assert!(out.contains("staging: v1 is live and healthy"), "{out}");
    assert_eq!(p.served_version("staging").as_deref(), Some("v1"));
    assert_eq!(p.query_strings("SELECT label FROM versions"), vec!["v1"]);
    let a = p
        .cmd("smoke-check")
        .args(["--env", "staging", "--record"])
        .assert()
        .success()
        .stdout(predicate::str::contains("staging: v1 passed 3 check(s)"))
        .stderr(predicate::str::contains("ok   shorten and follow / follow the short link"));
    t.step(&p, "smoke-check --env staging --record", &a);
    let a = p.cmd("promote").assert().success().stdout(predicate::str::contains("production: v1 is live and healthy"));
    t.step(&p, "promote", &a);
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
    p.cmd("smoke-check").args(["--env", "production", "--record"]).assert().success();
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM verifications WHERE passed = 1 AND label = 'v1'"), 2);

    // v2, the incident. Staging's smoke check catches the 500 on the shorten request.
    p.commit_incident();
    let a = p.cmd("deploy-staging").args(["--version", "v2"]).assert().success();
    t.step(&p, "deploy-staging --version v2", &a);
    let a = p
        .cmd("smoke-check")
        .args(["--env", "staging", "--record"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("shorten and follow / shorten a URL: POST"))
        .stderr(predicate::str::contains("→ 500: status 500 (expected 201)"))
        .stderr(predicate::str::contains("follow the short link: skipped: an earlier check of the chain failed"));
    t.step(&p, "smoke-check --env staging --record", &a);

    // Promote refuses what did not pass staging; an override needs a reason.
    let a = p.cmd("promote").args(["--version", "v2"]).assert().code(1).stderr(predicate::str::contains(
        "refusing to promote v2 to production: v2 has not passed the smoke checks in staging",
    ));
    t.step(&p, "promote --version v2", &a);
    let a = p
        .cmd("promote")
        .args(["--version", "v2", "--force"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--force needs --reason"));
    t.step(&p, "promote --version v2 --force", &a);
    assert_eq!(p.served_version("production").as_deref(), Some("v1"), "a refused promote changes nothing");
    let a = p
        .cmd("promote")
        .args(["--version", "v2", "--skip-pre-traffic", "forced", "--force", "--reason", "replaying the incident"])
        .assert()
        .success();
    t.step(&p, "promote --version v2 --skip-pre-traffic forced --force --reason 'replaying the incident'", &a);
    assert_eq!(p.served_version("production").as_deref(), Some("v2"));
    let a = p.cmd("smoke-check").args(["--env", "production", "--record"]).assert().code(1);
    t.step(&p, "smoke-check --env production --record", &a);

    // Rollback restores v1, marks v2 bad, records the incident with its downtime.
    let a = p.cmd("rollback").args(["--reason", "production smoke failed", "--json"]).assert().success();
    t.step(&p, "rollback --reason 'production smoke failed' --json", &a);
    let (out, err) = output(&a);
    let summary: serde_json::Value = serde_json::from_str(&out).expect("--json summary on stdout");
    assert_eq!(summary["restored_version"], "v1");
    assert_eq!(summary["bad_version"], "v2");
    assert!(summary["time_to_restore_ms"].as_i64().expect("ttr") < 15_000, "{summary}");
    assert!(err.contains("production: v1 restored in"), "{err}");
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
    assert_eq!(p.query_strings("SELECT label FROM versions WHERE bad_at IS NOT NULL"), vec!["v2"]);
    assert_eq!(
        p.query_i64(
            "SELECT COUNT(*) FROM incidents WHERE bad_label = 'v2' AND restored_label = 'v1' AND downtime_ms > 0"
        ),
        1
    );

    // In `post { failure }` a second rollback has nothing to do.
    let a = p
        .cmd("rollback")
        .assert()
        .success()
        .stdout(predicate::str::contains("already runs its last known good version v1; nothing to roll back"));
    t.step(&p, "rollback", &a);
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM incidents"), 1);

    // The error report names the exception and the line of the app it came from.
    let report = p.app.join("hunt.txt");
    // The console names every group: the exception, and the failed request's access line.
    let a = p.cmd("collect-logs").args(["--env", "production", "--out"]).arg(&report).assert().success().stdout(
        predicate::str::contains("TypeError: the JSON object must be str, bytes or bytearray, not TextIOWrapper")
            .and(predicate::str::contains("\"POST /shorten HTTP/1.1\" 500 ")),
    );
    t.groups_step(&p, "collect-logs --env production --out hunt.txt", &a);
    let text = std::fs::read_to_string(&report).expect("report");
    assert!(text.contains("innermost app frame: application.py (v2):"), "{text}");
    assert!(text.contains("in load_urls"), "{text}");
    // Two groups: the traceback (with its logged message) and the failed request's 5xx access
    // line. Start-up lines (`--error-logfile -`) may appear as context, never as a group.
    assert!(text.contains("in 2 distinct group(s)"), "{text}");
    assert_eq!(text.matches("exception: TypeError").count(), 1, "{text}");
    assert!(text.contains("\"POST /shorten HTTP/1.1\" 500"), "{text}");

    // Everything the ledger holds is consistent.
    p.assert_ledger_intact();
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM deployments WHERE outcome = 'in_progress'"), 0);

    // What each step said, as exact text: a reworded verdict fails here.
    insta::assert_snapshot!("the_incident_through_the_pipeline", t.text());
}

/// v1 everywhere, then v3 whose health check fails, forced into production.
fn unhealthy_v3(p: &Project) -> (String, String) {
    p.v1_everywhere();
    let source = std::fs::read_to_string(p.app.join("application.py")).expect("app");
    p.write("application.py", &source.replace("return \"ok\\n\"", "return \"broken\\n\", 500"));
    p.commit_all("Break the health check", "Team");
    p.edit_config(|c| c.replace(r#"health_timeout = "15s""#, r#"health_timeout = "2s""#));
    p.cmd("deploy-staging")
        .args(["--version", "v3"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("v3 did not become healthy in staging within 2s: GET http://127.0.0.1"));
    let a = p.cmd("promote").args(["--version", "v3", "--force", "--reason", "test"]).assert().code(1);
    output(&a)
}

#[test]
fn behind_the_proxy_an_unhealthy_version_never_takes_traffic() {
    let p = Project::new();
    let (_, err) = unhealthy_v3(&p);
    assert!(err.contains("v3 did not become healthy in production and never served its users: v1 still does"), "{err}");
    // Neither environment stopped serving v1, and no downtime was spent.
    assert_eq!(p.served_version("staging").as_deref(), Some("v1"));
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM incidents"), 0);
    assert_eq!(p.query_strings("SELECT label FROM versions WHERE bad_at IS NOT NULL"), vec!["v3"]);
    assert_eq!(
        p.query_strings(
            "SELECT action || ':' || label || ':' || outcome FROM deployments WHERE env = 'production' ORDER BY id"
        ),
        vec!["promote:v1:healthy", "promote:v3:failed"]
    );
    // v3's processes are gone: nothing is left starting.
    assert!(!p.state.join("local/envs/production/starting.json").exists());
}

#[test]
fn without_the_proxy_promote_puts_the_previous_version_back_when_the_new_one_is_unhealthy() {
    let p = Project::new();
    p.edit_config(|c| c.replace("proxy = \"nginx\"", "proxy = \"none\""));
    p.commit_all("Stop-then-start deploys", "Team");
    let (_, err) = unhealthy_v3(&p);
    // Stop-then-start: staging is left running nothing of v3, production gets v1 back.
    assert_eq!(p.get("staging", "/health"), None);
    assert!(err.contains("v3 did not become healthy in production; v1 is back"), "{err}");
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
    assert_eq!(p.query_strings("SELECT label FROM versions WHERE bad_at IS NOT NULL"), vec!["v3"]);
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM incidents WHERE bad_label = 'v3' AND restored_label = 'v1'"), 1);
    assert_eq!(
        p.query_strings(
            "SELECT action || ':' || label || ':' || outcome FROM deployments WHERE env = 'production' ORDER BY id"
        ),
        vec!["promote:v1:healthy", "promote:v3:failed", "restore:v1:healthy"]
    );
}

#[test]
fn an_app_that_crashes_on_start_fails_fast_with_its_output() {
    let p = Project::new();
    p.write("Procfile", "web: python3 -c 'import sys; print(\"cannot bind: boom\"); sys.exit(3)'\n");
    p.commit_all("Crash on start", "Team");
    let started = std::time::Instant::now();
    p.cmd("deploy-staging")
        .args(["--version", "crashy"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("crashy exited during start-up in staging (exit status 3)"))
        .stderr(predicate::str::contains("cannot bind: boom"));
    assert!(started.elapsed().as_secs() < 10, "fails early, not at the 15s deadline");
    assert_eq!(p.query_strings("SELECT outcome FROM deployments"), vec!["failed"]);
}

#[test]
fn an_app_that_never_becomes_healthy_is_stopped_at_the_deadline() {
    let p = Project::new();
    std::fs::copy(p.app.join("Procfile"), p.app.join("Procfile.orig")).expect("copy");
    p.write("Procfile", "web: sleep 60\n");
    p.commit_all("Never listens", "Team");
    p.edit_config(|c| c.replace(r#"health_timeout = "15s""#, r#"health_timeout = "1s""#));
    p.cmd("deploy-staging")
        .args(["--version", "sleepy"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("sleepy did not become healthy in staging within 1s"))
        .stderr(predicate::str::contains("could not connect"));
    // Its process group was stopped and the environment recorded as running nothing.
    assert_eq!(p.env_pid("staging"), None);
    let leftovers: Vec<String> = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter(|e| std::fs::read_link(e.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(&p.state)))
        .filter(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()).is_some_and(process_running))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(leftovers.is_empty(), "processes of the stopped version still run: {leftovers:?}");
}

#[test]
fn a_held_lock_gets_exit_3_naming_the_holder_and_changes_nothing() {
    let p = Project::new();
    let lock_path = p.state.join("locks/staging.lock");
    std::fs::create_dir_all(lock_path.parent().expect("dir")).expect("mkdir");
    let file = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(&lock_path).expect("lock file");
    file.try_lock().expect("lock");
    std::fs::write(&lock_path, "pid 4242 (promote, jenkins:deploy#7) since 2026-11-23T10:00:00.000Z").expect("holder");
    // The holder is this test's process, whatever the file says: the kernel's lock table names
    // it, and the file's stale words are said as such.
    p.cmd("deploy-staging")
        .args(["--version", "v1"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains(format!("environment staging is locked by pid {} (", std::process::id())))
        .stderr(predicate::str::contains(
            "the lock file names no live holder; it still says: pid 4242 (promote, jenkins:deploy#7) since 2026-11-23T10:00:00.000Z",
        ));
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM deployments"), 0);
    assert!(!p.state.join("local/envs/staging").exists(), "nothing started");
    drop(file);
    p.cmd("deploy-staging").args(["--version", "v1"]).assert().success();
}

#[test]
fn rollback_without_a_known_good_version_cannot_act() {
    let p = Project::new();
    p.cmd("deploy-staging").args(["--version", "v1"]).assert().success();
    p.cmd("rollback")
        .args(["--env", "staging"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("no last known good version in staging to roll back to"))
        .stderr(predicate::str::contains(
            "hint: a version becomes known good when smoke-check --env staging --record passes",
        ));
    assert_eq!(p.served_version("staging").as_deref(), Some("v1"), "nothing was touched");
}

#[test]
fn a_redeploy_of_a_built_version_reuses_it_and_a_label_names_one_commit() {
    let p = Project::new();
    p.cmd("deploy-staging").args(["--version", "v1"]).assert().success();
    p.cmd("deploy-staging")
        .args(["--version", "v1"])
        .assert()
        .success()
        .stderr(predicate::str::contains("v1 is already built from this commit; reusing it"));
    p.commit_incident();
    // A known label without --commit is deployed from the commit the ledger knows for it.
    p.cmd("deploy-staging")
        .args(["--version", "v1"])
        .assert()
        .success()
        .stderr(predicate::str::contains("v1 is known: deploying its commit"));
    assert_eq!(p.served_version("staging").as_deref(), Some("v1"));
    // Naming another commit for it is refused: a label names one commit.
    p.cmd("deploy-staging")
        .args(["--version", "v1", "--commit", "HEAD"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("version v1 already exists for commit"));
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM versions"), 1);
}

#[test]
fn sigterm_during_a_deploy_exits_130_and_describes_what_is_left() {
    let p = Project::new();
    std::fs::copy(p.app.join("Procfile"), p.app.join("Procfile.orig")).expect("copy");
    p.write("Procfile", "web: sleep 60\n");
    p.commit_all("Never listens", "Team");
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("deploy-staging"));
    cmd.args(["--version", "slow"])
        .current_dir(&p.app)
        .env("PATH", crate::support::tools_path())
        .env("SAFEDEPLOY_STATE_DIR", &p.state);
    // Abort it as Jenkins would once it waits for the health check.
    let starting = p.state.join("local/envs/staging/starting.json");
    let (code, err) = crate::support::abort_when(cmd, || starting.exists());
    assert_eq!(code, Some(130), "{err}");
    assert!(
        err.contains(
            "interrupted while waiting for slow to become healthy in staging; slow is left starting, not serving"
        ),
        "{err}"
    );
    // The ledger tells the truth: the deployment is closed as failed, the version registered.
    assert_eq!(p.query_strings("SELECT outcome FROM deployments"), vec!["failed"]);
    p.assert_ledger_intact();
    let text = std::fs::read_to_string(&starting).expect("the start is recorded");
    let pid = serde_json::from_str::<serde_json::Value>(&text).expect("json")["pid"].as_i64().expect("pid") as i32;
    assert!(crate::support::group_alive(pid), "slow is left starting, as the message says");
    // The next deploy stops what was left, then converges.
    p.write("Procfile", &std::fs::read_to_string(p.app.join("Procfile.orig")).expect("procfile"));
    p.commit_all("Listen again", "Team");
    p.cmd("deploy-staging")
        .args(["--version", "v1"])
        .assert()
        .success()
        .stderr(predicate::str::contains("staging: stopping slow, left starting by a run that was stopped"));
    assert!(!crate::support::group_alive(pid));
    assert_eq!(p.served_version("staging").as_deref(), Some("v1"));
}

#[test]
fn promote_refuses_when_the_sla_budget_is_spent_unless_overridden_with_a_reason() {
    let p = Project::new();
    p.v2_failing_in_production();
    p.cmd("rollback").assert().success().stdout(predicate::str::contains("SLA budget (calendar year since "));
    // One incident spent more than a budget of 1ms.
    p.edit_config(|c| c.replace(r#"allowed_downtime = "15m""#, r#"allowed_downtime = "1ms""#));
    p.cmd("promote")
        .args(["--version", "v1"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("refusing to promote v1 to production: the SLA budget is spent"));
    let a = p
        .cmd("promote")
        .args(["--version", "v1", "--force", "--reason", "hotfix approved by on-call", "--json"])
        .assert()
        .success();
    let (out, _) = output(&a);
    let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(doc["budget"]["spent"], true);
    assert_eq!(doc["changed"], false, "v1 was already live: {doc}");
}

#[test]
fn the_budget_report_lists_the_periods_incidents_and_what_is_left() {
    let p = Project::new();
    // Before any ledger exists: nothing spent, and nothing created by asking.
    let a = p.cmd("promote").args(["--budget", "--json"]).assert().success();
    let doc: serde_json::Value = serde_json::from_str(&output(&a).0).expect("json");
    assert_eq!((doc["used_ms"].as_i64(), doc["left_ms"].as_i64()), (Some(0), Some(900_000)), "{doc}");
    assert!(!p.state.join("ledger.sqlite3").exists());

    p.v2_failing_in_production();
    p.cmd("rollback").args(["--reason", "smoke failed"]).assert().success();
    let a = p.cmd("rollback").args(["--budget", "--json"]).assert().success();
    let doc: serde_json::Value = serde_json::from_str(&output(&a).0).expect("json");
    let incidents = doc["incidents"].as_array().expect("incidents");
    assert_eq!(incidents.len(), 1, "{doc}");
    assert_eq!(incidents[0]["bad_label"], "v2");
    assert_eq!(incidents[0]["reason"], "smoke failed");
    let used = doc["used_ms"].as_i64().expect("used");
    assert_eq!(used, incidents[0]["downtime_ms"].as_i64().expect("downtime"));
    assert!(used > 0);
    assert_eq!(doc["left_ms"].as_i64(), Some(900_000 - used));
    assert_eq!(doc["period"], "calendar year");
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM incidents"), 1, "a report changes nothing");

    // A rolling window counts the same incident; the console shows it in plain words.
    p.edit_config(|c| c.replace(r#"allowed_downtime = "15m""#, "allowed_downtime = \"15m\"\nperiod = \"rolling 30d\""));
    p.cmd("promote")
        .arg("--budget")
        .assert()
        .success()
        .stdout(predicate::str::contains("SLA budget (rolling 30days since "))
        .stdout(predicate::str::contains("production: v2 → v1, downtime"))
        .stdout(predicate::str::contains("— smoke failed"));
    p.edit_config(|c| c.replace("rolling 30d", "fortnightly"));
    p.cmd("promote")
        .arg("--budget")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid period \"fortnightly\""));
}

/// What scripts start under a work dir is stopped by scripts/stop-work-dir (the product's own
/// stop, then a check): a stray process of the work dir fails it, named; and a version whose
/// state dir is removed under it ends by itself rather than holding its port for ever.
#[test]
fn a_work_dirs_environments_are_stopped_and_nothing_is_left_running() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/stop-work-dir");
    let safedeploy = assert_cmd::cargo::cargo_bin("safedeploy");
    let bin_dir = safedeploy.parent().expect("the binaries' dir");
    let p = Project::new();
    p.v1_everywhere();
    let work = p.app.parent().expect("tmp").to_path_buf();
    let (staging, production) = (p.env_pid("staging").expect("staging"), p.env_pid("production").expect("production"));
    let run = || {
        std::process::Command::new(&script)
            .arg(&work)
            .env("PATH", format!("{}:{}", bin_dir.display(), crate::support::tools_path()))
            .env("SAFEDEPLOY_CONFIG", p.config_path())
            .output()
            .expect("stop-work-dir")
    };
    let out = run();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        !crate::support::group_alive(staging) && !crate::support::group_alive(production),
        "both environments stopped"
    );
    assert!(p.nginx_pid("production").is_none(), "nginx stopped");
    // A stray process of the work dir: killed, named, and the script fails.
    let mut stray = std::process::Command::new("sleep").arg("300").current_dir(&work).spawn().expect("sleep");
    let out = run();
    let _ = stray.wait();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("pid {}", stray.id())),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The state dir removed under a running version: its supervisor ends its group.
    let q = Project::new();
    q.cmd("deploy-staging").args(["--version", "v1"]).assert().success();
    let pid = q.env_pid("staging").expect("staging");
    let nginx = q.nginx_pid("staging");
    std::fs::remove_dir_all(&q.state).expect("rm state");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while crate::support::group_alive(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!crate::support::group_alive(pid), "the version outlived its state dir");
    if let Some(n) = nginx {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(n), nix::sys::signal::Signal::SIGQUIT);
    }
}
