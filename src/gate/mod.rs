//! gate-tests: code must come with tests that pass. Three checks, each reported to the console,
//! in `--json` and as a test case in `--junit-out`:
//!
//! 1. **tests** — the test command runs (output streamed) and writes a fresh JUnit report (one
//!    modified after the run began: earlier reports are ignored, never removed, as the gate
//!    deletes nothing); failures, errors, fewer executed tests than `min_tests` and a non-zero
//!    runner exit all fail it. It cannot be waived.
//! 2. **change policy** — source files changed since the base must come with a changed test file.
//! 3. **diff coverage** — the changed lines the coverage report measures must be executed by the
//!    tests, at least `min_diff_coverage` percent of them.
//!
//! 4. **migrations** — each operation of a schema migration new since the base is classed
//!    expand or contract ([`migrations`]). A contract fails it, naming the file, line and
//!    operation, unless it is safe by the two-phase rule: the commit that brought it carries
//!    `Contract-After: vN`, the release that stopped using what it removes, and vN is the last
//!    known good in production. `--allow-contract REASON` (recorded) is the only other way past;
//!    `--allow-untested` does not waive it. `gate.migration_lint` adds an external linter.
//!
//! The base is resolved before anything runs (see `changes::resolve_base`). Checks 2 and 3 can
//! be waived only with a reason (`--allow-untested REASON`, or an `Untested-Because:` trailer
//! on the commit), which is recorded in the ledger and the reports.

pub mod changes;
pub mod coverage;
pub mod junit;
pub mod migrations;
pub mod settings;

use crate::context::Ctx;
use crate::exec::Cmd;
use crate::{Outcome, usage};
use anyhow::{Context, Result};
use globset::{Glob, GlobSet, GlobSetBuilder};
use junit::JunitSummary;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

pub use junit::parse_junit;

/// The commit trailer that waives the change policy and diff coverage, with its reason.
pub const WAIVER_TRAILER: &str = "Untested-Because";

/// The commit trailer naming the release that stopped using what a contract migration removes.
pub const CONTRACT_TRAILER: &str = "Contract-After";

pub struct GateRequest<'a> {
    /// Replaces `gate.command` when not empty.
    pub command: &'a [String],
    pub base: Option<&'a str>,
    pub junit_out: Option<&'a Path>,
    pub allow_untested: Option<&'a str>,
    /// Lets a contract migration pass, for this recorded reason.
    pub allow_contract: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Passed,
    Failed,
    Waived,
    Off,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub summary: String,
    pub details: Vec<String>,
}

impl Check {
    fn new(name: &'static str, status: Status, summary: impl Into<String>) -> Self {
        Check { name, status, summary: summary.into(), details: vec![] }
    }
    fn details(mut self, d: Vec<String>) -> Self {
        self.details = d;
        self
    }
}

fn globset(globs: &[crate::config::GlobPattern]) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        b.add(globset::GlobBuilder::new(g).literal_separator(true).build().or_else(|_| Glob::new(g))?);
    }
    Ok(b.build()?)
}

/// The files matching a glob relative to `dir` (the directory's own path is escaped).
pub(crate) fn matching(dir: &Path, pattern: &str) -> Result<Vec<PathBuf>> {
    let full = format!("{}/{pattern}", glob::Pattern::escape(&dir.to_string_lossy()));
    Ok(glob::glob(&full).map_err(|e| usage!("gate.junit {pattern:?}: invalid glob: {e}"))?.flatten().collect())
}

/// The reason in the `Untested-Because:` trailer of HEAD's message, if any.
fn trailer_reason(ctx: &Ctx, dir: &Path) -> Option<String> {
    let fmt = format!("--format=%(trailers:key={WAIVER_TRAILER},valueonly,separator=%x20)");
    crate::git::read(ctx, dir, &["log", "-1", &fmt]).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// The commit of the last known good version in the SLA's environments, from the ledger.
fn known_good_commit(ctx: &Ctx) -> Result<Option<(String, String)>> {
    if !ctx.state_dir.join("ledger.sqlite3").exists() {
        return Ok(None);
    }
    let ledger = ctx.ledger()?;
    for env in &ctx.config.sla.environments {
        if let Some(label) = ledger.last_known_good(env)?
            && let Some(v) = ledger.version(&label)?
            && !v.commit.is_empty()
        {
            return Ok(Some((v.commit, format!("the last known good version in {env}, {label}"))));
        }
    }
    Ok(None)
}

/// The run's start as the file system's clock sees it: a report is this run's when it was
/// modified after this. The gate never removes a report it did not write, so earlier reports
/// stay where they are and are told apart by their time alone.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Start {
    /// The mtime of a marker the gate wrote (and removed) in the test command's directory, on
    /// the reports' file system, after which the file system's clock was seen to move on:
    /// everything the command writes is newer, everything older is not this run's.
    Marker(SystemTime),
    /// No marker could be written (a read-only directory): the clock, less a second, as file
    /// times come from the kernel's coarse clock.
    Clock(SystemTime),
}

impl Start {
    /// Marks the start in `dir`: writes a marker, waits until the file system's clock ticks past
    /// its mtime (a few milliseconds at most), and removes it.
    pub(crate) fn mark(dir: &Path) -> Start {
        let marker = dir.join(format!(".safedeploy-gate-start-{}", std::process::id()));
        let stamp = || -> std::io::Result<SystemTime> {
            std::fs::write(&marker, b"safedeploy gate: the test run starts after this file's time\n")?;
            std::fs::metadata(&marker)?.modified()
        };
        let start = match stamp() {
            Ok(t0) => {
                let until = std::time::Instant::now() + std::time::Duration::from_millis(500);
                while stamp().is_ok_and(|t| t <= t0) && std::time::Instant::now() < until {
                    std::thread::yield_now();
                }
                Start::Marker(t0)
            }
            Err(_) => Start::Clock(SystemTime::now() - std::time::Duration::from_secs(1)),
        };
        let _ = std::fs::remove_file(&marker);
        start
    }

    /// Written by this run.
    pub(crate) fn fresh(&self, path: &Path) -> bool {
        let Ok(modified) = std::fs::metadata(path).and_then(|m| m.modified()) else { return false };
        match *self {
            Start::Marker(t0) => modified > t0,
            Start::Clock(t) => modified >= t,
        }
    }
}

/// Whether a file reads as a JUnit report: its first element is `<testsuites>` or
/// `<testsuite>`. What `gate.junit` matches must be reports: the gate reads them, and a pattern
/// that takes the app's source files is a configuration mistake, said before anything runs.
fn looks_like_junit(path: &Path) -> bool {
    use std::io::Read;
    let mut head = vec![0u8; 8192];
    let n = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)).unwrap_or(0);
    let text = String::from_utf8_lossy(&head[..n]);
    let mut rest = text.trim_start_matches('\u{feff}');
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("<?").and_then(|r| r.split_once("?>")) {
            rest = r.1;
        } else if let Some(r) = rest.strip_prefix("<!--").and_then(|r| r.split_once("-->")) {
            rest = r.1;
        } else if let Some(r) = rest.strip_prefix("<!").and_then(|r| r.split_once('>')) {
            rest = r.1;
        } else {
            break;
        }
    }
    ["<testsuites", "<testsuite"].iter().any(|t| rest.starts_with(t))
}

/// What the gate works on, all of it found before the tests run: a problem here is exit 2.
struct Plan<'c> {
    gate: &'c settings::Gate,
    argv: Vec<String>,
    dir: PathBuf,
    base: Option<changes::Base>,
    /// The base the migrations check compares with: `base`, else one resolved for it alone
    /// (`None` when there is none to find: the check is then off, and says why).
    migration_base: Option<changes::Base>,
    waiver: Option<String>,
    sources: GlobSet,
    tests: GlobSet,
    coverage: Option<PathBuf>,
}

impl Plan<'_> {
    fn is_test(&self, p: &str) -> bool {
        self.tests.is_match(p)
    }
    fn is_source(&self, p: &str) -> bool {
        !self.is_test(p) && self.sources.is_match(p)
    }
}

/// The test command's run.
struct Ran {
    status: std::process::ExitStatus,
    started: Start,
}

/// The `--json` document.
#[derive(Serialize)]
struct Summary<'a> {
    passed: bool,
    command: &'a [String],
    exit_code: Option<i32>,
    reports: &'a [PathBuf],
    tests: u64,
    failures: u64,
    errors: u64,
    skipped: u64,
    failed: &'a [String],
    flaky: &'a [String],
    base: &'a Option<changes::Base>,
    checks: &'a [Check],
    waiver: &'a Option<String>,
    overhead_ms: f64,
}

pub fn gate_tests(ctx: &Ctx, req: &GateRequest<'_>) -> Result<Outcome> {
    if req.allow_contract.is_some_and(|r| r.trim().is_empty()) {
        return Err(usage!("--allow-contract: expected the reason a contract migration may pass (it is recorded)"));
    }
    let overhead = Instant::now();
    let plan = plan(ctx, req)?;
    let mut overhead_ms = overhead.elapsed().as_secs_f64() * 1000.0;
    let Some(ran) = run_tests(ctx, &plan)? else {
        return Ok(Outcome::ok(serde_json::json!({"dry_run": true, "command": plan.argv, "base": plan.base})));
    };
    let after = Instant::now();
    let (tests, summary, reports) = check_tests(&plan, &ran)?;
    let mut checks = vec![tests, check_policy(ctx, &plan)?, check_coverage(ctx, &plan, &ran)?];
    waive(ctx, &plan, &mut checks)?;
    checks.push(check_migrations(ctx, &plan, req.allow_contract)?);
    overhead_ms += after.elapsed().as_secs_f64() * 1000.0;
    show(ctx, &checks);
    if let Some(out) = req.junit_out {
        write_junit(ctx, out, &checks)?;
    }
    let failed: Vec<&Check> = checks.iter().filter(|c| c.status == Status::Failed).collect();
    record_verdict(ctx, &plan, failed.is_empty(), &checks)?;
    let doc = Summary {
        passed: failed.is_empty(),
        command: &plan.argv,
        exit_code: ran.status.code(),
        reports: &reports,
        tests: summary.tests,
        failures: summary.failures,
        errors: summary.errors,
        skipped: summary.skipped,
        failed: &summary.failed,
        flaky: &summary.flaky,
        base: &plan.base,
        checks: &checks,
        waiver: &plan.waiver,
        overhead_ms,
    };
    if failed.is_empty() {
        ctx.ui.result(format!("gate: passed — {} tests executed, {} skipped", summary.executed(), summary.skipped));
        Outcome::of(&doc)
    } else {
        let why: Vec<String> = failed.iter().map(|c| format!("{}: {}", c.name, c.summary)).collect();
        Outcome::verdict_of(&doc, format!("gate failed: {}", why.join("; ")))
    }
}

/// The verdict in the ledger (for `safedeploy report`'s "stopped by the gate"): the commit and
/// each check's status. A checkout that is not a git repository has no commit to record.
fn record_verdict(ctx: &Ctx, plan: &Plan<'_>, passed: bool, checks: &[Check]) -> Result<()> {
    let Some(head) = crate::git::commit(ctx, &plan.dir, "HEAD") else { return Ok(()) };
    let said: Vec<String> =
        checks.iter().map(|c| format!("{}={}", c.name, format!("{:?}", c.status).to_lowercase())).collect();
    ctx.ledger()?.record_gate_run(&head, passed, &said.join(","))
}

fn plan<'c>(ctx: &'c Ctx, req: &GateRequest<'_>) -> Result<Plan<'c>> {
    let Some(gate) = &ctx.config.gate else {
        return Err(usage!("{}: no [gate] section: expected gate.command and gate.junit", ctx.config.path.display()));
    };
    let argv: Vec<String> = if req.command.is_empty() { gate.command().to_vec() } else { req.command.to_vec() };
    let dir: PathBuf = gate.dir.as_ref().map(|d| ctx.config.dir.join(d)).unwrap_or_else(|| ctx.config.source_dir());
    let policies = !gate.source.is_empty() || gate.min_diff_coverage.is_some();
    let base = if policies {
        let base = changes::resolve_base(ctx, &dir, req.base, known_good_commit(ctx)?)?;
        // A base that is HEAD itself has been warned of: there are no changes since it.
        if crate::git::commit(ctx, &dir, "HEAD").as_deref() != Some(base.commit.as_str()) {
            ctx.ui.status(format!("gate: changes since {} ({})", crate::git::short(&base.commit), base.from));
        }
        Some(base)
    } else {
        None
    };
    let waiver = req
        .allow_untested
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .or_else(|| trailer_reason(ctx, &dir));
    // What the pattern matches before the run must be reports (earlier runs'): the gate reads
    // what it matches, and never deletes anything.
    if let Some(not_report) = matching(&dir, gate.junit())?.into_iter().find(|p| p.is_file() && !looks_like_junit(p)) {
        return Err(usage!(
            "{}: gate.junit {:?} matches {}, which is not a JUnit report; expected a pattern that matches only the reports the test command writes",
            ctx.config.path.display(),
            gate.junit(),
            not_report.display()
        ));
    }
    // The tests' own reports may be overwritten: the command writes them afresh every run, and
    // only reports written during the run are read.
    if let Some(out) = req.junit_out {
        ctx.check_report_path(out, "--junit-out", &[])?;
    }
    let migration_base = match (&base, gate.migrations.is_empty()) {
        (Some(b), _) => Some(b.clone()),
        (None, true) => None,
        (None, false) => changes::resolve_base(ctx, &dir, req.base, known_good_commit(ctx)?).ok(),
    };
    Ok(Plan {
        gate,
        argv,
        coverage: gate.coverage.as_ref().map(|c| dir.join(c)),
        dir,
        base,
        migration_base,
        waiver,
        sources: globset(&gate.source)?,
        tests: globset(&gate.tests)?,
    })
}

/// Runs the test command, its output streamed; `None` in a dry run.
fn run_tests(ctx: &Ctx, plan: &Plan<'_>) -> Result<Option<Ran>> {
    // Some runners (node's test reporters) do not create their reports' directories.
    for dir in report_dirs(plan) {
        ctx.exec.create_dir(&dir)?;
    }
    let started = if ctx.dry_run { Start::Clock(SystemTime::now()) } else { Start::mark(&plan.dir) };
    ctx.ui.status(format!("gate: running {}", Cmd::new(plan.argv.clone()).display()));
    let cmd = Cmd::new(plan.argv.clone()).dir(&plan.dir).timeout(plan.gate.timeout.0);
    Ok(ctx.exec.run_streamed(&cmd)?.map(|status| Ran { status, started }))
}

/// Changed lines that are blank or only a comment never count as uncovered, even where a
/// coverage tool marks them executable (node's lcov does): they are dropped from `lines`.
/// Comments by the file's kind: `#` (Python, Ruby, shell, YAML), `//` and `/* … */` lines
/// (JavaScript, TypeScript, Java, Go, Rust, C), `--` (SQL, Lua). The lines inside a block
/// comment are kept (` * 2` may be an expression's continuation): a guess the other way could
/// hide an uncovered line.
fn drop_comments_and_blanks(path: &Path, lines: &mut Vec<u32>) {
    // Only a regular file of a source's size is read (a FIFO would block the gate): otherwise
    // every line stays measured.
    const MAX_SOURCE: u64 = 64 << 20;
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() <= MAX_SOURCE) {
        return;
    }
    let Ok(text) = std::fs::read_to_string(path) else { return };
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let markers: &[&str] = match ext {
        "py" | "rb" | "sh" | "bash" | "yml" | "yaml" | "toml" | "pl" | "r" => &["#"],
        "js" | "mjs" | "cjs" | "ts" | "mts" | "cts" | "jsx" | "tsx" | "java" | "kt" | "go" | "rs" | "c" | "h"
        | "cc" | "cpp" | "cs" | "swift" | "scala" | "groovy" | "php" => &["//", "/*", "*/"],
        "sql" | "lua" | "hs" => &["--"],
        _ => &[],
    };
    let file: Vec<&str> = text.lines().collect();
    lines.retain(|&n| {
        let Some(line) = file.get((n as usize).wrapping_sub(1)).map(|l| l.trim()) else { return true };
        !(line.is_empty() || is_comment(line, markers))
    });
}

/// Whether a trimmed line is only a comment: it starts with a marker, and when it opens or
/// closes a block comment, no code follows the block's end (`/* a */ x = 1;` is code).
fn is_comment(line: &str, markers: &[&str]) -> bool {
    if markers.contains(&"/*") {
        if let Some(rest) = line.strip_prefix("/*") {
            return rest.find("*/").is_none_or(|end| rest[end + 2..].trim().is_empty());
        }
        if let Some(rest) = line.strip_prefix("*/") {
            return rest.trim().is_empty();
        }
    }
    markers.iter().any(|m| line.starts_with(m))
}

/// The directories the reports go to (`gate.junit` up to its first glob, `gate.coverage`'s),
/// when they lie inside the gate's dir: one outside it (absolute, or climbing out with `..`) is
/// left to the runner — the gate creates nothing outside the app.
fn report_dirs(plan: &Plan<'_>) -> Vec<PathBuf> {
    let coverage = plan.gate.coverage.as_ref().map(|c| c.to_string_lossy().into_owned());
    [Some(plan.gate.junit().to_string()), coverage]
        .into_iter()
        .flatten()
        .filter_map(|pattern| {
            let parts: Vec<&str> = pattern.split('/').collect();
            let fixed = parts.iter().position(|p| p.contains(['*', '?', '[', '{'])).unwrap_or(parts.len() - 1);
            let dir = parts[..fixed].join("/");
            crate::paths::under(&plan.dir, Path::new(&dir), "gate report dir").ok()
        })
        .collect()
}

/// 1. The tests: a fresh report, no failures, enough executed, a runner that exited 0.
fn check_tests(plan: &Plan<'_>, ran: &Ran) -> Result<(Check, JunitSummary, Vec<PathBuf>)> {
    let reports: Vec<PathBuf> =
        matching(&plan.dir, plan.gate.junit())?.into_iter().filter(|p| ran.started.fresh(p)).collect();
    let mut summary = JunitSummary::default();
    for path in &reports {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        summary.add(parse_junit(&text, path)?);
    }
    let min_tests = plan.gate.min_tests.0;
    let mut problems = vec![];
    if reports.is_empty() {
        problems
            .push(format!("the test command wrote no JUnit report at {}", plan.dir.join(plan.gate.junit()).display()));
    } else {
        if summary.failures + summary.errors > 0 {
            problems
                .push(format!("{} failed, {} errored of {} tests", summary.failures, summary.errors, summary.tests));
        }
        if summary.executed() < min_tests {
            problems.push(if summary.tests > 0 && summary.executed() == 0 {
                format!("all {} tests were skipped", summary.tests)
            } else {
                format!("{} tests executed (at least {min_tests} required)", summary.executed())
            });
        }
    }
    if !ran.status.success() {
        let argv = &plan.argv;
        let hint = match ran.status.code() {
            Some(5) if argv.iter().any(|a| a.contains("pytest")) => " (pytest: no tests collected)",
            Some(4) if argv.iter().any(|a| a.contains("nextest")) => " (nextest: no tests to run)",
            _ => "",
        };
        problems.push(format!("the test command exited with {}{hint}", crate::exec::describe(&ran.status)));
    }
    let check = if problems.is_empty() {
        let flaky = if summary.flaky.is_empty() { String::new() } else { format!(", {} flaky", summary.flaky.len()) };
        Check::new(
            "tests",
            Status::Passed,
            format!("{} executed, {} skipped{flaky}", summary.executed(), summary.skipped),
        )
        .details(summary.flaky.iter().map(|f| format!("flaky: {f}")).collect())
    } else {
        Check::new("tests", Status::Failed, problems.join("; ")).details(summary.failed.clone())
    };
    Ok((check, summary, reports))
}

/// 2. The change policy: a changed source file comes with a changed test file.
fn check_policy(ctx: &Ctx, plan: &Plan<'_>) -> Result<Check> {
    let (Some(base), false) = (&plan.base, plan.gate.source.is_empty()) else {
        return Ok(Check::new("change policy", Status::Off, "not configured (gate.source)"));
    };
    let file_changes = changes::changed_files(ctx, &plan.dir, base)?;
    let changed_sources: Vec<String> = file_changes
        .iter()
        .filter(|c| c.content_changed() && plan.is_source(&c.path))
        .map(|c| c.path.clone())
        .collect();
    let changed_tests = file_changes.iter().filter(|c| c.status != 'D' && plan.is_test(&c.path)).count();
    Ok(match (changed_sources.len(), changed_tests) {
        (0, _) => Check::new("change policy", Status::Passed, "no source files changed"),
        (n, 0) => {
            // A changed file that is named like a test but that gate.tests does not take is the
            // likelier mistake: say so rather than "no test file".
            let usual = globset(&crate::gate::settings::Gate::default().tests)?;
            let named_like_tests: Vec<&String> =
                changed_sources.iter().filter(|p| usual.is_match(p.as_str())).collect();
            let what = match named_like_tests.as_slice() {
                [] => format!("{n} source file(s) changed and no test file"),
                some => format!(
                    "{n} source file(s) changed and no test file; {} look(s) like a test file but gate.tests ({}) does not match it: add a glob such as \"**/test_*.py\"",
                    some.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                    plan.gate.tests.iter().map(|g| g.0.as_str()).collect::<Vec<_>>().join(", ")
                ),
            };
            Check::new("change policy", Status::Failed, what).details(changed_sources)
        }
        (n, t) => {
            Check::new("change policy", Status::Passed, format!("{n} source file(s) changed, with {t} test file(s)"))
        }
    })
}

/// 3. Diff coverage: the measured changed lines the tests ran, against the minimum.
fn check_coverage(ctx: &Ctx, plan: &Plan<'_>, ran: &Ran) -> Result<Check> {
    let (Some(min), Some(base), Some(cov_path)) = (plan.gate.min_diff_coverage, &plan.base, &plan.coverage) else {
        return Ok(Check::new("diff coverage", Status::Off, "not configured (gate.min_diff_coverage)"));
    };
    let min = min.0;
    if !ran.started.fresh(cov_path) {
        let what = format!("the test command wrote no coverage report at {}", cov_path.display());
        return Ok(Check::new("diff coverage", Status::Failed, what));
    }
    let text = std::fs::read_to_string(cov_path).with_context(|| format!("reading {}", cov_path.display()))?;
    let cov = coverage::Coverage::parse(&text, cov_path)?;
    let mut added = changes::added_lines(ctx, &plan.dir, base)?;
    added.retain(|f, _| !plan.is_test(f) && (plan.gate.source.is_empty() || plan.sources.is_match(f)));
    for (file, lines) in added.iter_mut() {
        drop_comments_and_blanks(&plan.dir.join(file), lines);
    }
    let d = coverage::diff_coverage(&cov, &added, &plan.dir);
    Ok(match d.percent() {
        None => Check::new("diff coverage", Status::Passed, "no measured changed lines"),
        Some(p) if d.meets(min) => Check::new(
            "diff coverage",
            Status::Passed,
            format!("{p:.1} % of {} measured changed lines covered (minimum {min} %)", d.measured),
        ),
        Some(p) => Check::new(
            "diff coverage",
            Status::Failed,
            format!("{p:.1} % of {} measured changed lines covered, below the minimum {min} %", d.measured),
        )
        .details(d.uncovered),
    })
}

/// Waivers apply to the policies, never to the tests; a waiver is recorded in the ledger.
/// 4. Migrations: each operation of a migration new since the base, classed; a contract fails
/// unless the two-phase rule makes it safe or it is waived with a reason.
fn check_migrations(ctx: &Ctx, plan: &Plan<'_>, allow: Option<&str>) -> Result<Check> {
    if plan.gate.migrations.is_empty() {
        return Ok(Check::new(MIGRATIONS, Status::Off, "not configured (gate.migrations)"));
    }
    let Some(base) = &plan.migration_base else {
        return Ok(Check::new(MIGRATIONS, Status::Off, "no base to compare with (pass --base REV)"));
    };
    let globs = globset(&plan.gate.migrations)?;
    let files: Vec<(String, migrations::Dialect)> = changes::changed_files(ctx, &plan.dir, base)?
        .into_iter()
        .filter(|c| c.status != 'D' && globs.is_match(&c.path))
        .filter_map(|c| migrations::dialect_of(&c.path).map(|d| (c.path, d)))
        .collect();
    if files.is_empty() {
        return Ok(Check::new(MIGRATIONS, Status::Passed, "no migration new since the base"));
    }
    let production_good = production_known_good(ctx)?;
    let (mut contracts, mut safe, mut ops) = (vec![], vec![], 0usize);
    for (path, dialect) in &files {
        let text = std::fs::read_to_string(plan.dir.join(path)).with_context(|| format!("reading {path}"))?;
        let classed = migrations::classify(*dialect, &text);
        ops += classed.len();
        let found: Vec<String> = classed
            .iter()
            .filter(|o| o.class == migrations::Class::Contract)
            .map(|o| format!("{path}:{}: {} — {}", o.line, o.what, o.text))
            .collect();
        if found.is_empty() {
            continue;
        }
        match contract_after(ctx, &plan.dir, base, path) {
            Some(after) if production_good.as_deref() == Some(after.as_str()) => safe.push(format!(
                "{path}: {CONTRACT_TRAILER}: {after}, production's last known good, no longer uses what it removes"
            )),
            Some(after) => contracts.extend(found.into_iter().chain([format!(
                "{path}: {CONTRACT_TRAILER}: {after}, but production's last known good is {}: promote {after} first",
                production_good.as_deref().unwrap_or("none")
            )])),
            None => contracts.extend(found),
        }
    }
    let mut check = if contracts.is_empty() {
        let how = if safe.is_empty() {
            "all expand".to_string()
        } else {
            format!("{} contract(s) safe by the two-phase rule", safe.len())
        };
        Check::new(MIGRATIONS, Status::Passed, format!("{} migration(s), {ops} operation(s): {how}", files.len()))
            .details(safe)
    } else {
        let n = contracts.iter().filter(|c| !c.contains(CONTRACT_TRAILER)).count();
        Check::new(
            MIGRATIONS,
            Status::Failed,
            format!(
                "{n} contract operation(s): the version before this one breaks on the migrated schema; split it in two releases (expand now; contract in a later commit with a {CONTRACT_TRAILER}: trailer naming the release that stopped using it)"
            ),
        )
        .details(contracts)
    };
    if let Some(lint) = &plan.gate.migration_lint {
        let mut argv = lint.0.clone();
        argv.extend(files.iter().map(|(p, _)| p.clone()));
        let out = ctx.exec.capture(&Cmd::new(argv.clone()).dir(&plan.dir).timeout(plan.gate.timeout.0), false)?;
        if let Some(out) = out.filter(|o| !o.status.success()) {
            let mut both = out.stdout.clone();
            both.extend_from_slice(&out.stderr);
            let tail: Vec<String> = crate::exec::tail_of(&both, 20).lines().map(str::to_string).collect();
            check.status = Status::Failed;
            check.summary = format!(
                "{}; the migration linter ({}) failed: {}",
                check.summary,
                argv[0],
                crate::exec::describe(&out.status)
            );
            check.details.extend(tail);
        }
    }
    if check.status == Status::Failed
        && let Some(reason) = allow.map(str::trim).filter(|r| !r.is_empty())
    {
        check.status = Status::Waived;
        check.summary = format!("{} — waived: {reason}", check.summary);
        let head = crate::git::commit(ctx, &plan.dir, "HEAD").unwrap_or_default();
        ctx.ledger()?.record_waiver(&head, &base.commit, MIGRATIONS, reason)?;
    }
    Ok(check)
}

/// The check's name.
const MIGRATIONS: &str = "migrations";

/// The label of production's last known good version, from the ledger.
fn production_known_good(ctx: &Ctx) -> Result<Option<String>> {
    if !ctx.state_dir.join("ledger.sqlite3").exists() {
        return Ok(None);
    }
    let ledger = ctx.ledger()?;
    for env in &ctx.config.sla.environments {
        if let Some(label) = ledger.last_known_good(env)? {
            return Ok(Some(label));
        }
    }
    Ok(None)
}

/// The `Contract-After:` trailer of the newest commit in base..HEAD that changed `path`.
fn contract_after(ctx: &Ctx, dir: &Path, base: &changes::Base, path: &str) -> Option<String> {
    let fmt = format!("--format=%(trailers:key={CONTRACT_TRAILER},valueonly,separator=%x20)");
    let range = format!("{}..HEAD", base.commit);
    let text = crate::git::read(ctx, dir, &["log", &fmt, &range, "--", path]).ok()?;
    text.lines().map(str::trim).find(|l| !l.is_empty()).map(str::to_string)
}

fn waive(ctx: &Ctx, plan: &Plan<'_>, checks: &mut [Check]) -> Result<()> {
    let waived: Vec<&'static str> = checks
        .iter()
        .filter(|c| !["tests", MIGRATIONS].contains(&c.name) && c.status == Status::Failed)
        .map(|c| c.name)
        .collect();
    let Some(reason) = plan.waiver.as_ref().filter(|_| !waived.is_empty()) else { return Ok(()) };
    for c in checks.iter_mut().filter(|c| waived.contains(&c.name)) {
        c.status = Status::Waived;
        c.summary = format!("{} — waived: {reason}", c.summary);
    }
    let head = crate::git::commit(ctx, &plan.dir, "HEAD").unwrap_or_default();
    let base_commit = plan.base.as_ref().map(|b| b.commit.clone()).unwrap_or_default();
    ctx.ledger()?.record_waiver(&head, &base_commit, &waived.join(", "), reason)
}

fn show(ctx: &Ctx, checks: &[Check]) {
    for c in checks {
        match c.status {
            Status::Off => ctx.ui.detail(format!("  -    {}: {}", c.name, c.summary)),
            s => ctx.ui.check(s != Status::Failed, format!("{}: {}", c.name, c.summary)),
        }
        for d in &c.details {
            ctx.ui.status(format!("         {d}"));
        }
    }
}

/// The gate's own checks as a JUnit report, so Jenkins shows them beside the app's tests.
fn write_junit(ctx: &Ctx, out: &Path, checks: &[Check]) -> Result<()> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut suite = TestSuite::new("safedeploy gate");
    for c in checks {
        let mut status = match c.status {
            Status::Passed => TestCaseStatus::success(),
            Status::Failed => TestCaseStatus::non_success(NonSuccessKind::Failure),
            Status::Waived | Status::Off => TestCaseStatus::skipped(),
        };
        if c.status != Status::Passed {
            status.set_message(c.summary.clone());
        }
        if !c.details.is_empty() {
            status.set_description(c.details.join("\n"));
        }
        let mut case = TestCase::new(c.name, status);
        case.set_classname("safedeploy.gate");
        suite.add_test_case(case);
    }
    let mut report = Report::new("safedeploy");
    report.add_test_suite(suite);
    let xml = report.to_string().context("rendering the gate's JUnit report")?;
    ctx.write_report(out, &xml, "the gate's JUnit report")
}

#[cfg(test)]
mod comment_tests {
    use super::drop_comments_and_blanks;

    #[test]
    fn blank_and_comment_lines_are_not_measured() {
        let dir = tempfile::tempdir().expect("tmp");
        let js = dir.path().join("server.js");
        std::fs::write(&js, "const a = 1;\n\n// a comment\n  /* block\n   * inside\n   */\nconst b = a\n  * 2;\n")
            .expect("js");
        let mut lines: Vec<u32> = (1..=9).collect();
        drop_comments_and_blanks(&js, &mut lines);
        assert_eq!(lines, [1, 5, 7, 8, 9], "blank, //, /*, */ dropped; ` * inside` and ` * 2` kept; 9 is past the end");
        // Code after a block comment's end is measured.
        std::fs::write(&js, "/* a */ const c = 1;\n*/ f();\n/** doc */\n/*\n*/\n/**/ \n").expect("js");
        let mut lines: Vec<u32> = (1..=6).collect();
        drop_comments_and_blanks(&js, &mut lines);
        assert_eq!(lines, [1, 2], "code after `*/` is measured; comment-only lines are not");
        let py = dir.path().join("app.py");
        std::fs::write(&py, "x = 1\n    # why\n\ny = '#not'\n").expect("py");
        let mut lines = vec![1, 2, 3, 4];
        drop_comments_and_blanks(&py, &mut lines);
        assert_eq!(lines, [1, 4]);
        let mut lines = vec![1, 2];
        drop_comments_and_blanks(&dir.path().join("missing.js"), &mut lines);
        assert_eq!(lines, [1, 2], "an unreadable file keeps every line");
        let fifo = dir.path().join("fifo.js");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        drop_comments_and_blanks(&fifo, &mut lines);
        assert_eq!(lines, [1, 2], "a FIFO is not read (it would block), and keeps every line");
    }
}
