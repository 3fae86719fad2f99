//! The fault-injection suite: deploy-staging, promote and rollback are killed (`kill -9`, by
//! the failpoint at each chokepoint) before each of their side effects in turn, and promote
//! meets a full disk at each step. After every fault: the environments serve a known version,
//! the ledger passes `PRAGMA integrity_check`, running the step again converges, and the ledger
//! then tells the truth (what it records as live is what is served; nothing left open; a
//! rollback's incident recorded once and closed, whatever step the kill hit), and no process of
//! the project is left that no record accounts for.
//!
//! Each operation's sweep is a test of its own, on a project of its own, so they run side by
//! side. Each writes the fault → outcome rows it observed to `target/reliability/faults-*.md`;
//! docs/RELIABILITY.md holds those tables, and a test fails when its table and the document's
//! differ (`SAFEDEPLOY_BLESS=1` rewrites the document's table from the run).

use crate::support::Project;
use std::os::unix::process::ExitStatusExt;

/// How one faulted run ended, and what the environments served right after it.
struct Row {
    op: &'static str,
    step: usize,
    what: String,
    fault: &'static str,
    exit: String,
    serving: String,
    /// New incidents after the rerun: how many, and whether all are closed.
    incidents: String,
}

/// Makes a step's text stable across runs: no temp paths, ports, pids or commit ids.
fn normalize(p: &Project, text: &str) -> String {
    let mut t = text
        .replace(&p.state.display().to_string(), "<state>")
        .replace(&p.app.display().to_string(), "<app>")
        .replace(env!("CARGO_MANIFEST_DIR"), "<repo>");
    let re = |pat: &str, rep: &str, t: &str| regex::Regex::new(pat).expect("regex").replace_all(t, rep).into_owned();
    t = re(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", &t);
    t = re(r"\bPORT=\d+", "PORT=<port>", &t);
    t = re(r"\b[0-9a-f]{40}\b", "<commit>", &t);
    t = re(r"-- -\d+", "-- -<pgid>", &t);
    t = re(r"\(pid \d+\)|kill -QUIT \d+", "<pid>", &t);
    t = re(r"PATH=\S+ ", "", &t);
    t = re(r"env -u \S+ ", "", &t);
    t = re(r" SAFEDEPLOY_(VERSION|ENV|DATA_DIR)=\S+", "", &t);
    t = re(r"\d{4}-\d\d-\d\dT[0-9:.]+Z", "<time>", &t);
    t = re(r"/work/([A-Za-z0-9._-]+)-\d{13}\b", "/work/$1-<ms>", &t);
    t = re(r" -p \S+ -c \S+ -e \S+", "", &t);
    // The verification after a restore: its run id and the short code it was given.
    t = re(r"/smoke/[0-9a-f]{8,}", "/smoke/<run>", &t);
    t = re(r"X-Safedeploy-Check: [0-9a-f]{8,}", "X-Safedeploy-Check: <run>", &t);
    t = regex::Regex::new(r"127\.0\.0\.1:<port>/([A-Za-z0-9]{6})\b")
        .expect("regex")
        .replace_all(
            &t,
            |c: &regex::Captures<'_>| {
                if &c[1] == "health" { c[0].to_string() } else { "127.0.0.1:<port>/<code>".to_string() }
            },
        )
        .into_owned();
    t = t.replace("<repo>/.tools/bin/nginx", "nginx").replace("<repo>/target/debug/", "");
    if t.chars().count() > 110 {
        t = t.chars().take(107).collect::<String>() + "...";
    }
    t.replace('|', "\\|")
}

/// Runs `args` of `bin` with a failpoint; returns (exit description, the steps it logged).
fn faulted(p: &Project, bin: &str, args: &[&str], at: usize, mode: &str) -> (String, Vec<String>) {
    let log = p.state.parent().expect("tmp").join(format!("steps-{bin}-{at}-{mode}.log"));
    let _ = std::fs::remove_file(&log);
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin(bin))
        .args(args)
        .current_dir(&p.app)
        .env("PATH", crate::support::tools_path())
        .env("SAFEDEPLOY_STATE_DIR", &p.state)
        .env("SAFEDEPLOY_FAILPOINT", format!("{at}:{mode}"))
        .env("SAFEDEPLOY_FAILPOINT_LOG", &log)
        .output()
        .expect("run");
    let exit = match (out.status.code(), out.status.signal()) {
        (_, Some(9)) => "killed".to_string(),
        (Some(c), _) => format!("exit {c}"),
        _ => format!("{:?}", out.status),
    };
    let steps = std::fs::read_to_string(&log).unwrap_or_default().lines().map(str::to_string).collect();
    (exit, steps)
}

fn serving(p: &Project) -> String {
    ["staging", "production"]
        .iter()
        .map(|e| format!("{}: {}", e, p.served_version(e).unwrap_or_else(|| "nothing".into())))
        .collect::<Vec<_>>()
        .join(", ")
}

/// After the rerun: the ledger's live deployment of `env` is what `env` serves; nothing open.
fn assert_truth(p: &Project, env: &str, context: &str) {
    p.assert_ledger_intact();
    let served = p.served_version(env).unwrap_or_else(|| panic!("{env} serves nothing after {context}"));
    let live = p.query_strings(&format!(
        "SELECT label FROM deployments WHERE env = '{env}' AND outcome = 'healthy' ORDER BY id DESC LIMIT 1"
    ));
    assert_eq!(live, vec![served.clone()], "{context}: the ledger's live version of {env} is what it serves");
    assert_eq!(
        p.query_i64("SELECT COUNT(*) FROM deployments WHERE outcome = 'in_progress'"),
        0,
        "{context}: nothing left in progress"
    );
}

/// The incidents recorded after `since` (an id): "none", or "N, closed" / "N, M open".
fn new_incidents(p: &Project, since: i64) -> String {
    let n = p.query_i64(&format!("SELECT COUNT(*) FROM incidents WHERE id > {since}"));
    let open = p.query_i64(&format!("SELECT COUNT(*) FROM incidents WHERE id > {since} AND restored_at IS NULL"));
    match (n, open) {
        (0, _) => "none".into(),
        (n, 0) => format!("{n}, closed"),
        (n, o) => format!("{n}, {o} open"),
    }
}

/// One operation under faults at every step, `mode` being `kill` or `enospc`.
fn sweep(
    p: &Project,
    op: &'static str,
    mode: &'static str,
    mut prepare: impl FnMut(usize) -> Vec<String>,
    env: &str,
    rows: &mut Vec<Row>,
) {
    for at in 1.. {
        assert!(at < 60, "{op}: more steps than expected");
        let args = prepare(at);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let incidents_before = p.query_i64("SELECT COALESCE(MAX(id), 0) FROM incidents");
        let bin = op.split(' ').next().expect("bin");
        let (exit, steps) = faulted(p, bin, &args, at, mode);
        if steps.len() < at {
            // The run ended before reaching step `at`: every step has been faulted.
            assert_eq!(exit, "exit 0", "{op}: the unfaulted run succeeds");
            break;
        }
        let what = steps[at - 1].split_once('\t').map(|(_, w)| w.to_string()).unwrap_or_default();
        let context = format!("{op}, {mode} before step {at} ({what})");
        // Right after the fault: both environments serve a known version, the ledger is intact.
        let now = serving(p);
        for e in ["staging", "production"] {
            let v = p.served_version(e);
            assert!(
                v.as_deref().is_some_and(|v| v.starts_with("v1") || v.starts_with("v2")),
                "{context}: {e} serves {v:?}"
            );
        }
        p.assert_ledger_intact();
        assert_ne!(exit, "exit 0", "{context}: a fault is not a success");
        if mode == "enospc" {
            assert_eq!(exit, "exit 3", "{context}: a full disk means could not act");
        }
        // Running the step again converges.
        let a = p.cmd(bin).args(&args).assert();
        let (out, err) = crate::support::output(&a);
        assert!(a.get_output().status.success(), "{context}: the rerun failed:\n{out}{err}");
        assert_truth(p, env, &context);
        let strays = p.stray_processes();
        assert!(strays.is_empty(), "{context}: processes left behind: {strays:?}");
        let incidents = new_incidents(p, incidents_before);
        if op.starts_with("rollback") {
            assert_eq!(incidents, "1, closed", "{context}: the rollback's incident is recorded once, and closed");
        } else {
            assert_eq!(incidents, "none", "{context}: no incident");
        }
        rows.push(Row { op, step: at, what: normalize(p, &what), fault: mode, exit, serving: now, incidents });
    }
}

/// A project with v1 everywhere and the incident's v2 committed, taking the cold path, every
/// step of it (`keep_previous = "0s"`: no warm previous to switch back to, so each run takes the
/// same steps whatever the one before left); with `staged`, v2 deployed to staging (what
/// promote takes). Each operation's sweep has a project of its own, so the sweeps run side by
/// side.
fn swept_project(keep_previous: &str, staged: bool) -> Project {
    let p = Project::new();
    p.edit_config(|c| {
        c.replace("stop_grace = \"3s\"", &format!("stop_grace = \"3s\"\nkeep_previous = \"{keep_previous}\""))
    });
    p.v1_everywhere();
    p.commit_incident();
    if staged {
        p.cmd("deploy-staging").args(["--version", "v2"]).assert().success();
    }
    p
}

/// One operation's sweep (see [`sweep`]), its rows checked against the table of
/// `docs/RELIABILITY.md` in its section `table`.
fn sweep_table(
    table: &str,
    p: &Project,
    op: &'static str,
    mode: &'static str,
    prepare: impl FnMut(usize) -> Vec<String>,
    env: &str,
) {
    let mut rows = vec![];
    sweep(p, op, mode, prepare, env, &mut rows);
    check_table(table, &rows);
}

/// The sweep's rows as the table of `docs/RELIABILITY.md` holds them, in its section `name`.
fn check_table(name: &str, rows: &[Row]) {
    let mut table = String::from(
        "| operation | fault | before step | the step | exit | right after the fault | rerun | incidents | stray processes |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        table += &format!(
            "| {} | {} | {} | `{}` | {} | {} | converged | {} | none |\n",
            r.op, r.fault, r.step, r.what, r.exit, r.serving, r.incidents
        );
    }
    crate::support::check_doc_section(name, &table);
}

/// Production back on v1, then promote's arguments for v2 (verified in staging).
fn promote_v2(p: &Project) -> Vec<String> {
    p.cmd("promote").args(["--version", "v1", "--force", "--reason", "reset"]).assert().success();
    ["--version", "v2", "--skip-pre-traffic", "forced", "--force", "--reason", "fault"].map(String::from).to_vec()
}

/// Forces `versions` into production in turn, each past its check before traffic.
fn force(p: &Project, versions: &[&str]) {
    for v in versions {
        p.cmd("promote")
            .args(["--version", v, "--skip-pre-traffic", "forced", "--force", "--reason", "reset"])
            .assert()
            .success();
    }
}

#[test]
fn every_step_of_deploy_staging_survives_a_kill() {
    let p = swept_project("0s", false);
    // A fresh label each time, so every run builds, registers and switches.
    sweep_table(
        "faults-deploy-staging",
        &p,
        "deploy-staging",
        "kill",
        |at| vec!["--version".into(), format!("v2-{at}")],
        "staging",
    );
}

#[test]
fn every_step_of_promote_survives_a_kill() {
    let p = swept_project("0s", true);
    sweep_table("faults-promote-kill", &p, "promote", "kill", |_| promote_v2(&p), "production");
}

#[test]
fn every_step_of_promote_survives_a_full_disk() {
    let p = swept_project("0s", true);
    sweep_table("faults-promote-enospc", &p, "promote", "enospc", |_| promote_v2(&p), "production");
}

#[test]
fn every_step_of_rollback_survives_a_kill() {
    let p = swept_project("0s", true);
    // Production on v2 first.
    let prepare = |_| {
        force(&p, &["v2"]);
        ["--reason", "fault"].map(String::from).to_vec()
    };
    sweep_table("faults-rollback", &p, "rollback", "kill", prepare, "production");
}

#[test]
fn every_step_of_a_rollback_to_the_warm_previous_survives_a_kill() {
    let p = swept_project("1h", true);
    // v1 kept running without traffic, then a switch back.
    let prepare = |_| {
        force(&p, &["v1", "v2"]);
        assert!(p.warm_pid("production").is_some(), "v1 is kept warm before the rollback");
        ["--reason", "fault"].map(String::from).to_vec()
    };
    sweep_table("faults-rollback-warm", &p, "rollback (to warm v1)", "kill", prepare, "production");
}

#[test]
fn every_step_of_a_promote_keeping_the_previous_warm_survives_a_kill() {
    // Its retire file and its warm record are steps too. v2 is condemned first (forced live,
    // then rolled back), so the reset to v1 before each run stops it instead of keeping it
    // warm, and each promote starts v2 and keeps v1 warm.
    let p = swept_project("1h", true);
    force(&p, &["v2"]);
    p.cmd("rollback").args(["--reason", "v2 fails"]).assert().success();
    sweep_table("faults-promote-warm", &p, "promote (keeping v1 warm)", "kill", |_| promote_v2(&p), "production");
}

#[test]
fn an_app_that_dies_after_its_deploy_is_seen_as_down_and_rolled_back() {
    let p = Project::new();
    p.v1_everywhere();
    // v2 passes its deploy and its smoke check, then dies a few seconds later.
    let procfile = std::fs::read_to_string(p.app.join("Procfile")).expect("Procfile");
    p.write("Procfile", &procfile.replace("web: ", "web: timeout -s KILL 4 "));
    p.commit_all("Dies after a while", "Team");
    p.cmd("deploy-staging").args(["--version", "v2"]).assert().success();
    p.cmd("promote")
        .args(["--version", "v2", "--skip-pre-traffic", "forced", "--force", "--reason", "test"])
        .assert()
        .success();
    p.cmd("smoke-check").args(["--env", "production", "--record"]).assert().success();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while p.get("production", "/health").is_some_and(|(s, _)| s == 200) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(p.get("production", "/health").is_none_or(|(s, _)| s != 200), "v2 died");
    p.cmd("smoke-check").args(["--env", "production"]).assert().code(1);
    // v2 passed its checks, so it is the last known good; the on-call names v1 instead.
    p.cmd("rollback").args(["--to", "v1", "--reason", "v2 died"]).assert().success();
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
    assert_truth(&p, "production", "after v2 died");
}

#[test]
fn two_concurrent_promotes_never_both_act() {
    let p = Project::new();
    p.v1_everywhere();
    p.commit_incident();
    p.cmd("deploy-staging").args(["--version", "v2"]).assert().success();
    let spawn = || {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("promote"))
            .args(["--version", "v2", "--skip-pre-traffic", "forced", "--force", "--reason", "race"])
            .current_dir(&p.app)
            .env("PATH", crate::support::tools_path())
            .env("SAFEDEPLOY_STATE_DIR", &p.state)
            .output()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().expect("a").expect("run"), b.join().expect("b").expect("run"))
    });
    let mut codes = [a.status.code(), b.status.code()];
    codes.sort();
    assert!(codes == [Some(0), Some(0)] || codes == [Some(0), Some(3)], "{codes:?}");
    if codes[1] == Some(3) {
        let loser = if a.status.code() == Some(3) { &a } else { &b };
        assert!(String::from_utf8_lossy(&loser.stderr).contains("lock"), "the loser names the lock");
    }
    assert_eq!(
        p.query_i64("SELECT COUNT(*) FROM deployments WHERE env = 'production' AND label = 'v2'"),
        1,
        "one acted"
    );
    assert_eq!(p.served_version("production").as_deref(), Some("v2"));
    assert_truth(&p, "production", "two promotes");
}
