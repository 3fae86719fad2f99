//! promote --canary: a share of the requests goes to the candidate while its checks run each
//! round; a failed round takes the share to 0 at once, a passed bake takes it to 100 %.

use crate::support::{Project, Transcript, output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// v2 of the example: the app with `edit` applied, committed, deployed to staging and verified.
fn v2_in_staging(p: &Project, edit: impl FnOnce(String) -> String) {
    let text = std::fs::read_to_string(p.app.join("application.py")).expect("app");
    let changed = edit(text.clone());
    assert_ne!(changed, text, "the edit changed nothing");
    p.write("application.py", &changed);
    p.commit_all("v2", "Dev");
    p.cmd("deploy-staging").args(["--version", "v2"]).assert().success();
    p.cmd("smoke-check").args(["--env", "staging", "--record"]).assert().success();
}

/// Adds a route to the app (before its health route).
fn with_route(route: &str) -> impl FnOnce(String) -> String + '_ {
    move |text| text.replace("@app.get(\"/health\")", &format!("{route}\n\n@app.get(\"/health\")"))
}

/// What users saw through production's nginx while a promote ran: the version header of each
/// answer, and every answer that was not 2xx/4xx.
#[derive(Default, Debug)]
struct Seen {
    versions: std::collections::BTreeMap<String, u64>,
    failures: Vec<String>,
}

/// Users on `path` until `stop` (bounded: two minutes).
fn users(base: String, path: &'static str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Seen> {
    std::thread::spawn(move || {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
        let mut seen = Seen::default();
        let until = Instant::now() + Duration::from_secs(120);
        while !stop.load(Ordering::SeqCst) && Instant::now() < until {
            match client.get(format!("{base}{path}")).send() {
                Ok(r) => {
                    let v = r.headers().get("x-safedeploy-version").and_then(|v| v.to_str().ok()).unwrap_or("?");
                    *seen.versions.entry(v.to_string()).or_default() += 1;
                    if r.status().is_server_error() {
                        seen.failures.push(format!("{v}: {}", r.status()));
                    }
                }
                Err(e) => seen.failures.push(e.to_string()),
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        seen
    })
}

/// promote itself (not through a shell, so a signal reaches it), as the project's tools run.
fn promote(p: &Project, args: &str) -> std::process::Command {
    let mut c = p.sh_step("exec promote \"$@\"");
    c.arg("promote").args(args.split_whitespace());
    c
}

/// A promote started in the background.
fn promote_in_background(p: &Project, args: &str) -> std::process::Child {
    promote(p, args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn promote")
}

/// Waits (bounded) until `cond` holds.
fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn canary_file(p: &Project) -> std::path::PathBuf {
    p.state.join("local/envs/production/canary.json")
}

fn nginx_conf(p: &Project) -> String {
    std::fs::read_to_string(p.state.join("local/envs/production/nginx/nginx.conf")).expect("nginx.conf")
}

/// The incident's charge is its span times the canary's share, and took traffic is the
/// deployment's own switch.
fn assert_charged_by_share(p: &Project, percent: i64) {
    let (took, restored, charged) = (
        p.query_i64("SELECT took_traffic_at FROM incidents"),
        p.query_i64("SELECT restored_at FROM incidents"),
        p.query_i64("SELECT downtime_ms FROM incidents"),
    );
    assert_eq!(p.query_i64("SELECT share_percent FROM incidents"), percent);
    assert_eq!(charged, (restored - took) * percent / 100);
    assert!(restored > took);
    assert_eq!(took, p.query_i64("SELECT switched_at FROM deployments WHERE env = 'production' AND label = 'v2'"));
    assert_eq!(p.query_strings("SELECT restored_label FROM incidents"), vec!["v1"]);
}

/// After an abort: v1 alone serves, v2 is stopped, nothing of the canary is left.
fn assert_back_on_v1(p: &Project) {
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
    let conf = nginx_conf(p);
    assert_eq!(conf.matches("server 127.0.0.1:").count(), 1, "{conf}");
    assert!(!canary_file(p).exists());
    assert!(!p.state.join("local/envs/production/starting.json").exists());
    assert!(p.stray_processes().is_empty(), "{:?}", p.stray_processes());
}

#[test]
fn a_canary_that_passes_its_bake_takes_every_request_and_users_saw_both_versions() {
    let p = Project::new();
    p.v1_everywhere();
    v2_in_staging(&p, with_route("@app.get(\"/about\")\ndef about():\n    return \"about\\n\""));
    let stop = Arc::new(AtomicBool::new(false));
    let load = users(p.url("production"), "/", stop.clone());
    let a = p.cmd("promote").args(["--canary", "50", "--bake", "2s", "--json"]).assert().success();
    stop.store(true, Ordering::SeqCst);
    let seen = load.join().expect("load");
    let (out, err) = output(&a);
    assert!(err.contains("canary: v2 takes 50% of the requests, v1 the rest"), "{err}");
    assert!(err.contains("canary round 1 passed"), "{err}");
    assert!(err.contains("v2 passed its canary (50% for "), "{err}");
    // Two seconds of one user are too few requests to rule out a 1-point lift: said.
    assert!(err.contains("so this canary cannot rule one out (candidate 0/"), "{err}");
    assert!(out.contains("\"changed\":true"), "{out}");
    // Users met both versions during the promote, and no request failed.
    assert!(seen.failures.is_empty(), "{seen:?}");
    assert!(seen.versions.get("v1").copied().unwrap_or(0) > 0, "{seen:?}");
    assert!(seen.versions.get("v2").copied().unwrap_or(0) > 0, "{seen:?}");
    assert_eq!(p.served_version("production").as_deref(), Some("v2"));
    // Took traffic at the canary's start: at least the bake before the deployment ended.
    let (switched, finished) = (
        p.query_i64("SELECT switched_at FROM deployments WHERE env = 'production' AND label = 'v2'"),
        p.query_i64("SELECT finished_at FROM deployments WHERE env = 'production' AND label = 'v2'"),
    );
    assert!(finished - switched >= 2000, "{switched} {finished}");
    assert_eq!(nginx_conf(&p).matches("server 127.0.0.1:").count(), 1);
    assert!(!canary_file(&p).exists());
    assert!(p.warm_pid("production").is_some(), "v1 is kept warm after a canary too");
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM incidents"), 0);
}

#[test]
fn a_canary_failing_its_checks_mid_bake_is_sent_no_more_requests_at_once() {
    let p = Project::new();
    p.v1_everywhere();
    // v2 breaks the journey once told to (a file in its data dir): it passes the check before
    // traffic and the first canary rounds, then fails.
    v2_in_staging(&p, |t| {
        t.replace(
            "    data = request.get_json(silent=True) or request.form\n",
            "    if os.path.exists(os.path.join(os.environ.get(\"SAFEDEPLOY_DATA_DIR\", \".\"), \"break-v2\")):\n        return \"broken\\n\", 500\n    data = request.get_json(silent=True) or request.form\n",
        )
    });
    let child = promote_in_background(&p, "--canary 20 --bake 60s");
    wait_for("the canary", || canary_file(&p).exists());
    std::fs::write(p.state.join("local/envs/production/data/break-v2"), "").expect("marker");
    let out = child.wait_with_output().expect("promote");
    let (stdout, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("v2 failed a canary round in production: shorten and follow / shorten a URL"), "{err}");
    assert!(stdout.contains("canary of v2 aborted; v1 serves every request again, "), "{stdout}");
    let said = format!("{stdout}{err}");
    assert_eq!(said.matches("aborted").count(), 1, "the abort is said once: {said}");
    assert!(
        err.contains("v2 failed its canary in production at 20% and was stopped; v1 serves every request"),
        "{err}"
    );
    assert_eq!(err.matches("failed a canary round in production: shorten").count(), 1, "said once: {err}");
    assert!(stdout.contains("20% of the users met v2 for "), "{stdout}");
    assert!(stdout.contains("charged to the SLA budget"), "{stdout}");
    let mut t = Transcript::default();
    t.verdict(&p, "promote --canary 20 --bake 60s (v2 breaks mid-bake)", &out);
    insta::assert_snapshot!("a_canary_failing_its_checks_mid_bake", t.text());
    assert_back_on_v1(&p);
    assert_eq!(p.query_strings("SELECT label FROM versions WHERE bad_at IS NOT NULL"), vec!["v2"]);
    assert_charged_by_share(&p, 20);
    assert_eq!(
        p.query_strings("SELECT substr(detail, 1, 14) FROM verifications WHERE env = 'production' AND label = 'v2'"),
        vec!["canary at 20%:"]
    );
    // Nothing is left to roll back: v1 is the last known good and serves.
    let a = p.cmd("rollback").assert().success();
    assert!(output(&a).0.contains("nothing to roll back"), "{}", output(&a).0);
}

#[test]
fn a_canary_answering_users_with_server_errors_is_aborted_though_its_checks_pass() {
    let p = Project::new();
    p.v1_everywhere();
    // A route the smoke chains never visit; v1 answers it 404, v2 500.
    v2_in_staging(&p, with_route("@app.get(\"/report\")\ndef report():\n    return \"no\\n\", 500"));
    let stop = Arc::new(AtomicBool::new(false));
    let load = users(p.url("production"), "/report", stop.clone());
    let child = promote_in_background(&p, "--canary 50 --bake 60s");
    let out = child.wait_with_output().expect("promote");
    stop.store(true, Ordering::SeqCst);
    let seen = load.join().expect("load");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("answered users with server errors in two rounds running"), "{err}");
    assert!(err.contains("failed on users' requests"), "{err}");
    assert!(err.contains("against 0.0% for v1"), "{err}");
    assert!(err.contains("GET") || err.contains("\"500\""), "{err}");
    assert_back_on_v1(&p);
    assert_charged_by_share(&p, 50);
    // Users who met v2 saw its 500s; after the abort, only v1 answers.
    assert!(seen.failures.iter().all(|f| f.starts_with("v2: 500")), "{seen:?}");
    assert!(!seen.failures.is_empty(), "{seen:?}");
}

/// The hostile case: at a 10 % share and ordinary traffic, a version failing a third of its
/// users on a route no check visits never fails one round (3 errors in a second), yet the
/// rounds' counts together convict it.
#[test]
fn a_canary_failing_a_third_of_its_users_at_a_small_share_is_caught_on_the_rounds_together() {
    let p = Project::new();
    p.v1_everywhere();
    v2_in_staging(&p, with_route("@app.get(\"/report\")\ndef report():\n    return \"no\\n\", 500"));
    let stop = Arc::new(AtomicBool::new(false));
    // Ordinary traffic: a user every 60 ms on the home page, the report and the health route.
    let base = p.url("production");
    let load = crate::support::users_on(base, &["/", "/report", "/health"], Duration::from_millis(60), stop.clone());
    let child = promote_in_background(&p, "--canary 10 --bake 90s");
    let out = child.wait_with_output().expect("promote");
    stop.store(true, Ordering::SeqCst);
    let sent = load.join().expect("load");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("two rounds running"), "no single round had the errors to show it: {err}");
    assert!(
        err.contains("v2 answers users with server errors more often than v1 by over 1 point(s): candidate "),
        "{err}"
    );
    assert!(err.contains("left out as a possible blip"), "{err}");
    assert!(sent > 0);
    assert_back_on_v1(&p);
    assert_charged_by_share(&p, 10);
    assert_eq!(p.query_strings("SELECT label FROM versions WHERE bad_at IS NOT NULL"), vec!["v2"]);
}

/// A candidate that answers every user 300 ms later than the stable version fails its canary
/// on the users' response times (ranked, past the margin), though its checks pass.
#[test]
fn a_canary_much_slower_than_the_stable_version_is_aborted_on_its_users_response_times() {
    let p = Project::new();
    p.v1_everywhere();
    v2_in_staging(
        &p,
        with_route(
            "@app.before_request\ndef slow_for_users():\n    import time\n    from flask import request\n    if request.path == \"/\":\n        time.sleep(0.3)",
        ),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..4).map(|_| users(p.url("production"), "/", stop.clone())).collect();
    let child = promote_in_background(&p, "--canary 30 --bake 60s");
    let out = child.wait_with_output().expect("promote");
    stop.store(true, Ordering::SeqCst);
    for l in load {
        l.join().expect("load");
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("v2 answers users more slowly than v1 by over 100 ms: candidate p50 "), "{err}");
    assert!(err.contains("a candidate request is slower 100% of the time"), "{err}");
    assert_back_on_v1(&p);
    assert_eq!(p.query_strings("SELECT label FROM versions WHERE bad_at IS NOT NULL"), vec!["v2"]);
}

/// A bake that ends on too few user requests follows `deploy.canary_not_enough`: `extend`
/// bakes on to `canary_max_bake`, then is inconclusive (exit 4: v2 stopped, not marked bad, the
/// ledger saying why); `fail` is a
/// verdict naming the missing evidence.
#[test]
fn a_canary_without_enough_user_requests_follows_its_policy() {
    let p = Project::new();
    p.v1_everywhere();
    v2_in_staging(&p, with_route("@app.get(\"/about\")\ndef about():\n    return \"about\\n\""));
    p.edit_config(|c| c.replace("[deploy]\n", "[deploy]\ncanary_not_enough = \"extend\"\ncanary_max_bake = \"3s\"\n"));
    let a = p.cmd("promote").args(["--canary", "20", "--bake", "1s"]).assert().code(4);
    let err = output(&a).1;
    assert!(err.contains("canary bake extended: 0 of about "), "{err}");
    let why =
        p.query_strings("SELECT source || ': ' || detail FROM inconclusive WHERE env = 'production' AND label = 'v2'");
    assert_eq!(why.len(), 1, "{why:?}");
    assert!(why[0].starts_with("canary: ") && why[0].contains("not enough evidence to judge v2"), "{why:?}");
    assert!(
        err.contains("not enough evidence to judge v2 after 3.0s (deploy.canary_max_bake): 0 user request(s)"),
        "{err}"
    );
    assert!(err.contains("v1 serves every request again and v2 was stopped, not marked bad"), "{err}");
    assert_back_on_v1(&p);
    assert!(p.query_strings("SELECT label FROM versions WHERE bad_at IS NOT NULL").is_empty());

    p.edit_config(|c| c.replace("canary_not_enough = \"extend\"", "canary_not_enough = \"fail\""));
    let a = p.cmd("promote").args(["--canary", "20", "--bake", "1s"]).assert().code(1);
    let err = output(&a).1;
    assert!(err.contains("not enough evidence: v2 answered 0 user request(s) in its bake"), "{err}");
    assert!(err.contains("(deploy.canary_not_enough = \"fail\")"), "{err}");
    assert_back_on_v1(&p);
    assert_eq!(p.query_strings("SELECT label FROM versions WHERE bad_at IS NOT NULL"), vec!["v2"]);

    // A policy that is none of the three is exit 2 at load.
    p.edit_config(|c| c.replace("canary_not_enough = \"fail\"", "canary_not_enough = \"maybe\""));
    p.cmd("promote").args(["--canary", "20", "--bake", "1s"]).assert().code(2);
}

#[test]
fn a_canary_interrupted_or_killed_leaves_the_stable_version_serving_everyone() {
    let p = Project::new();
    p.v1_everywhere();
    v2_in_staging(&p, with_route("@app.get(\"/about\")\ndef about():\n    return \"about\\n\""));
    // A Jenkins abort (SIGTERM): the canary ends, v2 is stopped, not marked bad.
    let (code, err) = crate::support::abort_when(promote(&p, "--canary 30 --bake 60s"), || canary_file(&p).exists());
    assert_eq!(code, Some(130), "{err}");
    assert!(err.contains("interrupted during the canary of v2 in production; v1 serves every request again"), "{err}");
    assert_back_on_v1(&p);
    assert!(p.query_strings("SELECT label FROM versions WHERE bad_at IS NOT NULL").is_empty());
    // Killed outright: the next run in the environment sends every request back to v1 first.
    let mut child = promote_in_background(&p, "--canary 30 --bake 60s");
    wait_for("the canary", || canary_file(&p).exists() && nginx_conf(&p).contains("weight=30"));
    child.kill().expect("kill -9");
    child.wait().expect("wait");
    // status says what the killed run left: a share of the users still on the candidate.
    let a = p.cmd("safedeploy").args(["status", "--env", "production"]).assert().success();
    let out = output(&a).0;
    assert!(
        out.contains("UNFINISHED: a run was stopped during the canary of v2: 30% of the requests still go to v2; the next promote or rollback sends every request to v1 first"),
        "{out}"
    );
    let a = p.cmd("rollback").assert().success();
    assert!(output(&a).1.contains("a run was stopped during the canary of v2; sending every request to v1 again"));
    assert_back_on_v1(&p);
    let a = p.cmd("safedeploy").args(["status", "--env", "production"]).assert().success();
    assert!(!output(&a).0.contains("UNFINISHED"), "{}", output(&a).0);
}

#[test]
fn canary_flags_are_checked_before_anything_changes() {
    let p = Project::new();
    p.v1_everywhere();
    v2_in_staging(&p, with_route("@app.get(\"/about\")\ndef about():\n    return \"about\\n\""));
    for args in [
        vec!["--canary", "0"],
        vec!["--canary", "100"],
        vec!["--canary", "-5"],
        vec!["--canary", "ten"],
        vec!["--canary", ""],
        vec!["--bake", "10s"],
        vec!["--canary", "10", "--bake", "0s"],
        vec!["--canary", "10", "--bake", "soon"],
    ] {
        let a = p.cmd("promote").args(&args).assert().code(2);
        assert!(!output(&a).1.trim().is_empty(), "{args:?}");
    }
    p.edit_config(|c| c.replace("proxy = \"nginx\"", "proxy = \"none\""));
    let a = p.cmd("promote").args(["--canary", "10", "--bake", "2s"]).assert().code(2);
    assert!(output(&a).1.contains("deploy.proxy = \"none\""), "{}", output(&a).1);
    p.edit_config(|c| c.replace("proxy = \"none\"", "proxy = \"nginx\""));
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM deployments WHERE label = 'v2' AND env = 'production'"), 0);
}

#[test]
fn a_canary_dry_run_prints_the_split_and_changes_nothing() {
    let p = Project::new();
    p.v1_everywhere();
    v2_in_staging(&p, with_route("@app.get(\"/about\")\ndef about():\n    return \"about\\n\""));
    let conf = nginx_conf(&p);
    let deployments = p.query_i64("SELECT COUNT(*) FROM deployments");
    let a = p.cmd("promote").args(["--canary", "20", "--bake", "1m", "--dry-run"]).assert().success();
    let out = output(&a).0;
    assert!(
        out.contains("# would send 20% of the requests to v2 for 1m (the rest to v1), checking it every 1s"),
        "{out}"
    );
    assert_eq!(nginx_conf(&p), conf);
    assert_eq!(p.query_i64("SELECT COUNT(*) FROM deployments"), deployments);
    assert!(!canary_file(&p).exists());
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
}
