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
//! - **Groups**: each hit record counts once in its group; a record's fingerprint masks
//!   numbers, hex, UUIDs, IPs and quoted values; a traceback's is its frames' files and functions
//!   plus the exception type. Groups are listed in first-seen order with count, first/last seen,
//!   sources and one full example.
//! - **Suspect** (`suspect`): the in-app frame on a line changed since the last known good
//!   version, with the commit, author, subject and hunk.
//! - Everything written is redacted.

mod cap;
pub mod parse;
mod scan;
pub mod settings;
pub mod suspect;
pub mod traces;

use crate::clock::{Millis, now_ms, rfc3339};
use crate::context::Ctx;
use crate::{Outcome, usage};
use anyhow::Result;
use parse::{Line, Record};
use regex::Regex;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use suspect::Suspect;
use traces::Frame;

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

#[derive(Debug, Serialize)]
pub struct Group {
    pub count: usize,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    #[serde(skip)]
    first: Option<Millis>,
    #[serde(skip)]
    last: Option<Millis>,
    pub sources: BTreeSet<String>,
    /// The matching line itself (redacted, at most 200 characters): what the group is about
    /// when it is not an exception.
    pub message: String,
    pub exception: Option<String>,
    pub frame: Option<String>,
    pub example: Vec<String>,
    #[serde(skip)]
    frames: Vec<Frame>,
    #[serde(skip)]
    key: u64,
}

fn mask_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| {
        Regex::new(
            r#"(?x)
            [0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}  # UUID
            | \b\d{1,3}(?:\.\d{1,3}){3}\b                                                  # IPv4
            | "[^"]*" | '[^']*'                                                             # quoted
            | 0x[0-9a-fA-F]+ | \b[0-9a-f]{7,}\b                                            # hex
            | \d+                                                                          # numbers
        "#,
        )
        .expect("static regex")
    })
}

/// What makes two records "the same error": for a stack trace, its in-app frames (file and
/// function; the line when the function has no name) and its error type, whatever the message
/// says; for a line, its text with what varies masked.
fn fingerprint(r: &Record) -> String {
    if let Some(rt) = r.trace {
        let texts = r.texts();
        let all = traces::frames(rt, &texts);
        let in_app: Vec<&Frame> = all.iter().filter(|f| f.in_app).collect();
        let frames = if in_app.is_empty() { all.iter().collect() } else { in_app };
        let frames: Vec<String> = frames
            .iter()
            .map(|f| {
                let file = Path::new(&f.file).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                match f.function.as_str() {
                    "" | "<anonymous>" | "<module>" => format!("{file}:{}", f.line),
                    function => format!("{file}:{function}"),
                }
            })
            .collect();
        let error = traces::error(rt, &texts).map(|(ty, _)| ty).unwrap_or_default();
        return format!("{rt:?} {} {error}", frames.join(" > "));
    }
    r.lines.iter().map(|l| mask_re().replace_all(&l.text, "#").into_owned()).collect::<Vec<_>>().join("\n")
}

/// The error a trace reports ("Type: message") and its in-app frames, innermost first. A line
/// of its own may still name an exception ("TypeError: …" logged alone).
fn diagnose(record: &Record) -> (Option<String>, Vec<Frame>) {
    let texts = record.texts();
    let rt = record.trace.unwrap_or(traces::Runtime::Python);
    // Go's panic message is its own type ("runtime error: index out of range [5] …").
    let exception = traces::error(rt, &texts).map(|(ty, msg)| match msg {
        m if m.is_empty() => ty,
        m if rt == traces::Runtime::Go && m.starts_with(&ty) => m,
        m => format!("{ty}: {m}"),
    });
    let frames = match record.trace {
        Some(rt) => traces::frames(rt, &texts).into_iter().filter(|f| f.in_app).collect(),
        None => vec![],
    };
    (exception, frames)
}

fn frame_label(f: &Frame, prefixes: &[String]) -> String {
    match suspect::repo_path(&f.file, prefixes) {
        (path, Some(label)) => format!("{path} ({label}):{} in {}", f.line, f.function),
        (path, None) => format!("{path}:{} in {}", f.line, f.function),
    }
}

fn parse_time(s: &str, flag: &str) -> Result<Millis> {
    crate::clock::parse_when(s, now_ms()).ok_or_else(|| {
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

/// Distinct groups kept; further distinct ones are counted, not kept (bounded memory).
const MAX_GROUPS: usize = 10_000;
/// Lines of a group's example kept, and their bytes.
const MAX_EXAMPLE: usize = 300;
const MAX_EXAMPLE_BYTES: usize = 64 * 1024;
/// Bytes of all the groups' examples together; past it a new group keeps only its line.
const EXAMPLES_BUDGET: usize = 16 * 1024 * 1024;

impl Group {
    /// One line naming the group: its exception, else its matching line.
    fn headline(&self) -> &str {
        self.exception.as_deref().unwrap_or(&self.message)
    }

    /// Counts more occurrences of this group in; the earliest one's example is kept.
    fn fold_in(
        &mut self,
        count: usize,
        sources: impl IntoIterator<Item = String>,
        first: Option<Millis>,
        last: Option<Millis>,
        example: impl FnOnce() -> Vec<String>,
    ) {
        self.count += count;
        self.sources.extend(sources);
        self.last = self.last.max(last);
        if matches!((first, self.first), (Some(a), Some(b)) if a < b) {
            self.first = first;
            self.example = example();
        }
    }
}

/// What the search of every source found.
struct Found {
    /// In first-seen order.
    groups: Vec<Group>,
    /// Matching records.
    matches: usize,
    /// Occurrences of distinct errors past [`MAX_GROUPS`], counted, not kept.
    dropped: usize,
    /// Lines longer than the search's limit, cut.
    lines_cut: u64,
}

/// The groups found so far. Occurrences are folded in as the search finds them, so memory
/// follows the number of distinct groups, not the size of the logs.
struct Store<'a> {
    prefixes: &'a [String],
    redactor: &'a crate::redact::Redactor,
    groups: Vec<Group>,
    index: HashMap<u64, usize>,
    matches: usize,
    dropped: usize,
    /// Lines cut at the search's limit (`scan::MAX_LINE`).
    lines_cut: u64,
    /// Bytes of all the examples kept: past [`EXAMPLES_BUDGET`] a new group keeps only its line.
    example_bytes: usize,
}

impl<'a> Store<'a> {
    /// One hit record (`window[hit]`) with its context. The group is the hit's (context aside:
    /// the same error between different neighbours is still the same error), and so is the time.
    fn occurrence(&mut self, source: &str, window: &[Record], hit: usize) {
        use std::hash::{Hash, Hasher};
        let matched = &window[hit];
        let at = matched.at();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        fingerprint(matched).hash(&mut h);
        let key = h.finish();
        let redactor = self.redactor;
        // Examples are bounded: lines and bytes each, and all of them together, so memory and
        // the report stay small whatever the logs hold.
        let budget_left = self.example_bytes < EXAMPLES_BUDGET;
        let example = || -> Vec<String> {
            if !budget_left {
                let line = window[hit].lines.iter().find(|l| l.hit).or(window[hit].lines.first());
                let text = line.map(|l| l.text.chars().take(200).collect::<String>()).unwrap_or_default();
                return vec![
                    redactor.redact(&text),
                    "… (examples of further groups are not kept: the examples' budget is spent)".into(),
                ];
            }
            let lines: Vec<&Line> = window.iter().flat_map(|r| r.lines.iter()).collect();
            let mut out = vec![];
            let mut bytes = 0;
            for l in lines.iter().take(MAX_EXAMPLE) {
                let text = redactor.redact(&match l.at {
                    Some(t) => format!("{} {}", rfc3339(t), l.text),
                    None => l.text.clone(),
                });
                bytes += text.len();
                out.push(text);
                if bytes > MAX_EXAMPLE_BYTES {
                    break;
                }
            }
            if lines.len() > out.len() {
                out.push(format!("… {} more line(s), cut by safedeploy", lines.len() - out.len()));
            }
            out
        };
        if let Some(&g) = self.index.get(&key) {
            // Seen first here (another source, an earlier time): this occurrence is the example.
            self.groups[g].fold_in(1, [source.to_string()], at, at, example);
            return;
        }
        if self.groups.len() >= MAX_GROUPS {
            self.dropped += 1;
            return;
        }
        let (exception, frames) = diagnose(matched);
        let exception = exception.map(|e| redactor.redact(&e));
        let line = matched.lines.iter().find(|l| l.hit).or(matched.lines.first());
        let message = line.map(|l| redactor.redact(&l.text.chars().take(200).collect::<String>())).unwrap_or_default();
        let frame = frames.first().map(|f| frame_label(f, self.prefixes));
        let example = example();
        self.example_bytes += example.iter().map(String::len).sum::<usize>();
        self.index.insert(key, self.groups.len());
        self.groups.push(Group {
            key,
            count: 1,
            first_seen: None,
            last_seen: None,
            first: at,
            last: at,
            sources: BTreeSet::from([source.to_string()]),
            message,
            exception,
            frame,
            example,
            frames,
        });
    }

    fn new(prefixes: &'a [String], redactor: &'a crate::redact::Redactor) -> Self {
        Store {
            prefixes,
            redactor,
            groups: vec![],
            index: HashMap::new(),
            matches: 0,
            dropped: 0,
            lines_cut: 0,
            example_bytes: 0,
        }
    }

    /// An empty store for a part of a source searched on its own.
    fn part(&self) -> Self {
        Store::new(self.prefixes, self.redactor)
    }

    /// Folds in a part's groups (parts in the order of the file).
    fn absorb(&mut self, part: Store<'_>) {
        self.matches += part.matches;
        self.dropped += part.dropped;
        self.lines_cut += part.lines_cut;
        self.example_bytes += part.example_bytes;
        for g in part.groups {
            match self.index.get(&g.key) {
                Some(&i) => self.groups[i].fold_in(g.count, g.sources, g.first, g.last, || g.example),
                None if self.groups.len() >= MAX_GROUPS => self.dropped += g.count,
                None => {
                    self.index.insert(g.key, self.groups.len());
                    self.groups.push(g);
                }
            }
        }
    }

    /// The groups in first-seen order (sources were read one after another).
    fn finish(mut self) -> Found {
        self.groups.sort_by_key(|g| g.first.unwrap_or(i64::MAX));
        for g in &mut self.groups {
            g.first_seen = g.first.map(rfc3339);
            g.last_seen = g.last.map(rfc3339);
        }
        Found { groups: self.groups, matches: self.matches, dropped: self.dropped, lines_cut: self.lines_cut }
    }
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
    let until = req.until.map(|u| parse_time(u, "--until")).transpose()?;
    let mut since = req.since.map(|s| parse_time(s, "--since")).transpose()?;
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
    let sel = selecting(ctx, req)?;
    let Some(scope) = scope(ctx, req)? else {
        return Ok(Outcome::ok(serde_json::json!({"recovered": true, "errors_found": false})));
    };
    let findings = search_all(ctx, req, &sel, &scope)?;
    let out = req.out.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(DEFAULT_OUT));
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
    for g in groups {
        let at = g.frame.as_ref().map(|f| format!(" at {f}")).unwrap_or_default();
        ctx.ui.result(format!("  {} ×{}{at}", g.headline(), g.count));
    }
    if let Some(s) = &findings.suspect {
        ctx.ui.result(format!("  suspect: {}", s.headline()));
    }
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

    #[test]
    fn fingerprints_mask_what_varies() {
        let rec = |t: &str| Record::line(Line { source: 0, at: None, text: t.into(), hit: true });
        assert_eq!(
            fingerprint(&rec("timeout for 10.0.0.7 after 30s on 'q1' id 5f3a9c2e-1111-2222-3333-444455556666")),
            fingerprint(&rec("timeout for 10.0.0.9 after 31s on 'q2' id 0b1e2d3c-aaaa-bbbb-cccc-ddddeeeeffff"))
        );
        let tb = |line: &str| Record {
            lines: [
                "Traceback (most recent call last):",
                &format!("File \"/a/app.py\", line {line}, in f"),
                "x()",
                "TypeError: bad 1",
            ]
            .iter()
            .map(|t| Line { source: 0, at: None, text: t.to_string(), hit: false })
            .collect(),
            trace: Some(traces::Runtime::Python),
        };
        assert_eq!(fingerprint(&tb("10")), fingerprint(&tb("12")), "a traceback is its frames' files and functions");
    }
}
