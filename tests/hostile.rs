//! Hostile and careless inputs, by class: each test sweeps one class of input or fault across
//! every binary or field it reaches, compares what happened with what must happen, and keeps
//! the table it observed in docs/RELIABILITY.md (`support::check_doc_section`), so the counts
//! there are the suite's own.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use support::{BINARIES, Project, output};

/// One case of a class: what must happen and what did.
struct Case {
    case: String,
    expected: &'static str,
    observed: String,
}

/// Checks every case, then the class's table in docs/RELIABILITY.md.
fn finish(class: &str, cases: Vec<Case>) {
    let wrong: Vec<String> = cases
        .iter()
        .filter(|c| c.observed != c.expected)
        .map(|c| format!("{}: expected {:?}, observed {:?}", c.case, c.expected, c.observed))
        .collect();
    assert!(wrong.is_empty(), "{class}: {} of {} case(s) went wrong:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
    let mut table = String::from("| case | what happened |\n|---|---|\n");
    for c in &cases {
        table += &format!("| {} | {} |\n", c.case.replace('|', "\\|"), c.observed);
    }
    table += &format!("\n{} case(s), each as required.\n", cases.len());
    support::check_doc_section(&format!("hostile-{class}"), &table);
}

/// Every file under `dir` with its size and modification time: what "nothing changed" compares.
fn snapshot(dir: &Path) -> BTreeMap<String, (u64, std::time::SystemTime)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (u64, std::time::SystemTime)>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
            if m.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap_or(&p).display().to_string();
                out.insert(rel, (m.len(), m.modified().unwrap_or(std::time::UNIX_EPOCH)));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// "exit N, K error line(s)" and what else the run shows, for a table row.
fn describe(a: &assert_cmd::assert::Assert) -> (Option<i32>, usize, String, String) {
    let (out, err) = output(a);
    let errors = err.lines().filter(|l| l.contains("error:")).count();
    (a.get_output().status.code(), errors, out, err)
}

fn args_for(bin: &str) -> Vec<&'static str> {
    match bin {
        "deploy-staging" => vec!["--version", "v9"],
        "smoke-check" | "collect-logs" => vec!["--env", "staging"],
        _ => vec![],
    }
}

#[test]
fn a_panic_anywhere_is_a_failure_never_a_pass() {
    let p = Project::new();
    p.v1_everywhere();
    let verifications = || p.query_i64("SELECT COUNT(*) FROM verifications");
    let mut cases = vec![];
    // A panic in the operation itself, in every binary.
    for bin in BINARIES {
        let before = verifications();
        let a = p.cmd(bin).args(args_for(bin)).arg("--json").env("SAFEDEPLOY_FAILPOINT_PANIC", "operation").assert();
        let (code, errors, out, err) = describe(&a);
        let doc: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_default();
        let said =
            err.contains(&format!("{bin}: error: internal error: failpoint: a panic injected at operation at src/"));
        let observed = format!(
            "exit {}, {errors} error line, said as an internal error: {said}, --json ok: {}, verdicts recorded: {}",
            code.unwrap_or(-1),
            doc["ok"],
            verifications() - before
        );
        cases.push(Case {
            case: format!("{bin}: its operation panics"),
            expected: "exit 3, 1 error line, said as an internal error: true, --json ok: false, verdicts recorded: 0",
            observed,
        });
    }
    // A panic in one smoke chain's thread: the incident's "passed 0 check(s)".
    for record in [false, true] {
        let before = verifications();
        let mut c = p.cmd("smoke-check");
        c.args(["--env", "staging"]).env("SAFEDEPLOY_FAILPOINT_PANIC", "smoke chain");
        if record {
            c.arg("--record");
        }
        let a = c.assert();
        let (code, errors, _, err) = describe(&a);
        let said = err.contains("stopped with an internal error (failpoint: a panic injected at smoke chain")
            && err.contains("no verdict is recorded")
            && !err.contains("passed");
        cases.push(Case {
            case: format!("smoke-check{}: a chain's thread panics", if record { " --record" } else { "" }),
            expected: "exit 3, 1 error line, no pass said: true, verdicts recorded: 0",
            observed: format!(
                "exit {}, {errors} error line, no pass said: {said}, verdicts recorded: {}",
                code.unwrap_or(-1),
                verifications() - before
            ),
        });
    }
    // A panic in a thread of the split log search (a file over 32 MiB is split across cores).
    assert!(
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) >= 2,
        "the split log search needs two cores; this machine has one"
    );
    let big = p.state.parent().expect("tmp").join("big.log");
    let line = "2026-11-23T22:40:01.123Z INFO GET /x 200\n";
    std::fs::write(&big, line.repeat(40 * 1024 * 1024 / line.len())).expect("big log");
    let report = p.app.join("hunt.txt");
    let a = p
        .cmd("collect-logs")
        .arg("--input")
        .arg(&big)
        .arg("--out")
        .arg(&report)
        .env("SAFEDEPLOY_FAILPOINT_PANIC", "log part")
        .assert();
    let (code, errors, _, err) = describe(&a);
    let said = err.contains("stopped with an internal error (failpoint: a panic injected at log part");
    cases.push(Case {
        case: "collect-logs: a thread of the split search panics".into(),
        expected: "exit 3, 1 error line, said: true, report written: false",
        observed: format!(
            "exit {}, {errors} error line, said: {said}, report written: {}",
            code.unwrap_or(-1),
            report.exists()
        ),
    });
    finish("panics", cases);
}

#[test]
fn labels_and_names_that_could_leave_their_directory_are_exit_2_and_change_nothing() {
    let p = Project::new();
    p.v1_everywhere();
    let before = snapshot(&p.state);
    let long = "x".repeat(101);
    let labels =
        [".", "..", "-rf", "--help", "_x", ".x", "a/b", "../local", "", " ", "a b", "é", long.as_str(), "v1\n"];
    let mut cases = vec![];
    for label in labels {
        for (bin, flag, extra) in [
            ("deploy-staging", "--version", &[][..]),
            ("promote", "--version", &["--force", "--reason", "hostile"][..]),
            ("rollback", "--to", &[][..]),
            ("smoke-check", "--expect-version", &["--env", "staging", "--record"][..]),
        ] {
            let a = p.cmd(bin).arg(format!("{flag}={label}")).args(extra).assert();
            let (code, errors, out, _) = describe(&a);
            let shown = if label.len() > 12 {
                format!("{}… ({} chars)", &label[..8], label.len())
            } else {
                format!("{label:?}")
            };
            cases.push(Case {
                case: format!("{bin} {flag} {shown}"),
                expected: "exit 2, 1 error line, stdout empty, state unchanged",
                observed: format!(
                    "exit {}, {errors} error line, stdout {}, state {}",
                    code.unwrap_or(-1),
                    if out.is_empty() { "empty" } else { "written" },
                    if snapshot(&p.state) == before { "unchanged" } else { "CHANGED" }
                ),
            });
        }
    }
    for env in ["..", ".", "-x", "", "staging/../production", "../../etc"] {
        for bin in ["deploy-staging", "smoke-check", "rollback", "collect-logs"] {
            let mut c = p.cmd(bin);
            c.arg(format!("--env={env}"));
            if bin == "deploy-staging" {
                c.args(["--version", "v7"]);
            }
            let a = c.assert();
            let (code, errors, out, _) = describe(&a);
            cases.push(Case {
                case: format!("{bin} --env {env:?}"),
                expected: "exit 2, 1 error line, stdout empty, state unchanged",
                observed: format!(
                    "exit {}, {errors} error line, stdout {}, state {}",
                    code.unwrap_or(-1),
                    if out.is_empty() { "empty" } else { "written" },
                    if snapshot(&p.state) == before { "unchanged" } else { "CHANGED" }
                ),
            });
        }
    }
    assert_eq!(p.served_version("production").as_deref(), Some("v1"));
    assert_eq!(p.served_version("staging").as_deref(), Some("v1"));
    finish("labels", cases);
}

#[test]
fn a_report_pattern_that_matches_source_files_is_exit_2_and_deletes_nothing() {
    let mut cases = vec![];
    for pattern in ["*.py", "*", "**/*", "tests/*.py", "Procfile", "../app/*.py", "**/*.txt", "safedeploy.toml"] {
        let p = Project::new();
        p.edit_config(|c| c.replace(r#"junit = "reports/junit.xml""#, &format!("junit = {pattern:?}")));
        p.commit_all("a careless report pattern", "Team");
        let a = p.cmd("gate-tests").assert();
        let (code, errors, _, err) = describe(&a);
        let named =
            err.contains(&format!("gate.junit {pattern:?} matches ")) && err.contains("which is not a JUnit report");
        let clean = p.git(&["status", "--porcelain"]).is_empty();
        cases.push(Case {
            case: format!("gate.junit = {pattern:?}"),
            expected: "exit 2, 1 error line, gate.junit named: true, the tests ran: false, files deleted: none",
            observed: format!(
                "exit {}, {errors} error line, gate.junit named: {named}, the tests ran: {}, files deleted: {}",
                code.unwrap_or(-1),
                p.app.join("reports").exists(),
                if clean { "none" } else { "SOME" }
            ),
        });
    }
    finish("gate-patterns", cases);
}

#[test]
fn odd_characters_in_the_checkout_and_state_paths_break_nothing() {
    let mut cases = vec![];
    for (app, state) in [
        ("my app", "state dir"),
        ("app'q\"x", "st $HOME;#{}ate"),
        ("ü é", "-state [x] *?"),
        ("app\\back", "state%20&amp"),
    ] {
        let p = Project::in_dirs(app, state);
        p.v2_failing_in_production();
        let rolled = p.cmd("rollback").assert().get_output().status.code();
        let report = p.app.join("hunt.txt");
        let logs = p
            .cmd("collect-logs")
            .args(["--env", "production", "--out"])
            .arg(&report)
            .assert()
            .get_output()
            .status
            .code();
        let text = std::fs::read_to_string(&report).unwrap_or_default();
        cases.push(Case {
            case: format!("checkout {app:?}, state dir {state:?}"),
            expected: "pipeline ok, rollback exit 0, production serves v1, report names the TypeError: true",
            observed: format!(
                "pipeline ok, rollback exit {}, production serves {}, report names the TypeError: {}",
                rolled.unwrap_or(-1),
                p.served_version("production").unwrap_or_else(|| "nothing".into()),
                logs == Some(0) && text.contains("exception: TypeError")
            ),
        });
    }
    // A ':' would split the app's PATH: refused before anything is done.
    let p = Project::in_dirs("app", "state:colon");
    let a = p.cmd("deploy-staging").args(["--version", "v1"]).assert();
    let (code, errors, _, err) = describe(&a);
    cases.push(Case {
        case: "state dir \"state:colon\"".into(),
        expected: "exit 2, 1 error line, said why: true, created: false",
        observed: format!(
            "exit {}, {errors} error line, said why: {}, created: {}",
            code.unwrap_or(-1),
            err.contains("must not contain ':'"),
            p.state.exists()
        ),
    });
    finish("odd-paths", cases);
}

/// Whether any of `secrets` is in `text`.
fn leaks(text: &str, secrets: &[&str]) -> bool {
    secrets.iter().any(|s| text.contains(s))
}

#[test]
fn secrets_are_masked_by_shape_and_by_where_they_come_from() {
    let mut cases = vec![];
    let p = Project::new();
    p.v1_everywhere();
    // Log lines with AWS secret keys that collect-logs' own environment does not know.
    let bare = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKY";
    let json = "Zq8/3kLm9NpQr2StUvWx4YzAb5CdEfGhIjKlMnOp";
    let log = p.state.parent().expect("tmp").join("secret.log");
    std::fs::write(
        &log,
        format!(
            "2026-11-23T22:40:01.123Z ERROR upload failed: signing with {bare}\n\
             2026-11-23T22:40:02.123Z ERROR bad config {{\"aws_secret_access_key\": \"{json}\", \"password\": 12345678}}\n"
        ),
    )
    .expect("log");
    let report = p.app.join("secret-report.txt");
    let a = p.cmd("collect-logs").arg("--input").arg(&log).arg("--out").arg(&report).arg("--json").assert();
    let (code, _, out, err) = describe(&a);
    let written = std::fs::read_to_string(&report).unwrap_or_default();
    cases.push(Case {
        case: "AWS secret keys in log lines, bare and as JSON, not in the tool's environment".into(),
        expected: "exit 0, in console, --json or report: no",
        observed: format!(
            "exit {}, in console, --json or report: {}",
            code.unwrap_or(-1),
            if leaks(&format!("{out}{err}{written}"), &[bare, json, "12345678"]) { "YES" } else { "no" }
        ),
    });

    // Header values of smoke checks: in the config, and from {{env.X}}.
    let key = "team-api-key-7f3a9c";
    let from_env = "env-header-value-91bd2";
    p.edit_config(|c| {
        c.replace(
            "name = \"the form is served\"\n",
            &format!("name = \"the form is served\"\nheaders = {{ X-Api-Key = \"{key}\", X-Team = \"{{{{env.TEAM_HEADER}}}}\" }}\nexpect_status = [299]\n"),
        )
    });
    for dry in [false, true] {
        let mut c = p.cmd("smoke-check");
        c.args(["--env", "staging", "--json", "-v"]).env("TEAM_HEADER", from_env);
        if dry {
            c.arg("--dry-run");
        }
        let a = c.assert();
        let (code, _, out, err) = describe(&a);
        cases.push(Case {
            case: format!(
                "smoke check header values from the config and {{{{env.X}}}}{}",
                if dry { ", dry run" } else { ", failing" }
            ),
            expected: if dry { "exit 0, printed: no" } else { "exit 1, printed: no" },
            observed: format!(
                "exit {}, printed: {}",
                code.unwrap_or(-1),
                if leaks(&format!("{out}{err}"), &[key, from_env]) { "YES" } else { "no" }
            ),
        });
    }

    // A webhook URL in a variable of a custom name, unreachable (the notify error names it).
    let hook = "http://127.0.0.1:9/hooks/T000/B000/hook-secret-55aa";
    p.edit_config(|c| c.replace("[logs]\n", "[logs]\nslack_webhook_env = \"TEAM_HOOK\"\n"));
    for dry in [false, true] {
        let mut c = p.cmd("collect-logs");
        c.args(["--env", "production", "--notify", "--out"]).arg(&report).env("TEAM_HOOK", hook);
        if dry {
            c.arg("--dry-run");
        }
        let a = c.assert();
        let (code, _, out, err) = describe(&a);
        cases.push(Case {
            case: format!(
                "a webhook URL from a custom slack_webhook_env{}",
                if dry { ", dry run" } else { ", unreachable" }
            ),
            expected: if dry { "exit 0, printed: no" } else { "exit 3, printed: no" },
            observed: format!(
                "exit {}, printed: {}",
                code.unwrap_or(-1),
                if leaks(&format!("{out}{err}"), &["hook-secret-55aa"]) { "YES" } else { "no" }
            ),
        });
    }

    // A numeric password where the config expects text: the type error does not echo it.
    let q = Project::new();
    q.edit_config(|c| {
        c.replace("[environments.staging]\n", "[environments.staging]\nenv = { DB_PASSWORD = 90817263 }\n")
    });
    let a = q.cmd("deploy-staging").args(["--version", "v1"]).assert();
    let (code, errors, out, err) = describe(&a);
    cases.push(Case {
        case: "a numeric password in a config type error".into(),
        expected: "exit 2, 1 error line, printed: no",
        observed: format!(
            "exit {}, {errors} error line, printed: {}",
            code.unwrap_or(-1),
            if leaks(&format!("{out}{err}"), &["90817263"]) { "YES" } else { "no" }
        ),
    });
    finish("secrets", cases);
}
