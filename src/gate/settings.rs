//! `[gate]`: the test command, its reports and the change policies.

use crate::config::locate::{Locator, Seg};
use crate::config::values::{Argv, Count, Dur, GlobPattern, Percent};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Gate {
    /// The test command as argv (no shell), run in `dir` (required).
    pub command: Option<Argv>,
    /// The JUnit XML report(s) the command writes, relative to `dir`; a glob takes several
    /// (required).
    pub junit: Option<GlobPattern>,
    /// Where the command runs, relative to the config file (default: the app's source dir).
    pub dir: Option<PathBuf>,
    pub timeout: Dur<1_000, 86_400_000>,
    /// At least 1: a gate that passes a version whose tests did not run is no gate.
    pub min_tests: Count<1, 1_000_000_000>,
    /// Change policy: source files (globs relative to `dir`) changed since the base must come
    /// with a changed test file. Empty: the policy is off.
    pub source: Vec<GlobPattern>,
    /// What counts as a test file (globs relative to `dir`).
    pub tests: Vec<GlobPattern>,
    /// Coverage report the command writes (Cobertura XML or lcov), relative to `dir`.
    pub coverage: Option<PathBuf>,
    /// Diff coverage: the percentage of measured changed lines the tests must execute.
    pub min_diff_coverage: Option<Percent>,
    /// Where schema migrations live (globs relative to `dir`); those new since the base are
    /// read and each operation classed expand or contract. Empty: the check is off.
    pub migrations: Vec<GlobPattern>,
    /// An external migration linter (argv, no shell), run with the new migration files as its
    /// last arguments (squawk for SQL, say); its failure fails the check, with its output.
    pub migration_lint: Option<Argv>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            command: None,
            junit: None,
            dir: None,
            timeout: Dur::secs(1800),
            min_tests: Count(1),
            source: vec![],
            tests: [
                "tests/**",
                "test/**",
                "**/tests/**",
                "**/test_*.py",
                "**/*_test.py",
                "**/tests.py",
                "**/test.py",
                "**/conftest.py",
                "**/*_test.go",
                "**/*.test.*",
                "**/*.spec.*",
                "src/test/**",
            ]
            .iter()
            .map(|g| GlobPattern(g.to_string()))
            .collect(),
            coverage: None,
            min_diff_coverage: None,
            migrations: super::migrations::DEFAULT_GLOBS.iter().map(|g| GlobPattern(g.to_string())).collect(),
            migration_lint: None,
        }
    }
}

impl Gate {
    /// The test command (checked to be there).
    pub fn command(&self) -> &[String] {
        self.command.as_ref().map(|a| a.0.as_slice()).unwrap_or_default()
    }
    /// The report pattern (checked to be there).
    pub fn junit(&self) -> &str {
        self.junit.as_deref().unwrap_or_default()
    }

    pub fn validate(&self, at: &Locator) -> Result<()> {
        use Seg::Key;
        if self.command.is_none() {
            return Err(at.bad(&[Key("gate")], "expected command = [\"...\"], the test command as argv"));
        }
        if self.junit.is_none() {
            return Err(at.bad(&[Key("gate")], "expected junit = \"PATH\", the JUnit report the test command writes"));
        }
        if let Some(c) = &self.coverage
            && c.as_os_str().is_empty()
        {
            return Err(at.bad(&[Key("gate"), Key("coverage")], "expected the coverage report's path"));
        }
        if self.min_diff_coverage.is_some_and(|p| p.0 == 0.0) {
            return Err(at.bad(
                &[Key("gate"), Key("min_diff_coverage")],
                "0 % passes any coverage, so the check could never fail; expected more than 0 (leave the field out to turn the check off)",
            ));
        }
        if self.min_diff_coverage.is_some() && self.coverage.is_none() {
            return Err(
                at.bad(&[Key("gate"), Key("min_diff_coverage")], "needs gate.coverage, the report the command writes")
            );
        }
        Ok(())
    }
}
