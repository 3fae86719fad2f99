//! collect-logs: from an environment's logs (or files) to an error report a person can act on.
//!
//! What the post-incident grep pipeline got wrong, done right, in one step:
//! - **Sources**: the environment's logs through the platform, files, globs, gzip, stdin (`-`);
//!   each source is grouped into records, and the sources are merged by time.
//! - **Records, not lines** (`parse`): time from the line's prefix (local, Elastic Beanstalk
//!   syslog) or its own stamp (gunicorn, Flask, nginx); a Python traceback, chained ones
//!   included, is one record, found by its grammar since Elastic Beanstalk strips indentation.
//! - **Selection**: by default error levels as words in any case, exception names (`TypeError`,
//!   which `grep 'error'` missed), traceback headers and HTTP 5xx access lines, found by
//!   ripgrep's engine (`scan`), which parses only the lines near a hit; `--context N` records
//!   around each hit make its example.
//! - **Groups** (`groups`): each hit record counts once in its group; a record's fingerprint masks
//!   numbers, hex, UUIDs, IPs and quoted values; a traceback's is its frames' files and functions
//!   plus the exception type. Groups are listed in first-seen order with count, first/last seen,
//!   sources and one full example.
//! - **Suspect** (`suspect`): the in-app frame on a line changed since the last known good
//!   version, with the commit, author, subject and hunk.
//! - Everything written is redacted.

mod cap;
mod groups;
pub mod parse;
mod scan;
pub mod settings;
pub mod suspect;
pub mod traces;

use crate::clock::{Millis, now_ms, rfc3339};
use crate::context::Ctx;
use crate::{Outcome, usage};
use anyhow::Result;
pub use groups::Group;
use groups::{Found, MAX_GROUPS, Store};
use regex::Regex;
use serde::Serialize;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use suspect::Suspect;

/// Error levels as words in their three usual casings (`error`, `Error`, `ERROR`; `[error]`,
/// `level=error`, not `--error-logfile`), exception names (`TypeError`, `RuntimeException`),
/// traceback headers, and access-log lines with a 5xx status.
pub const DEFAULT_PATTERN: &str = concat!(
    r"\b(?:error|Error|ERROR|err|Err|ERR|critical|Critical|CRITICAL|crit|Crit|CRIT|fatal|Fatal|FATAL|",
    r"alert|Alert|ALERT|emerg|Emerg|EMERG|panic|Panic|PANIC|exception|Exception|EXCEPTION)\b(?:[:\]\s,;]|$)",
    r"|[A-Z]\w*(?:Error|Exception)\b|Traceback \(most recent call last\)",
    r#"|" 5\d\d "#
);
pub const DEFAULT_OUT: &str = "error_hunt.txt";

/// What the search looks for when the default pattern is used: a small set of plain literals
/// that every line the default pattern selects contains, so the search runs at multi-literal
/// speed (each extra case-insensitive word multiplies the literal variants and slows it several
/// times); the default pattern then decides, line by line, within what the search found.
const DEFAULT_CANDIDATES: &str = r#"err|Err|ERR|crit|Crit|CRIT|fatal|Fatal|FATAL|alert|Alert|ALERT|emerg|Emerg|EMERG|panic|Panic|PANIC|exception|Exception|EXCEPTION|Traceback|" 5\d\d "#;

pub struct LogsRequest<'a> {
    pub env: Option<&'a str>,
    pub inputs: &'a [PathBuf],
    pub since: Option<&'a str>,
    pub until: Option<&'a str>,
    pub out: Option<&'a Path>,
    pub pattern: Option<&'a str>,
    /// Selects more, besides the pattern.
    pub also_pattern: Option<&'a str>,
    pub context: Option<usize>,
    /// A Datadog webhook payload: the environment and the window come from the alert.
    pub datadog_payload: Option<&'a Path>,
    /// Post the summary to Slack and/or as a Datadog event.
    pub notify: bool,
}

fn parse_time(s: &str, flag: &str, now: Millis) -> Result<Millis> {
    crate::clock::parse_when(s, now).ok_or_else(|| {
        usage!("{flag} {s:?}: expected a duration (\"30m\") or an RFC 3339 time (\"2026-11-23T22:00:00Z\")")
    })
}

fn cannot_read(path: &Path, e: std::io::Error) -> anyhow::Error {
    usage!("{}: cannot read log: {e}", path.display())
}

/// Opens a source: `-` is stdin; gzip is recognised by its magic bytes. A plain file is handed
/// over unbuffered: the search buffers it, and a second buffer would copy every byte twice.
pub(crate) fn open(path: &Path) -> Result<Box<dyn Read>> {
    use std::io::{Seek, SeekFrom};
    let cannot = |e| cannot_read(path, e);
    if path == Path::new("-") {
        let mut reader = BufReader::with_capacity(256 * 1024, std::io::stdin());
        let gz = reader.fill_buf().map(|b| b.starts_with(&[0x1f, 0x8b])).unwrap_or(false);
        return Ok(if gz { Box::new(flate2::bufread::MultiGzDecoder::new(reader)) } else { Box::new(reader) });
    }
    let mut file = std::fs::File::open(path).map_err(cannot)?;
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic).map_err(cannot)?;
    if n == 2 && magic == [0x1f, 0x8b] {
        file.seek(SeekFrom::Start(0)).map_err(cannot)?;
        return Ok(Box::new(flate2::bufread::MultiGzDecoder::new(BufReader::with_capacity(256 * 1024, file))));
    }
    // Not seekable (a FIFO): the bytes read so far go first.
    if file.seek(SeekFrom::Start(0)).is_err() {
        return Ok(Box::new(std::io::Cursor::new(magic[..n].to_vec()).chain(file)));
    }
    Ok(Box::new(file))
}

/// Expands globs among the inputs (`-` and plain paths pass through).
fn expand(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = vec![];
    for i in inputs {
        let s = i.to_string_lossy();
        if s != "-" && s.contains(['*', '?', '[']) {
            let matched: Vec<PathBuf> =
                glob::glob(&s).map_err(|e| usage!("--input {s:?}: invalid glob: {e}"))?.flatten().collect();
            if matched.is_empty() {
                return Err(usage!("--input {s:?}: no file matches"));
            }
            out.extend(matched);
        } else {
            out.push(i.clone());
        }
    }
    Ok(out)
}

/// The default window and the versions to compare, from the ledger: since the deployment of the
/// version under suspicion (the newest one marked bad, else the live one).
struct History {
    since: Option<Millis>,
    good: Option<String>,
    bad: Option<String>,
}

fn history(ctx: &Ctx, env: &str) -> Result<History> {
    if !ctx.state_dir.join("ledger.sqlite3").exists() {
        return Ok(History { since: None, good: None, bad: None });
    }
    let ledger = ctx.ledger_read_only()?;
    let deployments = ledger.deployments(env)?;
    let mut suspect = None;
    for d in deployments.iter().rev() {
        if ledger.version(&d.label)?.is_some_and(|v| v.bad_at.is_some()) {
            suspect = Some(d.clone());
            break;
        }
    }
    let suspect = suspect.or(ledger.live_deployment(env)?);
    let good = ledger.last_known_good(env)?;
    let commit = |label: &Option<String>| -> Result<Option<String>> {
        Ok(match label {
            // An adopted version (never built here) has no commit to compare.
            Some(l) => ledger.version(l)?.map(|v| v.commit).filter(|c| !c.is_empty()),
            None => None,
        })
    };
    let bad_label = suspect.as_ref().map(|d| d.label.clone()).filter(|l| Some(l) != good.as_ref());
    Ok(History { since: suspect.map(|d| d.started_at), good: commit(&good)?, bad: commit(&bad_label)? })
}

/// What is selected: the pattern (the default, `--pattern` or `logs.pattern`, with
/// `--also-pattern`), compiled for the line-by-line decision and for the search.
struct Selecting {
    pattern: String,
    select: Regex,
    matcher: grep_regex::RegexMatcher,
}

fn selecting(ctx: &Ctx, req: &LogsRequest<'_>) -> Result<Selecting> {
    let invalid = |flag: &str, e: &dyn std::fmt::Display| {
        usage!("{flag}: invalid regex: {}", e.to_string().lines().last().unwrap_or_default())
    };
    let base = req.pattern.or(ctx.config.logs.pattern.as_ref().map(|p| p.as_str())).unwrap_or(DEFAULT_PATTERN);
    let base_candidates = if base == DEFAULT_PATTERN { DEFAULT_CANDIDATES } else { base };
    let (pattern, candidates) = match req.also_pattern {
        Some(also) => {
            Regex::new(also).map_err(|e| invalid("--also-pattern", &e))?;
            (format!("(?:{base})|(?:{also})"), format!("(?:{base_candidates})|(?:{also})"))
        }
        None => (base.to_string(), base_candidates.to_string()),
    };
    let select = Regex::new(&pattern).map_err(|e| invalid("--pattern", &e))?;
    // A pattern from the file was checked as it was read: what matches any text here is the
    // flags' doing.
    if crate::config::values::matches_any_text(&select) {
        // In the shell's quoting, to be pasted back: '$x?' (Rust's "$x?" would expand).
        let q = crate::exec::quote;
        let flags = match (req.pattern, req.also_pattern) {
            (Some(p), Some(a)) => format!("--pattern {} with --also-pattern {}", q(p), q(a)),
            (Some(p), None) => format!("--pattern {}", q(p)),
            (None, a) => format!("--also-pattern {}", q(a.unwrap_or_default())),
        };
        return Err(usage!(
            "{flags} matches any text (even an empty one), so every line would be an error; expected a pattern that some lines do not match"
        ));
    }
    let matcher = grep_regex::RegexMatcherBuilder::new()
        .line_terminator(Some(b'\n'))
        .build(&format!("(?:{candidates})|{}", scan::TRACEBACK_LINES))
        .map_err(|e| invalid("--pattern", &e))?;
    Ok(Selecting { pattern, select, matcher })
}

/// Where to read and which window: the files, the environment's logs, the alert's.
struct Scope {
    alert: Option<crate::alert::Alert>,
    env: Option<String>,
    sources: Vec<PathBuf>,
    hist: History,
    since: Option<Millis>,
    until: Option<Millis>,
}

/// The scope of the run, or `None` when an alert says it recovered.
fn scope(ctx: &Ctx, req: &LogsRequest<'_>) -> Result<Option<Scope>> {
    // One reading of the clock: `--since 0s` is then exactly now, whatever the machine's load.
    let now = now_ms();
    let until = req.until.map(|u| parse_time(u, "--until", now)).transpose()?;
    let mut since = req.since.map(|s| parse_time(s, "--since", now)).transpose()?;
    // A window that starts now or later holds no line yet: a mistyped year or `0m`, not "no errors".
    if let (Some(t), Some(s)) = (since, req.since)
        && t >= now
    {
        return Err(usage!(
            "--since {s:?} is {}, not before now ({}): no line can be in the window yet; expected a duration above 0 or a time in the past",
            rfc3339(t),
            rfc3339(now)
        ));
    }
    // An empty window is a mistake, not "no errors".
    if let (Some(s), Some(u)) = (since, until)
        && u < s
    {
        return Err(usage!(
            "--until {} is before --since {}: the window is empty",
            req.until.unwrap_or_default(),
            req.since.unwrap_or_default()
        ));
    }
    let alert = req.datadog_payload.map(|p| crate::alert::read(ctx, p)).transpose()?;
    if let Some(a) = &alert {
        if a.recovered() {
            ctx.ui.result(format!("{} recovered: nothing to collect", a.describe()));
            return Ok(None);
        }
        if let Some(env) = req.env.filter(|e| *e != a.env) {
            return Err(usage!("--env {env} contradicts the alert, which is for {}", a.env));
        }
        since = since.or(Some(a.at - ctx.config.logs.alert_lookback.0.as_millis() as i64));
        ctx.ui.status(format!("{}: collecting {}'s logs", a.describe(), a.env));
    }
    let env = req.env.map(str::to_string).or(alert.as_ref().map(|a| a.env.clone()));
    if env.is_none() && req.inputs.is_empty() {
        return Err(usage!("collect-logs needs --env NAME, --input FILE or --datadog-payload FILE"));
    }
    let mut sources: Vec<PathBuf> = expand(req.inputs)?;
    let mut hist = History { since: None, good: None, bad: None };
    if let Some(env) = &env {
        let environment = ctx.config.environment(env)?;
        sources.extend(ctx.platform()?.logs(environment)?);
        hist = history(ctx, env)?;
        since = since.or(hist.since);
    }
    Ok(Some(Scope { alert, env, sources, hist, since, until }))
}

/// What the search found, and what the report, the console, `--json` and a notification say.
struct Findings {
    bytes: u64,
    found: Found,
    suspect: Option<Suspect>,
}

/// The `--json` summary line.
#[derive(Serialize)]
struct Summary<'a> {
    r#type: &'static str,
    env: Option<&'a str>,
    sources: &'a [PathBuf],
    bytes: u64,
    matches: usize,
    /// Matching records read but outside the window.
    outside_window: usize,
    lines_cut: u64,
    errors_found: bool,
    groups: usize,
    exceptions: Vec<&'a str>,
    suspect: &'a Option<Suspect>,
    window: Window,
    report: &'a Path,
    dry_run: bool,
    alert: &'a Option<crate::alert::Alert>,
}

#[derive(Serialize)]
struct Window {
    since: Option<String>,
    until: Option<String>,
}

pub fn collect_logs(ctx: &Ctx, req: &LogsRequest<'_>) -> Result<Outcome> {
    let out = req.out.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(DEFAULT_OUT));
    // Before an environment's logs are fetched; against the logs themselves once they are known.
    ctx.check_report_path(&out, "--out", &[])?;
    let sel = selecting(ctx, req)?;
    let Some(scope) = scope(ctx, req)? else {
        return Ok(Outcome::ok(serde_json::json!({"recovered": true, "errors_found": false})));
    };
    ctx.check_report_path(&out, "--out", &scope.sources)?;
    let findings = search_all(ctx, req, &sel, &scope)?;
    ctx.write_report(&out, &render(&scope, &sel.pattern, &findings), "the report")?;
    tell(ctx, &findings, &out);
    let f = &findings.found;
    for g in &f.groups {
        let mut line = serde_json::to_value(g)?;
        if let Some(o) = line.as_object_mut() {
            o.insert("type".into(), "group".into());
        }
        ctx.ui.json_line(&line);
    }
    if req.notify {
        notify(ctx, &scope, &findings, &out)?;
    }
    Outcome::of(&Summary {
        r#type: "summary",
        env: scope.env.as_deref(),
        sources: &scope.sources,
        bytes: findings.bytes,
        matches: f.matches,
        outside_window: f.outside.count,
        lines_cut: f.lines_cut,
        errors_found: !f.groups.is_empty(),
        groups: f.groups.len(),
        exceptions: f.groups.iter().filter_map(|g| g.exception.as_deref()).collect(),
        suspect: &findings.suspect,
        window: Window { since: scope.since.map(rfc3339), until: scope.until.map(rfc3339) },
        report: &out,
        dry_run: ctx.dry_run,
        alert: &scope.alert,
    })
}

/// Every source searched, the groups folded, the suspect looked for.
fn search_all(ctx: &Ctx, req: &LogsRequest<'_>, sel: &Selecting, scope: &Scope) -> Result<Findings> {
    let selection = scan::Selection {
        candidates: &sel.matcher,
        select: &sel.select,
        context: req.context.unwrap_or(ctx.config.logs.context.0 as usize),
        since: scope.since,
        until: scope.until,
        interrupted: ctx.interrupted.clone(),
    };
    let prefixes = &ctx.config.logs.app_prefixes;
    let mut store = Store::new(prefixes, &ctx.ui.redactor);
    let mut bytes = 0;
    for (i, path) in scope.sources.iter().enumerate() {
        bytes += scan::search(&mut store, &selection, i, path)?;
    }
    let found = store.finish();
    if found.lines_cut > 0 {
        ctx.ui.warn(format!(
            "{} line(s) longer than {} KiB were cut (the rest of each line is dropped and said)",
            found.lines_cut,
            scan::MAX_LINE / 1024
        ));
    }
    if found.dropped > 0 {
        ctx.ui.warn(format!(
            "{} occurrence(s) of further distinct errors were counted but not kept (over {MAX_GROUPS} groups)",
            found.dropped
        ));
    }
    let suspect = find_suspect(ctx, &found.groups, &scope.hist, prefixes)?;
    Ok(Findings { bytes, found, suspect })
}

/// The suspect: the first group whose in-app frames sit on a changed line.
fn find_suspect(ctx: &Ctx, groups: &[Group], hist: &History, prefixes: &[String]) -> Result<Option<Suspect>> {
    for g in groups.iter().filter(|g| !g.frames.is_empty()) {
        // A frame naming its version (local platform) says which commit failed.
        let bad = match g.frames.iter().find_map(|f| suspect::repo_path(&f.file, prefixes).1) {
            Some(label) if ctx.state_dir.join("ledger.sqlite3").exists() => ctx
                .ledger_read_only()?
                .version(&label)?
                .map(|v| v.commit)
                .filter(|c| !c.is_empty())
                .or(hist.bad.clone()),
            _ => hist.bad.clone(),
        };
        if let (Some(good), Some(bad)) = (&hist.good, &bad)
            && good != bad
            && let Some(s) = suspect::find(ctx, &g.frames, good, bad)?
        {
            return Ok(Some(s));
        }
    }
    // No changed line explains it: a database error points at the range's migration.
    if let (Some(good), Some(bad)) = (&hist.good, &hist.bad)
        && good != bad
    {
        for g in groups {
            if let Some(s) = suspect::migration(ctx, g.headline(), good, bad)? {
                return Ok(Some(s));
            }
        }
    }
    Ok(None)
}

/// The console: how many groups, each by its headline, and the suspect.
fn tell(ctx: &Ctx, findings: &Findings, out: &Path) {
    if ctx.dry_run {
        return;
    }
    let groups = &findings.found.groups;
    let found =
        if groups.is_empty() { "no errors found".to_string() } else { format!("{} group(s) of errors", groups.len()) };
    ctx.ui.result(format!("{found} in {} matching record(s) → {}", findings.found.matches, out.display()));
    // "No errors" over logs whose errors all fell outside the window is likely a mistyped window.
    if let Some(outside) = outside_window(&findings.found.outside).filter(|_| groups.is_empty()) {
        ctx.ui
            .warn(format!("the window holds none of the matching records read ({outside}): check --since and --until"));
    }
    for g in groups {
        let at = g.frame.as_ref().map(|f| format!(" at {f}")).unwrap_or_default();
        ctx.ui.result(format!("  {} ×{}{at}", g.headline(), g.count));
    }
    if let Some(s) = &findings.suspect {
        ctx.ui.result(format!("  suspect: {}", s.headline()));
    }
}

/// "N outside the window, dated A to B", when any matching record was.
fn outside_window(o: &groups::Outside) -> Option<String> {
    let dated = match (o.first, o.last) {
        (Some(a), Some(b)) if a == b => format!(", dated {}", rfc3339(a)),
        (Some(a), Some(b)) => format!(", dated {} to {}", rfc3339(a), rfc3339(b)),
        _ => String::new(),
    };
    (o.count > 0).then(|| format!("{} outside the window{dated}", o.count))
}

fn notify(ctx: &Ctx, scope: &Scope, findings: &Findings, out: &Path) -> Result<()> {
    let title = match &scope.alert {
        Some(a) => format!("{}: {}", a.env, a.title),
        None => format!("collect-logs: {}", scope.env.as_deref().unwrap_or("logs")),
    };
    let link = ctx.env.build_url().map(|u| format!(" ({u}artifact/)")).unwrap_or_default();
    let text = notification(&findings.found.groups, findings.suspect.as_ref(), out, findings.found.matches, &link);
    let tags: Vec<String> = scope.env.iter().map(|e| format!("env:{e}")).collect();
    // Errors found are an error event; a search that found none is news, not an alarm.
    let severity =
        if findings.found.groups.is_empty() { crate::notify::Severity::Info } else { crate::notify::Severity::Error };
    let failures = crate::notify::send(ctx, &title, &text, &tags, severity)?;
    if !failures.is_empty() {
        return Err(crate::could_not_act!(
            "the report is written to {}, but the notification failed: {}",
            out.display(),
            failures.join("; ")
        ));
    }
    Ok(())
}

/// The notification: the top groups, the suspect, where the full report is.
fn notification(groups: &[Group], suspect: Option<&Suspect>, out: &Path, hits: usize, link: &str) -> String {
    let mut t = if groups.is_empty() {
        "No errors found.".to_string()
    } else {
        format!("{} group(s) of errors in {hits} matching record(s):", groups.len())
    };
    for g in groups.iter().take(5) {
        let what = g.headline();
        t += &format!("\n• {what} ×{}{}", g.count, g.frame.as_ref().map(|f| format!(" at {f}")).unwrap_or_default());
    }
    if let Some(s) = suspect {
        t += &format!("\nSuspect: {}", s.headline());
    }
    t += &format!("\nFull report: {}{link}", out.display());
    t
}

fn render(scope: &Scope, pattern: &str, findings: &Findings) -> String {
    let (env, sources, total, since, until) =
        (scope.env.as_deref(), &scope.sources, findings.bytes, scope.since, scope.until);
    let (hits, groups, suspect) = (findings.found.matches, &findings.found.groups, findings.suspect.as_ref());
    let mut s = String::new();
    s += &format!("safedeploy collect-logs report, {}\n", rfc3339(now_ms()));
    if let Some(e) = env {
        s += &format!("environment: {e}\n");
    }
    for p in sources {
        s += &format!("source: {}\n", p.display());
    }
    let window = match (since, until) {
        (None, None) => "everything".to_string(),
        (a, b) => format!(
            "{} → {}",
            a.map(rfc3339).unwrap_or_else(|| "start".into()),
            b.map(rfc3339).unwrap_or_else(|| "now".into())
        ),
    };
    s += &format!("bytes read: {total}; window: {window}\n");
    if let Some(outside) = outside_window(&findings.found.outside) {
        s += &format!("matching records left out: {outside}\n");
    }
    s += &format!("pattern: {pattern}\n");
    s += &format!("{hits} matching record(s) in {} distinct group(s), first seen first\n", groups.len());
    if let Some(x) = suspect {
        s += &format!(
            "\n=== suspect change\n{} — changed between {} and {} by commit {}\nauthor: {}\nsubject: {}\n{}\n",
            if x.migration {
                format!(
                    "{} (a migration: the error is the database's, and no changed line of the range explains it)",
                    x.file
                )
            } else {
                format!("{}:{} in {}{}", x.file, x.line, x.function, x.nearness())
            },
            crate::git::short(&x.good),
            crate::git::short(&x.bad),
            x.commit,
            x.author,
            x.subject,
            x.hunk
        );
    }
    for (i, g) in groups.iter().enumerate() {
        s += &format!(
            "\n=== group {} — seen {} time(s), first {}, last {}\n",
            i + 1,
            g.count,
            g.first_seen.as_deref().unwrap_or("-"),
            g.last_seen.as_deref().unwrap_or("-")
        );
        s += &format!("sources: {}\n", g.sources.iter().cloned().collect::<Vec<_>>().join(", "));
        if let Some(e) = &g.exception {
            s += &format!("exception: {e}\n");
        }
        if let Some(f) = &g.frame {
            s += &format!("innermost app frame: {f}\n");
        }
        if i >= REPORT_EXAMPLES {
            // The report stays readable, and small, however many distinct errors there are.
            s += &format!("message: {}\n", g.message);
            continue;
        }
        s += "---\n";
        for line in &g.example {
            s += line;
            s.push('\n');
        }
    }
    if groups.len() > REPORT_EXAMPLES {
        s += &format!(
            "\n({} more group(s) after the first {REPORT_EXAMPLES} are listed without their example)\n",
            groups.len() - REPORT_EXAMPLES
        );
    }
    s
}

/// Groups whose example the report prints in full.
const REPORT_EXAMPLES: usize = 50;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pattern_catches_levels_and_exceptions_not_flag_names() {
        let re = Regex::new(DEFAULT_PATTERN).expect("valid");
        let candidates = Regex::new(DEFAULT_CANDIDATES).expect("valid");
        for hit in [
            "[2026-11-23 22:51:58,559] ERROR in app: Exception on /shorten [POST]",
            "TypeError: the JSON object must be str",
            "level=error msg=boom",
            "[error] 12#0: upstream timed out",
            "Traceback (most recent call last):",
            "127.0.0.1 - - [23/Nov/2026] \"POST /shorten HTTP/1.1\" 500 265",
        ] {
            assert!(re.is_match(hit), "should match: {hit}");
            assert!(candidates.is_match(hit), "the search must find: {hit}");
        }
        // Everything the default pattern selects, the search's candidates find.
        for line in [
            "KeyboardInterrupt: x",
            "RuntimeException in thread",
            "CRIT disk",
            "emerg: x",
            "panic: runtime error",
            "[alert] x",
        ] {
            assert!(!re.is_match(line) || candidates.is_match(line), "{line}");
        }
        for miss in [
            "exec gunicorn --error-logfile - application:app",
            "[INFO] Booting worker with pid: 12",
            "\"GET /x HTTP/1.1\" 200 512",
            "0 errors found",
        ] {
            assert!(!re.is_match(miss), "should not match: {miss}");
        }
    }
}
