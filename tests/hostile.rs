//! Hostile and careless inputs, by class: each test sweeps one class of input or fault across
//! every binary or field it reaches, compares what happened with what must happen, and keeps
//! the table it observed in docs/RELIABILITY.md (`crate::support::check_doc_section`), so the counts
//! there are the suite's own.

use crate::support::{BINARIES, Project, output};
use std::collections::BTreeMap;
use std::path::Path;

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
    crate::support::check_doc_section(&format!("hostile-{class}"), &table);
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
    // The same run, for real and as a dry run: nothing it prints holds the secrets.
    let mut leak_case = |what: &str, make: &dyn Fn() -> assert_cmd::Command, real: &'static str, secrets: &[&str]| {
        for dry in [false, true] {
            let mut c = make();
            if dry {
                c.arg("--dry-run");
            }
            let (code, _, out, err) = describe(&c.assert());
            cases.push(Case {
                case: format!("{what}{}", if dry { ", dry run" } else { "" }),
                expected: if dry { "exit 0, printed: no" } else { real },
                observed: format!(
                    "exit {}, printed: {}",
                    code.unwrap_or(-1),
                    if leaks(&format!("{out}{err}"), secrets) { "YES" } else { "no" }
                ),
            });
        }
    };
    let smoke = || {
        let mut c = p.cmd("smoke-check");
        c.args(["--env", "staging", "--json", "-v"]).env("TEAM_HEADER", from_env);
        c
    };
    leak_case(
        "smoke check header values from the config and {{env.X}}, failing",
        &smoke,
        "exit 1, printed: no",
        &[key, from_env],
    );
    // A webhook URL in a variable of a custom name, unreachable (the notify error names it).
    let hook = "http://127.0.0.1:9/hooks/T000/B000/hook-secret-55aa";
    p.edit_config(|c| c.replace("[logs]\n", "[logs]\nslack_webhook_env = \"TEAM_HOOK\"\n"));
    let notify = || {
        let mut c = p.cmd("collect-logs");
        c.args(["--env", "production", "--notify", "--out"]).arg(&report).env("TEAM_HOOK", hook);
        c
    };
    leak_case(
        "a webhook URL from a custom slack_webhook_env, unreachable",
        &notify,
        "exit 3, printed: no",
        &["hook-secret-55aa"],
    );

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

/// The largest resident set of any child this test process has waited for, in MiB.
fn peak_child_mib() -> i64 {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).expect("getrusage");
    usage.max_rss() / 1024
}

#[test]
fn inputs_of_any_size_are_read_in_bounded_memory_and_give_a_small_report() {
    let p = Project::new();
    let dir = p.state.parent().expect("tmp").to_path_buf();
    let mut cases = vec![];
    let mut run = |case: &str, input: &Path| {
        let report = dir.join("bounded-report.txt");
        let a = p.cmd("collect-logs").arg("--input").arg(input).arg("--out").arg(&report).assert();
        let (code, _, _, err) = describe(&a);
        let size = std::fs::metadata(&report).map(|m| m.len()).unwrap_or(0);
        let said = err.contains("were cut")
            || err.contains("were counted but not kept")
            || std::fs::read_to_string(&report).unwrap_or_default().contains("cut by safedeploy");
        cases.push(Case {
            case: case.to_string(),
            expected: "exit 0, the cut said: true, report under 8 MiB: true, peak memory under 64 MiB: true",
            observed: format!(
                "exit {}, the cut said: {said}, report under 8 MiB: {}, peak memory under 64 MiB: {}",
                code.unwrap_or(-1),
                size < 8 << 20,
                peak_child_mib() < 64
            ),
        });
    };
    // 512 MiB of NUL bytes: one line.
    let nul = dir.join("nul.log");
    let f = std::fs::File::create(&nul).expect("nul");
    f.set_len(512 << 20).expect("512 MiB of NUL");
    run("512 MiB of NUL bytes, no newline", &nul);
    // A 100 MiB line that matches, between ordinary ones.
    let long = dir.join("long.log");
    {
        use std::io::Write;
        let mut w = std::io::BufWriter::new(std::fs::File::create(&long).expect("long"));
        writeln!(w, "2026-11-23T22:40:01.123Z INFO starting").expect("w");
        write!(w, "2026-11-23T22:40:02.123Z ERROR huge ").expect("w");
        for _ in 0..(100 << 10) {
            w.write_all(&[b'x'; 1024]).expect("w");
        }
        writeln!(w).expect("w");
        writeln!(w, "2026-11-23T22:40:03.123Z INFO after").expect("w");
    }
    run("a matching line of 100 MiB", &long);
    // A traceback of a million frames.
    let deep = dir.join("deep.log");
    {
        use std::io::Write;
        let mut w = std::io::BufWriter::new(std::fs::File::create(&deep).expect("deep"));
        writeln!(w, "Traceback (most recent call last):").expect("w");
        for i in 0..1_000_000 {
            writeln!(w, "  File \"/var/app/current/application.py\", line {i}, in f\n    f()").expect("w");
        }
        writeln!(w, "RecursionError: maximum recursion depth exceeded").expect("w");
    }
    run("a traceback of a million frames", &deep);
    // 30,000 distinct errors, each with a 4 KiB line.
    let many = dir.join("many.log");
    {
        use std::io::Write;
        let mut w = std::io::BufWriter::new(std::fs::File::create(&many).expect("many"));
        let filler = "y".repeat(4000);
        for i in 0..30_000u32 {
            let word: String = format!("{i:05}").chars().map(|c| (b'a' + c as u8 - b'0') as char).collect();
            writeln!(w, "2026-11-23T22:40:01.123Z ERROR failure kind {word} {filler}").expect("w");
        }
    }
    run("30,000 distinct errors of 4 KiB each", &many);
    // /dev/zero never ends: bounded while it runs, and SIGTERM ends it.
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("collect-logs"))
        .args(["--input", "/dev/zero", "--out"])
        .arg(dir.join("zero-report.txt"))
        .current_dir(&p.app)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let read = |pid: u32| -> u64 {
        let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
        io.lines().find_map(|l| l.strip_prefix("rchar: ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while read(child.id()) < (1 << 30) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let gib = read(child.id()) >> 30;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .expect("TERM");
    let status = child.wait().expect("wait");
    cases.push(Case {
        case: "/dev/zero, then SIGTERM".into(),
        expected: "read 1 GiB or more: true, exit 130, report written: false, peak memory under 64 MiB: true",
        observed: format!(
            "read 1 GiB or more: {}, exit {}, report written: {}, peak memory under 64 MiB: {}",
            gib >= 1,
            status.code().unwrap_or(-1),
            dir.join("zero-report.txt").exists(),
            peak_child_mib() < 64
        ),
    });
    finish("unbounded-input", cases);
}

/// Processes whose command line contains `marker` (zombies aside).
fn running(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter(|e| {
            let cmd = String::from_utf8_lossy(&std::fs::read(e.path().join("cmdline")).unwrap_or_default())
                .replace('\0', " ");
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            cmd.contains(marker) && !stat.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .count()
}

/// Waits (bounded) until `cond` holds.
fn until(cond: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !cond() {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    true
}

#[test]
fn nothing_a_child_started_outlives_a_timeout_an_abort_or_a_kill() {
    let mut cases = vec![];
    let mut case = |case: &str, expected: &'static str, observed: String| {
        cases.push(Case { case: case.into(), expected, observed });
    };
    let gate_cmd = |p: &Project, script: &str, timeout: &str| {
        p.edit_config(|c| {
            // Only the tests check: no coverage report or change policy to satisfy.
            let c = c
                .replacen("[gate]\n", &format!("[gate]\ntimeout = \"{timeout}\"\n"), 1)
                .replace("min_diff_coverage = 80", "")
                .replace("source = [\"**/*.py\"]", "");
            let start = c.find("command = [\"").expect("gate command");
            let end = start + c[start..].find("]\n").expect("end") + 2;
            format!("{}command = [\"sh\", \"-c\", {script:?}]\n{}", &c[..start], &c[end..])
        });
    };
    // The gate's test command times out with children of its own.
    let p = Project::new();
    gate_cmd(&p, "sleep 3011 & sleep 3012", "2s");
    let a = p.cmd("gate-tests").assert();
    let (code, _, _, err) = describe(&a);
    case(
        "gate-tests: the test command times out, with a child in the background",
        "exit 3, said: true, left running: 0",
        format!(
            "exit {}, said: {}, left running: {}",
            code.unwrap_or(-1),
            err.contains("timed out after 2s and was stopped, with its process group"),
            running("sleep 301")
        ),
    );
    // SIGTERM (a Jenkins abort) while the test command runs.
    let p = Project::new();
    gate_cmd(&p, "sleep 3021 & sleep 3022", "30m");
    let c = {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("gate-tests"));
        c.current_dir(&p.app).env("SAFEDEPLOY_STATE_DIR", &p.state);
        c
    };
    let (code, err) = crate::support::abort_when(c, || running("sleep 3022") > 0);
    case(
        "gate-tests: SIGTERM while the test command runs",
        "exit 130, said: true, left running: 0",
        format!(
            "exit {}, said: {}, left running: {}",
            code.unwrap_or(-1),
            err.contains("interrupted while running"),
            running("sleep 302")
        ),
    );
    // The test command ends, leaving a server it started in the background.
    let p = Project::new();
    gate_cmd(
        &p,
        "sleep 3031 & mkdir -p reports && echo '<testsuite><testcase name=\"a\"/></testsuite>' > reports/junit.xml",
        "30m",
    );
    let a = p.cmd("gate-tests").assert();
    let code = a.get_output().status.code();
    case(
        "gate-tests: the test command exits, a background child left",
        "exit 0, left running: 0",
        format!("exit {}, left running: {}", code.unwrap_or(-1), running("sleep 3031")),
    );

    // deploy-staging killed (-9) while its build runs; the rerun must not fight the old build.
    let p = Project::new();
    let marker = p.state.parent().expect("tmp").join("built-once");
    p.edit_config(|c| {
        c.replace(
            r#"command = "true""#,
            &format!(
                r#"command = "if [ -e '{}' ]; then true; else touch '{}'; sleep 3041; fi""#,
                marker.display(),
                marker.display()
            ),
        )
    });
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("deploy-staging"))
        .args(["--version", "v1"])
        .current_dir(&p.app)
        .env("PATH", crate::support::tools_path())
        .env("SAFEDEPLOY_STATE_DIR", &p.state)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let building = until(|| running("sleep 3041") > 0);
    child.kill().expect("kill -9");
    child.wait().expect("wait");
    let left_after_kill = running("sleep 3041");
    let a = p.cmd("deploy-staging").args(["--version", "v1"]).assert();
    let (code, _, _, err) = describe(&a);
    case(
        "deploy-staging: killed (-9) during its build, then run again",
        "left after the kill: true, rerun exit 0, said: true, left running: 0, staging serves v1: true",
        format!(
            "left after the kill: {}, rerun exit {}, said: {}, left running: {}, staging serves v1: {}",
            building && left_after_kill > 0,
            code.unwrap_or(-1),
            err.contains("stopped the build of v1 a stopped run left running"),
            running("sleep 3041"),
            p.served_version("staging").as_deref() == Some("v1")
        ),
    );

    // nginx's master killed (-9): its worker keeps the port.
    let p = Project::new();
    p.v1_everywhere();
    let master = p.nginx_pid("production").expect("nginx");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(master), nix::sys::signal::Signal::SIGKILL).expect("kill");
    until(|| !crate::support::process_running(master));
    let a = p.cmd("rollback").assert();
    let (code, _, _, err) = describe(&a);
    case(
        "nginx's master killed (-9), its worker holding the port; then rollback",
        "exit 0, the orphan ended: true, production serves v1: true, strays: 0",
        format!(
            "exit {}, the orphan ended: {}, production serves v1: {}, strays: {}",
            code.unwrap_or(-1),
            err.contains("a worker left holding port"),
            p.served_version("production").as_deref() == Some("v1"),
            p.stray_processes().len()
        ),
    );
    // The supervisor killed (-9) alone: the app runs on in its group.
    let supervisor = p.env_pid("production").expect("supervisor");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(supervisor), nix::sys::signal::Signal::SIGKILL).expect("kill");
    until(|| !crate::support::process_running(supervisor));
    let orphaned = crate::support::group_alive(supervisor);
    let a = p.cmd("rollback").assert();
    let code = a.get_output().status.code();
    case(
        "the supervisor killed (-9), its app running on; then rollback",
        "app left running: true, exit 0, old group ended: true, production serves v1: true, strays: 0",
        format!(
            "app left running: {orphaned}, exit {}, old group ended: {}, production serves v1: {}, strays: {}",
            code.unwrap_or(-1),
            !crate::support::group_alive(supervisor),
            p.served_version("production").as_deref() == Some("v1"),
            p.stray_processes().len()
        ),
    );
    finish("leftovers", cases);
}

#[test]
fn a_ledger_removed_or_replaced_under_a_run_is_exit_3_never_a_silent_success() {
    let mut cases = vec![];
    for how in ["removed", "replaced"] {
        let p = Project::new();
        p.v1_everywhere();
        p.commit_incident();
        p.cmd("deploy-staging").args(["--version", "v2"]).assert().success();
        let ledger = p.state.join("ledger.sqlite3");
        // Paused before its first write (closing what a stopped run left open), after its
        // ledger is open and the lock held.
        let meet = p.state.parent().expect("tmp").join(format!("meet-{how}"));
        std::fs::create_dir_all(&meet).expect("dir");
        let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("promote"))
            .args(["--version", "v2", "--skip-pre-traffic", "forced", "--force", "--reason", "hostile"])
            .current_dir(&p.app)
            .env("PATH", crate::support::tools_path())
            .env("SAFEDEPLOY_STATE_DIR", &p.state)
            .env("SAFEDEPLOY_FAILPOINT", "1:wait")
            .env("SAFEDEPLOY_FAILPOINT_WAIT", &meet)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        assert!(until(|| meet.join("paused").exists()), "promote paused");
        match how {
            "removed" => std::fs::remove_file(&ledger).expect("rm"),
            _ => {
                std::fs::copy(&ledger, ledger.with_extension("copy")).expect("copy");
                std::fs::rename(ledger.with_extension("copy"), &ledger).expect("replace");
            }
        }
        std::fs::write(meet.join("resume"), "").expect("resume");
        let out = child.wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr);
        cases.push(Case {
            case: format!("the ledger {how} while promote holds the lock"),
            expected: "exit 3, said: true",
            observed: format!(
                "exit {}, said: {}",
                out.status.code().unwrap_or(-1),
                err.contains("was removed or replaced while this run had it open")
            ),
        });
    }
    finish("ledger-vanishes", cases);
}

#[test]
fn each_failure_has_the_exit_code_its_kind_says() {
    let mut cases = vec![];
    let mut case = |case: &str, expected: &'static str, a: &assert_cmd::assert::Assert, needle: &str| {
        let (code, errors, _, err) = describe(a);
        cases.push(Case {
            case: case.into(),
            expected,
            observed: format!("exit {}, {errors} error line, said: {}", code.unwrap_or(-1), err.contains(needle)),
        });
    };
    // A build that fails is a verdict on the version; one that times out is not.
    let p = Project::new();
    p.edit_config(|c| c.replace(r#"command = "true""#, r#"command = "echo no such package >&2; exit 7""#));
    case(
        "a build that fails",
        "exit 1, 1 error line, said: true",
        &p.cmd("deploy-staging").args(["--version", "v1"]).assert(),
        "version v1 failed to build",
    );
    let p = Project::new();
    p.edit_config(|c| {
        c.replace(r#"command = "true""#, r#"command = "sleep 3061""#).replace("timeout = \"5m\"", "timeout = \"1s\"")
    });
    case(
        "a build that times out",
        "exit 3, 1 error line, said: true",
        &p.cmd("deploy-staging").args(["--version", "v1"]).assert(),
        "timed out after 1s",
    );
    // A restore that fails after a verdict must never read as "restored" (exit 1 is what
    // Jenkins' post { failure } rollback takes for the verdict it handles).
    let p = Project::new();
    // No warm v1 to switch back to: the restore must start v1 from its (broken) files.
    p.edit_config(|c| c.replace("stop_grace = \"3s\"", "stop_grace = \"3s\"\nkeep_previous = \"0s\""));
    p.v2_failing_in_production();
    let broken = p.state.join("local/versions/v1/application.py");
    std::fs::write(&broken, "raise SystemExit('v1 is broken on this host')\n").expect("break v1");
    case(
        "rollback whose restore fails to start",
        "exit 3, 1 error line, said: true",
        &p.cmd("rollback").assert(),
        "restoring v1 in production failed; the incident stays open",
    );
    cases.push(Case {
        case: "… and its incident".into(),
        expected: "open: 1",
        observed: format!("open: {}", p.query_i64("SELECT COUNT(*) FROM incidents WHERE restored_at IS NULL")),
    });
    finish("exit-codes", cases);
}

/// Runs `bin` as the user `nobody` (group `nogroup`), as a second user of the machine would.
fn as_nobody(p: &Project, bin: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(assert_cmd::cargo::cargo_bin(bin))
        .args(args)
        .current_dir(&p.app)
        .env_clear()
        .env("PATH", crate::support::tools_path())
        .env("HOME", "/nonexistent")
        .env("SAFEDEPLOY_STATE_DIR", &p.state)
        .output()
        .expect("setpriv")
}

fn mode_of(p: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(p).map(|m| format!("{:03o}", m.mode() & 0o777)).unwrap_or_else(|_| "absent".into())
}

/// A state dir another user owns or can write, and what such a user can plant there: refused
/// before anything is written, and nothing of the deployer's is touched. The second user is a
/// real one (`nobody`, through setpriv), so these cases need root; CI runs as root.
#[test]
fn a_state_dir_another_user_owns_or_can_write_is_refused_and_plants_nothing() {
    use std::os::unix::fs::{PermissionsExt, symlink};
    if !nix::unistd::geteuid().is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root: the second-user cases must run there");
        eprintln!("skipped: the second-user cases need root (setpriv to nobody)");
        return;
    }
    let chmod = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod");
    let chown = |p: &Path, who: &str| {
        assert!(std::process::Command::new("chown").args(["-R", who]).arg(p).status().expect("chown").success())
    };
    let mut cases = vec![];
    let p = Project::new();
    // The checkout and its parent are readable by others, as a Jenkins workspace is.
    chmod(p.app.parent().expect("tmp"), 0o755);
    // The deployer's own file, which a planted symlink points at.
    let precious = p.app.parent().expect("tmp").join("deployer-precious.txt");
    std::fs::write(&precious, "the deployer's data").expect("write");
    let deploy = |p: &Project| describe(&p.cmd("deploy-staging").args(["--version", "v1"]).assert());
    let refused = |(code, _, _, err): (Option<i32>, usize, String, String), why: &str| {
        format!(
            "exit {}, says why: {}",
            code.unwrap_or(-1),
            err.contains(why) && err.contains(&*p.state.to_string_lossy())
        )
    };

    // 1. Another user owns the state dir.
    std::fs::create_dir_all(&p.state).expect("mkdir");
    chown(&p.state, "nobody:nogroup");
    let before = snapshot(&p.state);
    cases.push(Case {
        case: "the state dir belongs to another user".into(),
        expected: "exit 2, says why: true; nothing written: true",
        observed: format!(
            "{}; nothing written: {}",
            refused(deploy(&p), "owned by nobody"),
            snapshot(&p.state) == before
        ),
    });
    chown(&p.state, "root:root");

    // 2. Every user may write to it, and one has planted the lock as a symlink to the
    //    deployer's file.
    chmod(&p.state, 0o777);
    let planted = as_nobody_shell(&p, &format!("mkdir -p locks && ln -s {} locks/staging.lock", precious.display()));
    assert!(planted, "nobody planted the symlink");
    cases.push(Case {
        case: "a state dir every user may write, with the lock planted as a symlink by another user".into(),
        expected: "exit 2, says why: true; the deployer's file intact: true",
        observed: format!(
            "{}; the deployer's file intact: {}",
            refused(deploy(&p), "can be written by every user"),
            std::fs::read_to_string(&precious).expect("read") == "the deployer's data"
        ),
    });

    // 2b. A dry run meets what the real run would: refused, not a plan.
    cases.push(Case {
        case: "a dry run on a state dir every user may write".into(),
        expected: "exit 2, says why: true",
        observed: refused(
            describe(&p.cmd("deploy-staging").args(["--version", "v1", "--dry-run"]).assert()),
            "can be written by every user",
        ),
    });

    // 3. The same plant left behind after the dir was closed again: the lock itself is refused.
    chmod(&p.state, 0o755);
    cases.push(Case {
        case: "the planted lock, the state dir closed again".into(),
        expected: "exit 2, says why: true; the deployer's file intact: true",
        observed: format!(
            "{}; the deployer's file intact: {}",
            refused(deploy(&p), "owned by nobody"),
            std::fs::read_to_string(&precious).expect("read") == "the deployer's data"
        ),
    });
    std::fs::remove_dir_all(p.state.join("locks")).expect("rm locks");

    // 4. The locks dir itself a symlink of another user's.
    symlink(p.app.parent().expect("tmp"), p.state.join("locks")).expect("symlink");
    cases.push(Case {
        case: "the locks dir is a symlink".into(),
        expected: "exit 2, says why: true",
        observed: refused(deploy(&p), "is a symlink"),
    });
    std::fs::remove_file(p.state.join("locks")).expect("rm link");

    // 5. A clean deploy: what it creates is closed to others; a group member may read.
    std::fs::write(p.state.join("ledger.sqlite3"), "").expect("old ledger");
    chmod(&p.state.join("ledger.sqlite3"), 0o644);
    let (code, ..) = deploy(&p);
    cases.push(Case {
        case: "modes after a deploy (state dir 755 and ledger 644 before)".into(),
        expected: "exit 0: state dir 750, ledger 640, locks 750, lock 600",
        observed: format!(
            "exit {}: state dir {}, ledger {}, locks {}, lock {}",
            code.unwrap_or(-1),
            mode_of(&p.state),
            mode_of(&p.state.join("ledger.sqlite3")),
            mode_of(&p.state.join("locks")),
            mode_of(&p.state.join("locks/staging.lock"))
        ),
    });

    // 5b. What talks to users (nginx's workers) does not run as root.
    let workers: Vec<u32> = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cwd = std::fs::read_link(e.path().join("cwd")).unwrap_or_default();
            String::from_utf8_lossy(&cmd).starts_with("nginx: worker") && cwd.starts_with(&p.state)
        })
        .filter_map(|e| {
            use std::os::unix::fs::MetadataExt;
            e.metadata().ok().map(|m| m.uid())
        })
        .collect();
    cases.push(Case {
        case: "nginx's workers when deploying as root".into(),
        expected: "running: true, as root: false",
        observed: format!("running: {}, as root: {}", !workers.is_empty(), workers.contains(&0)),
    });

    // 6. Another user cannot take the lock (shared or not) to block a rollback.
    let blocked = as_nobody_shell(&p, "flock -s -n locks/staging.lock true");
    cases.push(Case {
        case: "another user takes a shared flock on the lock".into(),
        expected: "could take it: false",
        observed: format!("could take it: {blocked}"),
    });

    // 7. A real holder, while the file still names a promote that finished long ago: the
    //    message names the process that holds it.
    std::fs::write(p.state.join("locks/staging.lock"), "pid 999999 (promote, old-build) since 2026-01-01T00:00:00Z")
        .expect("write");
    use std::os::unix::process::CommandExt;
    let mut holder = std::process::Command::new("flock");
    holder
        .arg("-x")
        .arg(p.state.join("locks/staging.lock"))
        .args(["sleep", "60"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut holder = holder.process_group(0).spawn().expect("flock");
    let lock = p.state.join("locks/staging.lock");
    assert!(until(|| std::fs::read_to_string("/proc/locks").is_ok_and(|t| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&lock).is_ok_and(|m| t.contains(&format!(":{} ", m.ino())))
    })));
    let (code, _, _, err) = deploy(&p);
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(holder.id() as i32), nix::sys::signal::Signal::SIGKILL);
    let _ = holder.wait();
    cases.push(Case {
        case: "the lock held by a process while its file names a finished promote".into(),
        expected: "exit 3, names the holder: true, names the old promote as holder: false",
        observed: format!(
            "exit {}, names the holder: {}, names the old promote as holder: {}",
            code.unwrap_or(-1),
            err.contains(&format!("pid {}", holder.id())) && err.contains("flock"),
            err.contains("locked by pid 999999")
        ),
    });

    // 8. A teammate in the deployer's group may read: status, history and report run and
    //    create nothing.
    chown(&p.state, "root:nogroup");
    let before = snapshot(&p.state);
    let status = as_nobody(&p, "safedeploy", &["status"]);
    let history = as_nobody(&p, "safedeploy", &["history"]);
    // The running app and its proxy write their logs meanwhile; nothing else may change.
    let quiet = |s: BTreeMap<String, (u64, std::time::SystemTime)>| {
        s.into_iter().filter(|(k, _)| !k.ends_with(".log")).collect::<BTreeMap<_, _>>()
    };
    cases.push(Case {
        case: "status and history by a user of the state dir's group".into(),
        expected: "exit 0 and 0, shows v1: true, nothing written: true",
        observed: format!(
            "exit {} and {}, shows v1: {}, nothing written: {}",
            status.status.code().unwrap_or(-1),
            history.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&status.stdout).contains("staging: v1"),
            quiet(snapshot(&p.state)) == quiet(before)
        ),
    });
    finish("state-dir", cases);
}

/// Runs a shell line as `nobody` in the state dir; whether it succeeded.
fn as_nobody_shell(p: &Project, line: &str) -> bool {
    std::process::Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", "sh", "-c", line])
        .current_dir(&p.state)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("setpriv")
        .success()
}

/// A platform record that is not what the platform wrote (empty, truncated, another shape, a
/// FIFO, a directory, a symlink) stops the next deploy before it changes anything: exit 3
/// naming the file, and the environment still serves what it served.
#[test]
fn a_damaged_platform_record_is_could_not_act_naming_it_and_changes_nothing() {
    let p = Project::new();
    p.cmd("deploy-staging").args(["--version", "v1"]).assert().success();
    let env = p.state.join("local/envs/staging");
    for file in ["starting.json", "retiring.json", "canary.json", "state.json"] {
        for (what, damage) in [("empty", ""), ("truncated", "{\"label\": \"v1\", \"pi"), ("another shape", "[1, 2]")] {
            std::fs::write(env.join(file), damage).expect("damage");
            let a = p.cmd("deploy-staging").args(["--version", "v1-again"]).assert().code(3);
            let (_, err) = output(&a);
            // (The test's random temp dir is secret-shaped, so the path is masked here.)
            assert!(err.contains(".json (delete it if the environment is stopped)"), "{file} {what}: {err}");
            std::fs::remove_file(env.join(file)).expect("undo");
            if file == "state.json" {
                // Its record gone, the version still serves: what users meet is untouched.
                assert_eq!(p.served_version("staging").as_deref(), Some("v1"), "{file} {what}");
                p.cmd("deploy-staging").args(["--version", "v1"]).assert().success();
            }
            assert_eq!(p.served_version("staging").as_deref(), Some("v1"), "{file} {what}");
        }
    }
    // A FIFO in a record's place is not read (it would block): it is not a regular file.
    nix::unistd::mkfifo(&env.join("canary.json"), nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("fifo");
    let a =
        p.cmd("deploy-staging").args(["--version", "v1-again"]).timeout(std::time::Duration::from_secs(60)).assert();
    let (_, err) = output(&a);
    assert_eq!(a.get_output().status.code(), Some(3), "a FIFO: {err}");
    assert_eq!(p.served_version("staging").as_deref(), Some("v1"));
    // Nor a directory, nor a symlink (to a record that would read well): neither is the
    // platform's own file.
    std::fs::remove_file(env.join("canary.json")).expect("undo");
    std::fs::create_dir(env.join("canary.json")).expect("dir");
    let a = p.cmd("deploy-staging").args(["--version", "v1-again"]).assert().code(3);
    assert!(output(&a).1.contains(".json is not a regular file"), "a directory: {}", output(&a).1);
    std::fs::remove_dir(env.join("canary.json")).expect("undo");
    std::os::unix::fs::symlink(env.join("state.json"), env.join("canary.json")).expect("symlink");
    let a = p.cmd("deploy-staging").args(["--version", "v1-again"]).assert().code(3);
    assert!(output(&a).1.contains(".json is a symlink, not a regular file"), "a symlink: {}", output(&a).1);
    assert_eq!(p.served_version("staging").as_deref(), Some("v1"));
}
