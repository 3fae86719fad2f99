//! gate-tests against real pytest runs in scratch repositories.

mod support;
use predicates::prelude::*;
use support::{Project, output};

#[test]
fn a_green_suite_passes_with_its_counts() {
    let p = Project::new();
    p.cmd("gate-tests")
        .arg("--json")
        .assert()
        .success()
        .stdout(predicate::str::contains(r#""tests": 8"#))
        .stdout(predicate::str::contains(r#""failures": 0"#))
        .stderr(predicate::str::contains("gate: passed — 8 tests executed, 0 skipped"));
}

#[test]
fn the_incident_change_fails_the_gate_naming_the_tests_and_the_error() {
    let p = Project::new();
    p.commit_incident();
    let a = p.cmd("gate-tests").assert().code(1);
    let (_, err) = output(&a);
    assert!(
        err.contains("FAIL tests.test_application.test_shorten_then_follow_redirects_to_the_url: TypeError"),
        "{err}"
    );
    assert!(
        err.contains(
            "gate-tests: error: gate failed: 5 failed, 0 errored of 8 tests; the test command exited with exit status 1"
        ),
        "{err}"
    );
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
    p.cmd("gate-tests").assert().code(1).stderr(predicate::str::contains("all 8 tests were skipped"));
}

#[test]
fn a_stale_report_is_removed_and_a_missing_one_fails() {
    let p = Project::new();
    // An earlier green report lies around; this run's command writes none.
    p.write("reports/junit.xml", r#"<testsuite tests="1"><testcase name="old"/></testsuite>"#);
    p.cmd("gate-tests")
        .args(["--", "true"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("the test command wrote no JUnit report at"));
    assert!(!p.app.join("reports/junit.xml").exists(), "the stale report was removed before the run");
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

fn python() -> String {
    support::venv().join("bin/python").to_string_lossy().into_owned()
}
