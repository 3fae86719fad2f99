//! gate-tests against real pytest runs in scratch repositories.

use crate::support::{Project, Transcript, output};
use predicates::prelude::*;

#[test]
fn a_green_suite_passes_with_its_counts() {
    let p = Project::new();
    let a = p
        .cmd("gate-tests")
        .arg("--json")
        .assert()
        .success()
        .stderr(predicate::str::contains("gate: passed — 9 tests executed, 0 skipped"));
    let doc = gate_json(&a);
    assert_eq!((doc["tests"].as_u64(), doc["failures"].as_u64(), doc["ok"].as_bool()), (Some(9), Some(0), Some(true)));
}

#[test]
fn the_incident_change_fails_the_gate_naming_the_tests_and_the_error() {
    let p = Project::new();
    p.commit_incident();
    let a = p.cmd("gate-tests").assert().code(1);
    let (_, err) = output(&a);
    // The base is HEAD (the project commits on main): warned of, and no "changes since" after.
    assert!(err.contains("the base is HEAD itself") && !err.contains("gate: changes since"), "{err}");
    assert!(
        err.contains("         tests.test_application.test_shorten_then_follow_redirects_to_the_url: TypeError"),
        "{err}"
    );
    assert!(
        err.contains(
            "gate-tests: error: gate failed: tests: 5 failed, 0 errored of 9 tests; the test command exited with exit status 1"
        ),
        "{err}"
    );
    let mut t = Transcript::default();
    t.step(&p, "gate-tests", &a);
    insta::assert_snapshot!("the_incident_change_at_the_gate", t.text());
}

#[test]
fn zero_collected_tests_fail_even_though_a_report_was_written() {
    let p = Project::new();
    let a = p
        .cmd("gate-tests")
        .args(["--", &python(), "-m", "pytest", "-q", "-k", "no_such_test", "--junitxml=reports/junit.xml"])
        .assert()
        .code(1);
    let (_, err) = output(&a);
    assert!(err.contains("0 tests executed (at least 1 required)"), "{err}");
    assert!(err.contains("exit status 5 (pytest: no tests collected)"), "{err}");
}

#[test]
fn all_skipped_fails() {
    let p = Project::new();
    p.write("conftest.py", "import pytest\ndef pytest_collection_modifyitems(items):\n    for i in items:\n        i.add_marker(pytest.mark.skip(reason='x'))\n");
    p.cmd("gate-tests").assert().code(1).stderr(predicate::str::contains("all 9 tests were skipped"));
}

#[test]
fn a_stale_report_is_ignored_never_removed_and_a_missing_one_fails() {
    let p = Project::new();
    // An earlier green report lies around, written just now; this run's command writes none.
    let old = r#"<testsuite tests="1"><testcase name="old"/></testsuite>"#;
    p.write("reports/junit.xml", old);
    p.cmd("gate-tests")
        .args(["--", "true"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("the test command wrote no JUnit report at"));
    let left = std::fs::read_to_string(p.app.join("reports/junit.xml")).expect("the earlier report is still there");
    assert_eq!(left, old, "the gate deletes and changes nothing it did not write");
    assert!(
        std::fs::read_dir(&p.app)
            .expect("dir")
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().starts_with(".safedeploy-gate")),
        "the gate's start marker is gone"
    );
}

#[test]
fn a_malformed_report_is_exit_2_naming_the_file() {
    let p = Project::new();
    p.cmd("gate-tests")
        .args(["--", "sh", "-c", "mkdir -p reports && printf '<testsuite><testcase' > reports/junit.xml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("reports/junit.xml: not a valid JUnit XML report"));
}

#[test]
fn a_failing_runner_fails_even_with_a_green_report() {
    let p = Project::new();
    p.cmd("gate-tests")
        .args([
            "--",
            "sh",
            "-c",
            "mkdir -p reports && echo '<testsuite><testcase name=\"a\"/></testsuite>' > reports/junit.xml && exit 3",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("the test command exited with exit status 3"));
}

/// The example's test command, with the test selection narrowed by `-k` (the seed's suite was
/// one test of an unrelated helper).
fn thin_suite(k: &str) -> Vec<String> {
    [
        python().as_str(),
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-k",
        k,
        "--junitxml=reports/junit.xml",
        "--cov=.",
        "--cov-report=xml:reports/coverage.xml",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn gate_json(a: &assert_cmd::assert::Assert) -> serde_json::Value {
    serde_json::from_str(&output(a).0).expect("--json document")
}

#[test]
fn the_seeds_thin_suite_passes_but_the_change_policy_and_diff_coverage_stop_v2() {
    let p = Project::new();
    p.commit_incident();
    let a = p
        .cmd("gate-tests")
        .args(["--base", "HEAD~1", "--json", "--junit-out", "reports/gate.xml", "--"])
        .args(thin_suite("make_code"))
        .assert()
        .code(1);
    let doc = gate_json(&a);
    let (_, err) = output(&a);
    assert_eq!(doc["tests"], 1);
    assert_eq!(doc["checks"][0]["status"], "passed");
    assert_eq!(doc["checks"][1]["status"], "failed");
    assert_eq!(doc["checks"][1]["details"], serde_json::json!(["application.py"]));
    assert_eq!(doc["checks"][2]["status"], "failed");
    assert_eq!(doc["checks"][2]["details"], serde_json::json!(["application.py:67: return json.loads(urls_file)"]));
    assert!(err.contains("diff coverage: 0.0 % of 1 measured changed lines covered, below the minimum 80 %"), "{err}");
    assert_eq!(doc["checks"][3]["name"], "migrations");
    assert_eq!(doc["checks"][3]["status"], "passed", "no migration in the change");
    let junit = std::fs::read_to_string(p.app.join("reports/gate.xml")).expect("gate junit");
    assert!(
        junit.contains(r#"<testsuite name="safedeploy gate" tests="4" skipped="0" errors="0" failures="2">"#),
        "{junit}"
    );
    assert!(junit.contains("application.py:67: return json.loads(urls_file)"), "{junit}");
}

#[test]
fn a_change_with_a_covering_test_passes_above_the_threshold() {
    let p = Project::new();
    let app = std::fs::read_to_string(p.app.join("application.py")).expect("app");
    p.write(
        "application.py",
        &app.replace("def valid_url(url):", "def is_short(code):\n    return len(code) <= 8\n\n\ndef valid_url(url):"),
    );
    p.write(
        "tests/test_short.py",
        "import application\n\n\ndef test_is_short():\n    assert application.is_short(\"abc\")\n",
    );
    p.commit_all("Add is_short with its test", "Team");
    let a = p.cmd("gate-tests").args(["--base", "HEAD~1", "--json"]).assert().success();
    let doc = gate_json(&a);
    assert_eq!(doc["checks"][1]["summary"], "1 source file(s) changed, with 1 test file(s)");
    assert_eq!(doc["checks"][2]["summary"], "100.0 % of 2 measured changed lines covered (minimum 80 %)");
}

#[test]
fn no_measured_changed_lines_is_said_as_such_not_as_full_coverage() {
    let p = Project::new();
    let app = std::fs::read_to_string(p.app.join("application.py")).expect("app");
    p.write(
        "application.py",
        &app.replace("def make_code(length=6):", "# Codes are short on purpose.\ndef make_code(length=6):"),
    );
    p.write("tests/test_note.py", "def test_note():\n    assert True\n");
    p.commit_all("A comment", "Team");
    let a = p.cmd("gate-tests").args(["--base", "HEAD~1", "--json"]).assert().success();
    assert_eq!(gate_json(&a)["checks"][2]["summary"], "no measured changed lines");
}

#[test]
fn an_opt_out_needs_a_reason_and_is_recorded() {
    let p = Project::new();
    p.commit_incident();
    let a = p
        .cmd("gate-tests")
        .args(["--base", "HEAD~1", "--json", "--allow-untested", "hotfix, tests follow in #12", "--"])
        .args(thin_suite("make_code"))
        .assert()
        .success();
    let doc = gate_json(&a);
    assert_eq!(doc["checks"][1]["status"], "waived");
    assert!(doc["checks"][2]["summary"].as_str().expect("s").ends_with("— waived: hotfix, tests follow in #12"));
    assert_eq!(
        p.query_strings("SELECT checks || ' / ' || reason FROM gate_waivers"),
        vec!["change policy, diff coverage / hotfix, tests follow in #12"]
    );
    // The tests themselves can never be waived.
    p.cmd("gate-tests")
        .args(["--base", "HEAD~1", "--allow-untested", "x"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("FAIL tests: 5 failed"));
}

#[test]
fn an_opt_out_can_come_as_a_commit_trailer() {
    let p = Project::new();
    let app = std::fs::read_to_string(p.app.join("application.py")).expect("app");
    p.write("application.py", &app.replace("MAX_URL = 2048", "MAX_URL = 4096"));
    p.git(&["add", "-A"]);
    p.git(&[
        "-c",
        "user.name=Team",
        "commit",
        "-qm",
        "Allow longer URLs\n\nUntested-Because: config constant, covered by existing tests",
    ]);
    let a = p.cmd("gate-tests").args(["--base", "HEAD~1", "--json"]).assert().success();
    let doc = gate_json(&a);
    assert_eq!(doc["waiver"], "config constant, covered by existing tests");
    assert_eq!(doc["checks"][1]["status"], "waived");
}

#[test]
fn a_base_missing_from_a_shallow_clone_is_exit_2_before_anything_runs() {
    let p = Project::new();
    p.commit_incident();
    p.cmd("gate-tests")
        .args(["--base", "no-such-rev"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("base \"no-such-rev\" (from --base) is not a commit in this clone"));
    // A shallow clone of the same history: HEAD~1 is not there.
    let shallow = p.app.parent().expect("parent").join("shallow");
    let out = std::process::Command::new("git")
        .args(["clone", "-q", "--depth", "1"])
        .arg(format!("file://{}", p.app.display()))
        .arg(&shallow)
        .output()
        .expect("clone");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::copy(p.config_path(), shallow.join("safedeploy.toml")).expect("config");
    let mut c = assert_cmd::Command::cargo_bin("gate-tests").expect("bin");
    c.current_dir(&shallow)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SAFEDEPLOY_STATE_DIR", &p.state);
    c.env("GIT_PREVIOUS_SUCCESSFUL_COMMIT", p.git(&["rev-parse", "HEAD~1"]));
    c.assert()
        .code(2)
        .stderr(predicate::str::contains("(from GIT_PREVIOUS_SUCCESSFUL_COMMIT) is not a commit in this clone"))
        .stderr(predicate::str::contains("hint: a shallow clone lacks history"));
    assert!(!shallow.join("reports").exists(), "the tests did not run");
}

#[test]
fn renames_deletions_binaries_and_paths_with_spaces() {
    let p = Project::new();
    p.write("static/logo.png", "\u{0}\u{1}binary\u{0}");
    p.write("lib utils.py", "def shout(s):\n    return s.upper()\n");
    p.commit_all("Assets and a helper", "Team");
    std::fs::remove_file(p.app.join("static/logo.png")).expect("rm");
    p.write("static/logo.png", "\u{0}\u{2}other\u{0}");
    p.git(&["mv", "lib utils.py", "text utils.py"]);
    let app = std::fs::read_to_string(p.app.join("application.py")).expect("app");
    p.write("application.py", &app.replace("MAX_URL = 2048", "MAX_URL = 2000"));
    p.write("tests/test_text.py", "import importlib.util, pathlib\n\n\ndef test_shout():\n    spec = importlib.util.spec_from_file_location('t', pathlib.Path(__file__).parent.parent / 'text utils.py')\n    m = importlib.util.module_from_spec(spec)\n    spec.loader.exec_module(m)\n    assert m.shout('a') == 'A'\n");
    p.commit_all("Rename the helper, change a constant, swap the logo", "Team");
    let a = p.cmd("gate-tests").args(["--base", "HEAD~1", "--json"]).assert().success();
    let doc = gate_json(&a);
    // The pure rename and the binary need no test; application.py did, and got one.
    assert_eq!(doc["checks"][1]["summary"], "1 source file(s) changed, with 1 test file(s)");
    assert_eq!(doc["checks"][2]["status"], "passed", "{doc:#}");
}

#[test]
fn a_truncated_coverage_report_is_exit_2_and_a_stale_one_is_ignored() {
    let p = Project::new();
    p.commit_incident();
    p.cmd("gate-tests")
        .args(["--base", "HEAD~1", "--", "sh", "-c"])
        .arg("mkdir -p reports && echo '<testsuite><testcase name=\"a\"/></testsuite>' > reports/junit.xml && printf '<coverage><packages><pack' > reports/coverage.xml")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("reports/coverage.xml: not a valid Cobertura XML report"));
    // A coverage report from an earlier run is ignored; a run that writes none fails the check.
    p.write("reports/coverage.xml", r#"<coverage><packages/></coverage>"#);
    p.cmd("gate-tests")
        .args([
            "--base",
            "HEAD~1",
            "--",
            "sh",
            "-c",
            "mkdir -p reports && echo '<testsuite><testcase name=\"a\"/></testsuite>' > reports/junit.xml",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("FAIL diff coverage: the test command wrote no coverage report at"));
}

#[test]
fn the_base_defaults_to_production_last_known_good() {
    let p = Project::new();
    p.v1_everywhere();
    p.commit_incident();
    let v1 = p.git(&["rev-parse", "HEAD~1"]);
    p.cmd("gate-tests").arg("--").args(thin_suite("make_code")).assert().code(1).stderr(predicate::str::contains(
        format!("gate: changes since {} (the last known good version in production, v1)", &v1[..12]),
    ));
}

fn python() -> String {
    crate::support::venv().join("bin/python").to_string_lossy().into_owned()
}

#[test]
fn a_flat_test_file_counts_as_a_test_and_a_glob_that_misses_one_is_named() {
    let p = Project::new();
    let app = std::fs::read_to_string(p.app.join("application.py")).expect("app");
    p.write("application.py", &format!("{app}\n\ndef shout(s):\n    return s.upper()\n"));
    p.write("test_shout.py", "from application import shout\n\n\ndef test_shout():\n    assert shout('a') == 'A'\n");
    p.commit_all("A helper, with its test beside the app", "Team");
    // The change policy alone (the example's pytest.ini collects tests/ only).
    p.edit_config(|c| c.replace("min_diff_coverage = 80", ""));
    // The example's globs take a flat test_*.py as a test.
    let a = p.cmd("gate-tests").args(["--base", "HEAD~1"]).assert().success();
    assert!(
        output(&a).1.contains("2 source file(s) changed") || output(&a).1.contains("with 1 test file(s)"),
        "{}",
        output(&a).1
    );
    // Globs that miss it: the failure names the file that looks like a test, not "no test file" alone.
    p.edit_config(|c| {
        c.replace(
            r#"tests = ["tests/**", "**/test_*.py", "**/*_test.py", "**/conftest.py"]"#,
            r#"tests = ["tests/**"]"#,
        )
    });
    let a = p.cmd("gate-tests").args(["--base", "HEAD~1"]).assert().code(1);
    let (_, err) = output(&a);
    assert!(
        err.contains("2 source file(s) changed and no test file; test_shout.py look(s) like a test file but gate.tests (tests/**) does not match it"),
        "{err}"
    );
}

/// The gate creates its reports' directories before the run: node's test reporters (and other
/// runners) write into them without creating them.
#[test]
fn the_gate_creates_the_directories_of_its_reports() {
    let p = Project::new();
    let junit = r#"<testsuite name="t" tests="1"><testcase name="ok"/></testsuite>"#;
    p.write("report.sh", &format!("printf '%s' '{junit}' > out/deep/junit.xml\n"));
    p.commit_all("A runner that does not create its report's directory", "Team");
    p.edit_config(|c| {
        let command = regex::Regex::new(r"(?s)\[gate\]\ncommand = \[.*?\]\n").expect("regex");
        let line = "[gate]\ncommand = [\"sh\", \"report.sh\"]\n";
        command
            .replace(&c, regex::NoExpand(line))
            .replace(r#"junit = "reports/junit.xml""#, r#"junit = "out/deep/*.xml""#)
            .replace(r#"coverage = "reports/coverage.xml""#, r#"coverage = "cov/lcov/lcov.info""#)
            .replace("min_diff_coverage = 80", "")
    });
    assert!(!p.app.join("out").exists());
    p.cmd("gate-tests").assert().success();
    assert!(p.app.join("out/deep/junit.xml").is_file() && p.app.join("cov/lcov").is_dir());
    // A dry run says it would create them, and creates nothing.
    std::fs::remove_dir_all(p.app.join("out")).expect("rm");
    let a = p.cmd("gate-tests").arg("--dry-run").assert().success();
    let (out, err) = crate::support::output(&a);
    assert!(
        format!("{out}{err}").contains(&format!("would create {}", p.app.join("out/deep").display())),
        "{out}{err}"
    );
    assert!(!p.app.join("out").exists());

    // A report path outside the app (climbing out, absolute): the gate creates nothing there.
    let outside = p.app.parent().expect("tmp").join("outside");
    for junit in ["../outside/deep/junit.xml".to_string(), format!("{}/abs/junit.xml", outside.display())] {
        p.edit_config(|c| {
            let start = c.find("junit = ").expect("gate.junit");
            let end = start + c[start..].find('\n').expect("line");
            format!("{}junit = {junit:?}{}", &c[..start], &c[end..])
        });
        p.cmd("gate-tests").assert().code(1);
        assert!(!outside.exists(), "{junit}: created outside the app");
    }
}
