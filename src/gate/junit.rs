//! Reading JUnit XML reports as pytest (xunit1 and xunit2), cargo-nextest, jest-junit and Maven
//! surefire write them. The `<testcase>` elements are counted wherever they are nested, so
//! suite-level totals cannot disagree with the cases; a case that failed and then passed on a
//! rerun (`flakyFailure`, `rerunFailure` without a final `failure`) passes and is listed as flaky.

use crate::usage;
use anyhow::Result;
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct JunitSummary {
    pub tests: u64,
    pub failures: u64,
    pub errors: u64,
    pub skipped: u64,
    /// `classname.name: message` of each failed or erroring test.
    pub failed: Vec<String>,
    /// Tests that passed only on a rerun.
    pub flaky: Vec<String>,
}

impl JunitSummary {
    pub fn executed(&self) -> u64 {
        self.tests - self.skipped
    }

    pub fn add(&mut self, other: JunitSummary) {
        self.tests += other.tests;
        self.failures += other.failures;
        self.errors += other.errors;
        self.skipped += other.skipped;
        self.failed.extend(other.failed);
        self.flaky.extend(other.flaky);
    }
}

fn message_of(node: roxmltree::Node<'_, '_>) -> String {
    let m = node.attribute("message").map(str::to_string).unwrap_or_else(|| {
        node.text()
            .unwrap_or_default()
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default()
            .trim()
            .to_string()
    });
    m.chars().take(300).collect()
}

pub fn parse_junit(text: &str, path: &Path) -> Result<JunitSummary> {
    let doc = roxmltree::Document::parse(text)
        .map_err(|e| usage!("{}: not a valid JUnit XML report: {e}", path.display()))?;
    let root = doc.root_element().tag_name().name();
    if root != "testsuites" && root != "testsuite" {
        return Err(usage!(
            "{}: not a JUnit XML report: the root element is <{root}>, expected <testsuites> or <testsuite>",
            path.display()
        ));
    }
    let mut s = JunitSummary::default();
    for case in doc.descendants().filter(|n| n.has_tag_name("testcase")) {
        s.tests += 1;
        let child = |name: &str| case.children().find(|c| c.has_tag_name(name));
        let class = case.attribute("classname").unwrap_or_default();
        let name = case.attribute("name").unwrap_or("?");
        let id = if class.is_empty() { name.to_string() } else { format!("{class}.{name}") };
        if let Some(node) = child("failure") {
            s.failures += 1;
            s.failed.push(format!("{id}: {}", message_of(node)));
        } else if let Some(node) = child("error") {
            s.errors += 1;
            s.failed.push(format!("{id}: {}", message_of(node)));
        } else if child("skipped").is_some() {
            s.skipped += 1;
        } else if ["flakyFailure", "flakyError", "rerunFailure", "rerunError"].iter().any(|k| child(k).is_some()) {
            s.flaky.push(id);
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> JunitSummary {
        parse_junit(xml, Path::new("r.xml")).expect("parses")
    }

    #[test]
    fn counts_nested_cases() {
        let s = parse(
            r#"<testsuites><testsuites><testsuite name="a">
            <testcase classname="t" name="ok"/>
            <testcase classname="t" name="bad"><failure message="assert 1 == 2">trace</failure></testcase>
            <testcase name="err"><error>boom
            TypeError: x</error></testcase>
            <testcase name="skip"><skipped/></testcase>
        </testsuite></testsuites></testsuites>"#,
        );
        assert_eq!((s.tests, s.failures, s.errors, s.skipped, s.executed()), (4, 1, 1, 1, 3));
        assert_eq!(s.failed, vec!["t.bad: assert 1 == 2".to_string(), "err: TypeError: x".to_string()]);
    }

    #[test]
    fn pytest_xunit1_and_xunit2() {
        // xunit2 (pytest's default): <testsuites><testsuite>; xunit1 adds file/line attributes.
        let x2 = r#"<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" errors="0" failures="1" skipped="1" tests="3"><testcase classname="tests.test_app" name="test_a" time="0.001" /><testcase classname="tests.test_app" name="test_b" time="0.001"><failure message="TypeError: the JSON object must be str">tb</failure></testcase><testcase classname="tests.test_app" name="test_c"><skipped type="pytest.skip" message="later">x</skipped></testcase></testsuite></testsuites>"#;
        let x1 = x2.replace("<testcase classname", "<testcase file=\"tests/test_app.py\" line=\"3\" classname");
        for xml in [x2.to_string(), x1] {
            let s = parse(&xml);
            assert_eq!((s.tests, s.failures, s.skipped), (3, 1, 1));
            assert_eq!(s.failed, vec!["tests.test_app.test_b: TypeError: the JSON object must be str".to_string()]);
        }
    }

    #[test]
    fn nextest_flaky_and_final_failures() {
        let s = parse(
            r#"<testsuites name="nextest-run" tests="3" failures="1" errors="0"><testsuite name="app" tests="3" disabled="0" errors="0" failures="1">
            <testcase name="flaky_one" classname="app"><flakyFailure message="first try" type="test failure"/></testcase>
            <testcase name="always_bad" classname="app"><failure type="test failure">panicked</failure><rerunFailure type="test failure"/></testcase>
            <testcase name="fine" classname="app"/></testsuite></testsuites>"#,
        );
        assert_eq!((s.tests, s.failures, s.executed()), (3, 1, 3));
        assert_eq!(s.flaky, vec!["app.flaky_one".to_string()]);
        assert_eq!(s.failed, vec!["app.always_bad: panicked".to_string()]);
    }

    #[test]
    fn jest_junit_and_surefire() {
        let jest = r#"<testsuites name="jest tests" tests="2" failures="1" errors="0" time="0.5"><testsuite name="shorten" errors="0" failures="1" skipped="0" timestamp="2026-11-23T10:00:00" time="0.4" tests="2"><testcase classname="shorten redirects" name="shorten redirects" time="0.01"></testcase><testcase classname="shorten rejects" name="shorten rejects" time="0.01"><failure>Error: expected 400, got 500
    at Object.&lt;anonymous&gt; (shorten.test.js:10:5)</failure></testcase></testsuite></testsuites>"#;
        let s = parse(jest);
        assert_eq!((s.tests, s.failures), (2, 1));
        assert_eq!(
            s.failed,
            vec!["shorten rejects.shorten rejects: at Object.<anonymous> (shorten.test.js:10:5)".to_string()]
        );
        let surefire = r#"<?xml version="1.0"?><testsuite name="com.example.AppTest" tests="2" errors="1" skipped="0" failures="0"><testcase name="a" classname="com.example.AppTest"><flakyFailure message="timeout"/></testcase><testcase name="b" classname="com.example.AppTest"><error message="NullPointerException" type="java.lang.NullPointerException"/></testcase></testsuite>"#;
        let s = parse(surefire);
        assert_eq!((s.tests, s.errors), (2, 1));
        assert_eq!(s.flaky, vec!["com.example.AppTest.a".to_string()]);
    }

    #[test]
    fn malformed_is_usage_error() {
        let e = parse_junit("<testsuite><testcase>", Path::new("r.xml")).expect_err("invalid");
        assert!(e.to_string().starts_with("r.xml: not a valid JUnit XML report"), "{e}");
        let e = parse_junit("<html/>", Path::new("r.xml")).expect_err("not junit");
        assert!(e.to_string().contains("root element is <html>"), "{e}");
    }
}
