//! A dry run of every binary changes nothing — no process started, no ledger row, no file
//! written, no request sent — and prints the commands and requests a real run would make.

use crate::support::{Project, output};
use std::io::ErrorKind;
use std::net::TcpListener;

/// Takes an environment's port so that any request a dry run sent would land here.
struct Listener(TcpListener);

impl Listener {
    fn on(port: u16) -> Self {
        let l = TcpListener::bind(("127.0.0.1", port)).expect("bind the environment's port");
        l.set_nonblocking(true).expect("nonblocking");
        Listener(l)
    }
    fn connections(&self) -> usize {
        let mut n = 0;
        loop {
            match self.0.accept() {
                Ok(_) => n += 1,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return n,
                Err(e) => panic!("accept: {e}"),
            }
        }
    }
}

fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = vec![];
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                out.extend(files_under(&e.path()));
            } else {
                out.push(e.path().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn deploy_staging_dry_run_prints_the_plan_and_creates_nothing() {
    let p = Project::new();
    let head = p.git(&["rev-parse", "HEAD"]);
    let listener = Listener::on(p.staging_port);
    let a = p.cmd("deploy-staging").args(["--version", "v1", "--dry-run"]).assert().success();
    let (out, err) = output(&a);
    assert!(err.contains(&format!("staging: deploying v1 (commit {})", &head[..12])), "says which commit: {err}");
    for step in [
        "+ git -C ",
        &format!("archive '--format=tar' -o {}", p.state.join("bundles/v1.tar.tmp").display()),
        &format!("{head}:"),
        "# would unpack ",
        "sh -c true",
        "# ledger: would record version v1",
        "safedeploy-supervisor -- sh -c 'exec gunicorn --bind 127.0.0.1:$PORT",
        // The version starts on a port of its own; nginx, on staging's port, switches to it.
        "+ curl -sS http://127.0.0.1:",
        "/health   # repeated until it answers",
        "/local/envs/staging/nginx/nginx.conf at v1 on 127.0.0.1:",
        "# would make staging's working copy of v1: ",
        "/nginx -p ",
        "# ledger: would record deploy of v1 to staging (in progress)",
    ] {
        assert!(out.contains(step), "plan lacks {step:?}:\n{out}");
    }
    assert!(!p.state.exists(), "state dir created: {:?}", files_under(&p.state));
    assert_eq!(listener.connections(), 0, "a dry run sent a request");
}

#[test]
fn dry_runs_of_promote_smoke_rollback_and_collect_logs_change_nothing() {
    let p = Project::new();
    p.v2_failing_in_production();

    let before = files_under(&p.state);
    let rows = |p: &Project| {
        p.query_i64("SELECT (SELECT COUNT(*) FROM deployments) * 1000000 + (SELECT COUNT(*) FROM verifications) * 1000 + (SELECT COUNT(*) FROM incidents)")
    };
    let rows_before = rows(&p);
    let log_size = std::fs::metadata(p.state.join("local/envs/production/app.log")).expect("log").len();

    // rollback: would stop v2 and start v1, and record the incident.
    let a = p.cmd("rollback").arg("--dry-run").assert().success();
    let (out, _) = output(&a);
    for step in [
        "# would stop production (v2): kill -TERM -- -",
        "# ledger: would mark version v2 bad",
        "# ledger: would record incident in production: v2 replaced by v1",
    ] {
        assert!(out.contains(step), "plan lacks {step:?}:\n{out}");
    }
    // Only what a real run would create: production's data dir exists.
    assert!(!out.contains("# would create"), "{out}");

    // smoke-check: the requests it would send, with the form body.
    let a = p.cmd("smoke-check").args(["--env", "staging", "--record", "--dry-run"]).assert().success();
    let (out, _) = output(&a);
    assert!(out.contains(&format!("+ curl -sS http://127.0.0.1:{}/version", p.staging_port)), "{out}");
    // Each request says it is a check's, with the run's id.
    assert!(out.contains("+ curl -sS -X POST -H 'X-Safedeploy-Check: "), "{out}");
    assert!(out.contains("--data-urlencode 'url=https://example.com/smoke/"), "{out}");
    assert!(out.contains("# ledger: would record the verdict of v2 in staging"), "{out}");

    // promote: would deploy v1 over v2 (v1 is staging's last known good).
    let a = p.cmd("promote").args(["--version", "v1", "--dry-run"]).assert().success();
    let (out, _) = output(&a);
    assert!(out.contains("# ledger: would record promote of v1 to production (in progress)"), "{out}");

    // collect-logs: reads, but does not write its report.
    let report = p.app.join("report.txt");
    let a = p.cmd("collect-logs").args(["--env", "production", "--dry-run", "--out"]).arg(&report).assert().success();
    let (out, _) = output(&a);
    assert!(out.contains(&format!("# would write the report to {}", report.display())), "{out}");
    assert!(!report.exists());

    // gate-tests: the test command is printed, not run.
    let a = p.cmd("gate-tests").arg("--dry-run").assert().success();
    let (out, _) = output(&a);
    assert!(out.contains("-m pytest -p no:cacheprovider -q '--tb=short' '--junitxml=reports/junit.xml'"), "{out}");
    assert!(!p.app.join("reports").exists(), "the tests ran");

    let after = files_under(&p.state);
    let new: Vec<&String> = after.iter().filter(|f| !before.contains(f)).collect();
    assert!(new.is_empty(), "files appeared in the state dir: {new:?}");
    assert_eq!(rows(&p), rows_before, "the ledger changed");
    let log_after = std::fs::metadata(p.state.join("local/envs/production/app.log")).expect("log").len();
    assert_eq!(log_after, log_size, "a request reached production");
    assert_eq!(p.served_version("production").as_deref(), Some("v2"));
}
