//! gate-tests: the code must come with tests that pass. Runs the test command (output streamed
//! to the console), requires a JUnit report written by *this* run (any earlier one is removed
//! first), and fails on failures or errors, on fewer executed tests than the minimum, and on a
//! non-zero runner exit even when the report looks green.

use crate::context::Ctx;
use crate::exec::Cmd;
use crate::{Outcome, usage};
use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct JunitSummary {
    pub tests: u64,
    pub failures: u64,
    pub errors: u64,
    pub skipped: u64,
    /// `classname.name: message` of each failed or erroring test.
    pub failed: Vec<String>,
}

impl JunitSummary {
    pub fn executed(&self) -> u64 {
        self.tests - self.skipped
    }
}

/// Counts the `<testcase>` elements of a JUnit XML report, wherever they are nested
/// (`<testsuites>` in `<testsuites>`), so suite-level attributes cannot disagree with the cases.
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
        let bad = child("failure").map(|n| (true, n)).or_else(|| child("error").map(|n| (false, n)));
        if let Some((is_failure, node)) = bad {
            if is_failure {
                s.failures += 1
            } else {
                s.errors += 1
            }
            let message = node.attribute("message").map(str::to_string).unwrap_or_else(|| {
                node.text()
                    .unwrap_or_default()
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            });
            let class = case.attribute("classname").unwrap_or_default();
            let name = case.attribute("name").unwrap_or("?");
            let id = if class.is_empty() { name.to_string() } else { format!("{class}.{name}") };
            s.failed.push(format!("{id}: {}", message.chars().take(300).collect::<String>()));
        } else if child("skipped").is_some() {
            s.skipped += 1;
        }
    }
    Ok(s)
}

pub fn gate_tests(ctx: &Ctx, argv_override: &[String]) -> Result<Outcome> {
    let Some(gate) = &ctx.config.gate else {
        return Err(usage!("{}: no [gate] section: expected gate.command and gate.junit", ctx.config.path.display()));
    };
    let argv: Vec<String> = if argv_override.is_empty() { gate.command.clone() } else { argv_override.to_vec() };
    let dir: PathBuf = gate.dir.as_ref().map(|d| ctx.config.dir.join(d)).unwrap_or_else(|| ctx.config.source_dir());
    let report = dir.join(&gate.junit);

    if report.exists() {
        ctx.exec.effect(
            || format!("remove the earlier report {}", report.display()),
            || std::fs::remove_file(&report).with_context(|| format!("removing stale report {}", report.display())),
        )?;
    }
    let started = SystemTime::now();
    ctx.ui.status(format!("gate: running {}", Cmd::new(argv.clone()).display()));
    let cmd = Cmd::new(argv.clone()).dir(&dir).timeout(gate.timeout.0);
    let Some(status) = ctx.exec.run_streamed(&cmd)? else {
        return Ok(Outcome::ok(json!({"dry_run": true, "command": argv})));
    };
    let code = status.code();

    let mut problems = vec![];
    let summary = match std::fs::metadata(&report) {
        Err(_) => {
            problems.push(format!("the test command wrote no JUnit report at {}", report.display()));
            None
        }
        Ok(meta) if meta.modified().is_ok_and(|m| m < started) => {
            problems.push(format!("{} is older than this run (a stale report)", report.display()));
            None
        }
        Ok(_) => {
            let text = std::fs::read_to_string(&report).with_context(|| format!("reading {}", report.display()))?;
            Some(parse_junit(&text, &report)?)
        }
    };
    if let Some(s) = &summary {
        for f in &s.failed {
            ctx.ui.check(false, f);
        }
        if s.failures + s.errors > 0 {
            problems.push(format!("{} failed, {} errored of {} tests", s.failures, s.errors, s.tests));
        }
        if s.executed() < gate.min_tests {
            problems.push(if s.tests > 0 && s.executed() == 0 {
                format!("all {} tests were skipped", s.tests)
            } else {
                format!("{} tests executed (at least {} required)", s.executed(), gate.min_tests)
            });
        }
    }
    if !status.success() {
        let hint = match code {
            Some(5) => " (pytest: no tests collected)",
            Some(4) if argv.iter().any(|a| a.contains("nextest")) => " (nextest: no tests to run)",
            _ => "",
        };
        problems.push(format!("the test command exited with {}{hint}", crate::exec::describe(&status)));
    }
    let passed = problems.is_empty();
    let out = json!({
        "passed": passed, "command": argv, "exit_code": code, "report": report,
        "tests": summary.as_ref().map(|s| s.tests), "failures": summary.as_ref().map(|s| s.failures),
        "errors": summary.as_ref().map(|s| s.errors), "skipped": summary.as_ref().map(|s| s.skipped),
        "failed": summary.as_ref().map(|s| &s.failed), "problems": problems,
    });
    if passed {
        let s = summary.unwrap_or_default();
        ctx.ui.result(format!("gate: passed — {} tests executed, {} skipped", s.executed(), s.skipped));
        Ok(Outcome::ok(out))
    } else {
        Ok(Outcome::verdict(out, format!("gate failed: {}", problems.join("; "))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_nested_cases() {
        let xml = r#"<testsuites><testsuites><testsuite name="a">
            <testcase classname="t" name="ok"/>
            <testcase classname="t" name="bad"><failure message="assert 1 == 2">trace</failure></testcase>
            <testcase name="err"><error>boom
            TypeError: x</error></testcase>
            <testcase name="skip"><skipped/></testcase>
        </testsuite></testsuites></testsuites>"#;
        let s = parse_junit(xml, Path::new("r.xml")).expect("parses");
        assert_eq!((s.tests, s.failures, s.errors, s.skipped, s.executed()), (4, 1, 1, 1, 3));
        assert_eq!(s.failed, vec!["t.bad: assert 1 == 2".to_string(), "err: TypeError: x".to_string()]);
    }

    #[test]
    fn malformed_is_usage_error() {
        let e = parse_junit("<testsuite><testcase>", Path::new("r.xml")).expect_err("invalid");
        assert!(e.to_string().starts_with("r.xml: not a valid JUnit XML report"), "{e}");
        let e = parse_junit("<html/>", Path::new("r.xml")).expect_err("not junit");
        assert!(e.to_string().contains("root element is <html>"), "{e}");
    }
}
