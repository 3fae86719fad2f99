//! promote checks the candidate at its own address before it takes any traffic, and the
//! exposure clock charges an incident from when the bad version took traffic.

use crate::support::{Project, output};

/// Requests production's nginx forwarded that the app answered with a 5xx.
fn server_errors_through_nginx(p: &Project) -> usize {
    let log = std::fs::read_to_string(p.state.join("local/envs/production/nginx/access.log")).unwrap_or_default();
    log.lines().filter(|l| l.contains("\" 5")).count()
}

#[test]
fn a_bad_candidate_is_stopped_before_traffic_and_never_serves_a_user() {
    let p = Project::new();
    p.v1_everywhere();
    p.commit_incident();
    p.cmd("deploy-staging").args(["--version", "v2"]).assert().success();
    // Forced past staging: the pre-traffic check still stops it.
    let a = p.cmd("promote").args(["--version", "v2", "--force", "--reason", "test", "--json"]).assert().code(1);
    let (out, err) = output(&a);
    assert!(err.contains("production: checking v2 on port "), "{err}");
    assert!(err.contains("before it takes traffic"), "{err}");
    assert!(
        err.contains(
            "v2 was stopped before it took traffic in production (v1 still serves and passes its checks; no downtime)"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "v2 failed its smoke checks before taking traffic in production: shorten and follow / shorten a URL"
        ),
        "{err}"
    );
    assert!(out.contains("\"exit_code\":1"), "{out}");
    // Users never met it: production serves v1, nginx forwarded no server error, no incident,
    // nothing charged to the budget; the verdict is recorded.
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
    assert_eq!(server_errors_through_nginx(&p), 0);
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM incidents"), 0);
    assert_eq!(p.query_strings("SELECT label FROM versions WHERE bad_at IS NOT NULL"), vec!["v2"]);
    assert_eq!(
        p.query_strings("SELECT label || ':' || passed || ':' || substr(detail, 1, 22) FROM verifications WHERE env = 'production' ORDER BY id"),
        vec!["v1:1:all checks passed", "v2:0:stopped before traffic"]
    );
    assert_eq!(
        p.query_strings(
            "SELECT action || ':' || label || ':' || outcome FROM deployments WHERE env = 'production' ORDER BY id"
        ),
        vec!["promote:v1:healthy", "promote:v2:failed"]
    );
    assert!(!p.state.join("local/envs/production/starting.json").exists(), "v2 is left starting");
    assert!(p.stray_processes().is_empty(), "{:?}", p.stray_processes());

    // A good candidate passes the same check and is promoted.
    p.cmd("smoke-check").args(["--env", "production", "--record"]).assert().success();
}

#[test]
fn skipping_the_check_needs_a_reason_and_the_incident_is_charged_from_when_users_met_the_bad_version() {
    let p = Project::new();
    p.v1_everywhere();
    p.commit_incident();
    p.cmd("deploy-staging").args(["--version", "v2"]).assert().success();
    p.cmd("promote").args(["--version", "v2", "--force", "--reason", "x", "--skip-pre-traffic", " "]).assert().code(2);
    let a = p
        .cmd("promote")
        .args(["--version", "v2", "--force", "--reason", "test", "--skip-pre-traffic", "hotfix, checked by hand"])
        .assert()
        .success();
    assert!(output(&a).1.contains("pre-traffic check skipped: hotfix, checked by hand"), "{}", output(&a).1);
    assert_eq!(
        p.query_strings("SELECT reason FROM deployments WHERE label = 'v2' AND env = 'production'"),
        vec!["test; pre-traffic check skipped: hotfix, checked by hand"]
    );
    p.cmd("smoke-check").args(["--env", "production", "--record"]).assert().code(1);
    let a = p.cmd("rollback").args(["--reason", "smoke failed", "--json"]).assert().success();
    let (out, err) = output(&a);
    assert!(err.contains("users exposed for "), "{err}");
    assert!(err.contains("from when v2 took traffic"), "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    let took = doc["took_traffic_at"].as_str().expect("took_traffic_at").to_string();
    assert!(took.as_str() < doc["detected_at"].as_str().unwrap_or_default(), "{doc:#}");
    assert!(doc["detected_at"].as_str() < doc["rollback_started_at"].as_str(), "{doc:#}");
    assert!(doc["rollback_started_at"].as_str() < doc["restored_at"].as_str(), "{doc:#}");
    // The ledger's charge: served again minus took traffic, exactly.
    let (charged, took_ms, restored) = (
        p.query_i64("SELECT downtime_ms FROM incidents"),
        p.query_i64("SELECT took_traffic_at FROM incidents"),
        p.query_i64("SELECT restored_at FROM incidents"),
    );
    assert_eq!(charged, restored - took_ms);
    assert_eq!(p.query_i64("SELECT charged_from FROM incidents"), took_ms);
    assert_eq!(
        p.query_i64("SELECT took_traffic_at FROM incidents"),
        p.query_i64("SELECT switched_at FROM deployments WHERE label = 'v2' AND env = 'production'")
    );
    assert_eq!(doc["downtime_ms"].as_i64(), Some(charged));
}

#[test]
fn the_previous_version_stays_warm_so_a_rollback_is_a_switch_and_it_ends_itself_after_the_window() {
    let p = Project::new();
    p.edit_config(|c| c.replace("stop_grace = \"3s\"", "stop_grace = \"3s\"\nkeep_previous = \"1h\""));
    p.v1_everywhere();
    p.commit_incident();
    p.cmd("deploy-staging").args(["--version", "v2"]).assert().success();
    let a = p
        .cmd("promote")
        .args(["--version", "v2", "--force", "--reason", "t", "--skip-pre-traffic", "test"])
        .assert()
        .success();
    assert!(output(&a).1.contains("production: v1 keeps running without traffic until"), "{}", output(&a).1);
    let warm = p.warm_pid("production").expect("v1 kept warm");
    assert!(crate::support::group_alive(warm));
    let a = p.cmd("safedeploy").args(["status", "--env", "production", "--json"]).assert().success();
    let doc: serde_json::Value = serde_json::from_str(&output(&a).0).expect("json");
    assert_eq!(doc["environments"][0]["warm_previous"], "v1", "{doc:#}");
    // The rollback switches nginx back to the running v1: no start, v2 stopped, nothing warm.
    p.cmd("smoke-check").args(["--env", "production", "--record"]).assert().code(1);
    let a = p.cmd("rollback").args(["--reason", "bad", "--json"]).assert().success();
    let (out, err) = output(&a);
    assert!(err.contains("production: switching back to v1, kept warm on port"), "{err}");
    assert!(!err.contains("starting v1"), "{err}");
    assert_eq!(p.env_pid("production"), Some(warm), "v1's very processes serve again");
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
    assert_eq!(p.warm_pid("production"), None, "the bad version is not kept warm");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!((doc["bad_version"].as_str(), doc["restored_version"].as_str()), (Some("v2"), Some("v1")), "{doc:#}");
    assert!(p.stray_processes().is_empty(), "{:?}", p.stray_processes());

    // A warm previous ends itself when its window passes, with no safedeploy run.
    p.edit_config(|c| c.replace("keep_previous = \"1h\"", "keep_previous = \"1s\""));
    p.cmd("promote")
        .args(["--version", "v2", "--force", "--reason", "t", "--skip-pre-traffic", "test"])
        .assert()
        .success();
    let warm = p.warm_pid("production").expect("v1 kept warm");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while crate::support::group_alive(warm) && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!crate::support::group_alive(warm), "the warm previous outlived its window");
    let a = p.cmd("safedeploy").args(["status", "--env", "production"]).assert().success();
    assert!(output(&a).0.contains("warm previous: none"), "{}", output(&a).0);
}

#[test]
fn a_blip_in_the_first_round_before_traffic_is_tried_again_not_a_verdict() {
    let p = Project::new();
    p.v1_everywhere();
    // v1b answers its first shorten request with a 503 (a process just up: the request is sent
    // again), its second with a 500 (the round is run again), then works.
    let app = std::fs::read_to_string(p.app.join("application.py")).expect("app");
    let once = |name: &str, status: u16| {
        format!(
            "    flag = os.path.join(os.environ.get(\"SAFEDEPLOY_DATA_DIR\", \".\"), \"{name}\")\n    if not os.path.exists(flag):\n        open(flag, \"w\").close()\n        return \"warming up\", {status}\n"
        )
    };
    let blip = format!("def shorten():\n{}{}", once("blipped", 503), once("failed-once", 500));
    p.write("application.py", &app.replacen("def shorten():\n", &blip, 1));
    p.commit_all("A version with a slow first request", "Team");
    p.cmd("deploy-staging").args(["--version", "v1b"]).assert().success();
    for f in ["blipped", "failed-once"] {
        std::fs::remove_file(p.state.join("local/envs/production/data").join(f)).ok();
    }
    let a = p.cmd("promote").args(["-v", "--version", "v1b", "--force", "--reason", "test"]).assert().success();
    let err = output(&a).1;
    assert!(err.contains("/shorten: a transient answer; sending it again (try 2)"), "{err}");
    assert!(err.contains("failed a check; trying the round once more"), "{err}");
    assert_eq!(p.served_version("production").as_deref(), Some("v1b"));
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM versions WHERE bad_at IS NOT NULL"), 0, "a blip marked it bad");
}

#[test]
fn the_exposure_clock_reads_the_monitors_own_timestamp_and_charges_from_the_switch() {
    let p = Project::new();
    p.v1_everywhere();
    p.commit_incident();
    p.cmd("deploy-staging").args(["--version", "v2"]).assert().success();
    p.cmd("promote")
        .args(["--version", "v2", "--force", "--reason", "t", "--skip-pre-traffic", "test"])
        .assert()
        .success();
    let switched = p.query_i64("SELECT switched_at FROM deployments WHERE label = 'v2' AND env = 'production'");
    // The monitor evaluated 250 ms after the switch; its notification says so in `date`, and
    // the webhook reaches Jenkins later. Its own timestamp is the verdict, not the call's.
    let alerted = switched + 250;
    // The monitor's time has passed before its webhook arrives.
    while safedeploy::clock::now_ms() <= alerted {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let payload = p.app.join("alert.json");
    std::fs::write(
        &payload,
        format!(
            r#"{{"alert_id": "77", "transition": "Triggered", "title": "5xx on /shorten", "date": "{alerted}",
                "tags": "service:url-shortener,env:production"}}"#
        ),
    )
    .expect("payload");
    let a = p.cmd("rollback").arg("--datadog-payload").arg(&payload).arg("--json").assert().success();
    let doc: serde_json::Value = serde_json::from_str(&output(&a).0).expect("json");
    assert_eq!(p.query_i64("SELECT detected_at FROM incidents"), alerted);
    assert_eq!(p.query_i64("SELECT took_traffic_at FROM incidents"), switched);
    assert_eq!(p.query_i64("SELECT charged_from FROM incidents"), switched);
    let restored = p.query_i64("SELECT restored_at FROM incidents");
    assert!(p.query_i64("SELECT rollback_started_at FROM incidents") > alerted);
    assert_eq!(p.query_i64("SELECT downtime_ms FROM incidents"), restored - switched);
    assert_eq!(doc["downtime_ms"].as_i64(), Some(restored - switched));
    assert_eq!(doc["detected_at"].as_str(), Some(safedeploy::clock::rfc3339(alerted).as_str()));
}

/// A Jenkins abort (SIGTERM) while the candidate is being checked before traffic: the round
/// ends without a verdict, the candidate never takes traffic and is stopped, exit 130.
#[test]
fn sigterm_during_the_check_before_traffic_ends_it_and_the_candidate_never_takes_traffic() {
    let p = Project::new();
    p.v1_everywhere();
    // v2's home page says when the check arrives, then answers slowly.
    let app = std::fs::read_to_string(p.app.join("application.py")).expect("app");
    let app = app.replace(
        "def index():\n    return PAGE",
        "def index():\n    import time\n    open(os.path.join(os.environ.get(\"SAFEDEPLOY_DATA_DIR\", \".\"), \"check-arrived\"), \"w\").close()\n    time.sleep(1.5)\n    return PAGE",
    );
    assert!(app.contains("check-arrived"), "the home route changed; update this test");
    p.write("application.py", &app);
    p.commit_all("A slow home page", "Team");
    p.cmd("deploy-staging").args(["--version", "v2"]).assert().success();
    // The candidate is checked on a copy of production's data dir (`check-data-*`), so the
    // marker lands there, never in the data users are served from.
    let env_dir = p.state.join("local/envs/production");
    let arrived = std::cell::Cell::new(false);
    let in_a_copy = || {
        let found = std::fs::read_dir(&env_dir).into_iter().flatten().flatten().any(|e| {
            e.file_name().to_string_lossy().starts_with("check-data-") && e.path().join("check-arrived").exists()
        });
        arrived.set(arrived.get() || found);
        found
    };
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("promote"));
    cmd.args(["--version", "v2", "--force", "--reason", "abort test"])
        .current_dir(&p.app)
        .env("PATH", crate::support::tools_path())
        .env("SAFEDEPLOY_STATE_DIR", &p.state);
    let (code, err) = crate::support::abort_when(cmd, in_a_copy);
    assert!(arrived.get(), "the check reached v2 before the abort");
    assert!(!env_dir.join("data/check-arrived").exists(), "the check wrote nothing to the users' data");
    assert_eq!(code, Some(130), "{err}");
    assert!(err.contains("checking v2 on port"), "{err}");
    assert!(err.contains("not switched to"), "the message says what was left: {err}");
    assert!(!err.contains("v2 is live"), "{err}");
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
    assert_eq!(
        p.query_i64(
            "SELECT COUNT(*) FROM deployments WHERE env = 'production' AND outcome = 'healthy' AND label = 'v2'"
        ),
        0
    );
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM versions WHERE bad_at IS NOT NULL"), 0, "no verdict on v2");
    assert!(p.stray_processes().is_empty(), "v2 is stopped: {:?}", p.stray_processes());
}

/// A check on the version header nginx adds passes through nginx in staging; before traffic
/// (the candidate's own port, no nginx) its answers are judged as users get them, header
/// included, so the check means the same at every layer and no good version is condemned.
#[test]
fn a_check_on_the_proxys_version_header_means_the_same_before_traffic() {
    let p = Project::new();
    p.edit_config(|c| {
        c.replace(
            "header_matches = { content-type = \"^text/html\" }\n",
            "header_matches = { content-type = \"^text/html\" }\nheader_equals = { x-safedeploy-version = \"{{version}}\" }\n",
        )
    });
    assert!(std::fs::read_to_string(p.config_path()).expect("config").contains("x-safedeploy-version"));
    p.commit_all("Check the version header", "Team");
    p.v1_everywhere();
    // A good v2: staging through nginx, then production, checked first at its own port.
    p.write("README.extra", "v2\n");
    p.commit_all("A harmless change", "Team");
    p.cmd("deploy-staging").args(["--version", "v2"]).assert().success();
    p.cmd("smoke-check").args(["--env", "staging", "--record"]).assert().success();
    let a = p.cmd("promote").args(["--version", "v2"]).assert();
    let (_, err) = output(&a);
    assert_eq!(a.get_output().status.code(), Some(0), "{err}");
    assert!(err.contains("checking v2 on port"), "{err}");
    assert_eq!(p.served_version("production").as_deref(), Some("v2"));
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM versions WHERE bad_at IS NOT NULL"), 0, "nothing is condemned");
}

/// The app is not told where its retirement is decided, and a warm version whose retirement
/// was called off by someone else (its retire file removed) is no target to switch back to
/// once its window has passed: the next run stops it and starts the version afresh.
#[test]
fn a_warm_version_cannot_postpone_its_retirement() {
    let p = Project::new();
    // A window long enough to look at the warm copy on a loaded machine before it ends.
    p.edit_config(|c| c.replace("stop_grace = \"3s\"", "stop_grace = \"1s\"\nkeep_previous = \"6s\""));
    p.v2_forced_into_production();
    let warm = p.warm_pid("production").expect("v1 kept warm");
    // Its processes, the supervisor aside, never see the retire file's path.
    let members: Vec<i32> = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter(|pid| {
            *pid != warm
                && nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(*pid))).ok()
                    == Some(nix::unistd::Pid::from_raw(warm))
        })
        .collect();
    assert!(!members.is_empty(), "the warm group has the app's processes");
    for pid in &members {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&environ).contains("SAFEDEPLOY_RETIRE_FILE="), "pid {pid} was told");
    }
    // Someone calls its retirement off.
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.state.join("local/envs/production/warm.json")).expect("warm"))
            .expect("json");
    let retire = format!("{}.retire-at", record["state"]["dir"].as_str().expect("dir"));
    std::fs::remove_file(&retire).expect("rm retire file");
    // Past its window and grace: the next run does not switch back to it; it stops it.
    let until = record["until"].as_i64().expect("until") + 1000 + 1000;
    while safedeploy::clock::now_ms() < until {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(crate::support::group_alive(warm), "it outlived its window, as the removed file let it");
    let a = p.cmd("rollback").args(["--to", "v1", "--reason", "test"]).assert().success();
    let err = output(&a).1;
    assert!(err.contains("still runs; stopping it"), "{err}");
    assert!(!err.contains("switching back to v1"), "{err}");
    assert!(!crate::support::group_alive(warm), "the overdue warm copy is stopped");
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
    assert!(p.stray_processes().is_empty(), "{:?}", p.stray_processes());
}

/// A warm copy that hangs is not waited on before users are served: the version starts afresh,
/// nginx is switched to it, and only then is the hung copy stopped.
#[test]
fn a_hung_warm_copy_is_replaced_first_and_stopped_after_the_switch() {
    let p = Project::new();
    p.edit_config(|c| c.replace("stop_grace = \"3s\"", "stop_grace = \"2s\"\nkeep_previous = \"1h\""));
    p.v2_failing_in_production();
    let warm = p.warm_pid("production").expect("v1 kept warm");
    // The warm copy hangs: every process of its group but the supervisor is stopped.
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let pid = nix::unistd::Pid::from_raw(pid);
        if pid.as_raw() != warm && nix::unistd::getpgid(Some(pid)).ok() == Some(nix::unistd::Pid::from_raw(warm)) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP);
        }
    }
    let a = p.cmd("rollback").args(["--reason", "bad"]).assert().success();
    let err = output(&a).1;
    assert!(err.contains("v1, kept warm, does not answer on port"), "{err}");
    assert!(err.contains("starting it afresh (the copy is stopped after the switch)"), "{err}");
    let switched = err.find("now sends users to v1").expect("the switch is said");
    let stopped = err.rfind("it was killed").expect("the hung copy's stop is said");
    assert!(switched < stopped, "users were switched before the hung copy was stopped:\n{err}");
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
    assert!(!crate::support::group_alive(warm), "the hung copy is stopped");
    assert!(p.stray_processes().is_empty(), "{:?}", p.stray_processes());
}

/// The team's own suite runs against the candidate's own address before it takes traffic; its
/// failing case stops the candidate there, named, and no user meets it.
#[test]
fn the_teams_suite_runs_before_traffic_and_its_failure_stops_the_candidate() {
    let p = Project::new();
    p.v1_everywhere();
    p.edit_config(|c| {
        c + "\n[[smoke.suites]]\nname = \"e2e\"\ncommand = [\"sh\", \"-c\", \"mkdir -p reports && echo \\\"$SAFEDEPLOY_TARGET_URL\\\" > reports/target && if [ \\\"$SAFEDEPLOY_VERSION\\\" = v2 ]; then printf '<testsuite><testcase classname=\\\"e2e\\\" name=\\\"export\\\"><failure message=\\\"CSV export answered 500\\\"/></testcase></testsuite>' > reports/e2e.xml; exit 1; else printf '<testsuite><testcase classname=\\\"e2e\\\" name=\\\"export\\\"/></testsuite>' > reports/e2e.xml; fi\"]\njunit = \"reports/e2e.xml\"\nphases = [\"pre_traffic\"]\n"
    });
    p.write("NOTES.md", "v2\n");
    p.commit_all("v2", "Dev");
    p.cmd("deploy-staging").args(["--version", "v2"]).assert().success();
    p.cmd("smoke-check").args(["--env", "staging", "--record"]).assert().success();
    let a = p.cmd("promote").args(["--version", "v2"]).assert().code(1);
    let err = output(&a).1;
    assert!(err.contains("suite / e2e: 1 of 1 case(s) failed against v2"), "{err}");
    assert!(err.contains("e2e.export: CSV export answered 500"), "{err}");
    let target = std::fs::read_to_string(p.app.join("reports/target")).expect("the suite ran");
    assert!(
        target.trim().starts_with("http://127.0.0.1:") && !target.contains(&p.production_port.to_string()),
        "the candidate's own address: {target}"
    );
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
    assert_eq!(server_errors_through_nginx(&p), 0);
    assert_eq!(p.query_strings("SELECT label FROM versions WHERE bad_at IS NOT NULL"), vec!["v2"]);
}
