//! collect-logs: from an environment's logs (or files) to an error report a person can act on.
//!
//! What the post-incident grep pipeline got wrong, done right: lines are grouped into records
//! first (a Python traceback, chained ones included, is one record, so its frames are never cut
//! off); the default selection is case-insensitive and catches error levels, exceptions,
//! tracebacks and HTTP 5xx lines (`grep 'error'` missed `TypeError`); context is counted in
//! records and overlapping contexts merge; repeated blocks — compared with timestamps and numbers
//! masked — collapse into one counted group, in first-seen order. The report ends with what was
//! raised and the innermost in-app frame. Everything written is redacted.

use crate::clock::{Millis, now_ms, parse_rfc3339, rfc3339};
use crate::context::Ctx;
use crate::{Outcome, usage};
use anyhow::Result;
use regex::Regex;
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Error levels as words in any case (`ERROR`, `[error]`, `level=error`, not `--error-logfile`),
/// exception names (`TypeError`, `ValueError`, `RuntimeException`), traceback headers, and
/// access-log lines with a 5xx status.
pub const DEFAULT_PATTERN: &str = r#"(?i:\b(?:error|err|critical|crit|fatal|alert|emerg|panic|exception)\b(?:[:\]\s,;]|$))|[A-Z]\w*(?:Error|Exception)\b|Traceback \(most recent call last\)|"\s5\d\d\s"#;
pub const DEFAULT_OUT: &str = "error_hunt.txt";

pub struct LogsRequest<'a> {
    pub env: Option<&'a str>,
    pub inputs: &'a [PathBuf],
    pub since: Option<&'a str>,
    pub out: Option<&'a Path>,
    pub pattern: Option<&'a str>,
    pub context: Option<usize>,
}

/// One log line with its source and time (from its leading RFC 3339 stamp, else the previous
/// line's).
#[derive(Debug, Clone)]
struct Line {
    source: usize,
    at: Option<Millis>,
    text: String,
}

/// A record: one line, or a whole traceback.
#[derive(Debug, Clone)]
struct Record {
    lines: Vec<Line>,
}

#[derive(Debug, Serialize)]
pub struct Group {
    pub count: usize,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    pub exception: Option<String>,
    pub frame: Option<String>,
    pub example: Vec<String>,
}

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("static regex"))
}
fn stamp_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    re(&R, r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z?)\s?")
}
fn exception_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    re(&R, r"^\s*([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning))(?::\s*(.*))?$")
}
fn frame_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    re(&R, r#"^\s*File "([^"]+)", line (\d+), in (\S+)"#)
}
fn mask_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    re(&R, r"0x[0-9a-fA-F]+|\d+")
}

fn parse_lines(source: usize, text: &str, out: &mut Vec<Line>) {
    let mut last = None;
    for raw in text.lines() {
        let (at, body) = match stamp_re().captures(raw) {
            Some(c) => {
                let at = parse_rfc3339(&c[1]);
                (at.or(last), &raw[c[0].len()..])
            }
            None => (last, raw),
        };
        last = at;
        out.push(Line { source, at, text: body.to_string() });
    }
}

/// Groups lines into records: a `Traceback` line starts one that runs through its indented
/// frames, chained-exception notes, and the closing exception line.
fn records(lines: Vec<Line>) -> Vec<Record> {
    let mut out: Vec<Record> = vec![];
    let mut it = lines.into_iter().peekable();
    while let Some(line) = it.next() {
        if !line.text.starts_with("Traceback (most recent call last)") {
            out.push(Record { lines: vec![line] });
            continue;
        }
        let source = line.source;
        let mut rec = vec![line];
        while let Some(next) = it.peek() {
            let t = &next.text;
            let continues = next.source == source
                && (t.starts_with(' ')
                    || t.starts_with('\t')
                    || t.trim().is_empty()
                    || t.starts_with("Traceback (most recent call last)")
                    || t.starts_with("During handling of the above exception")
                    || t.starts_with("The above exception was the direct cause"));
            if continues {
                rec.push(it.next().expect("peeked"));
                continue;
            }
            // The exception line closes the traceback, unless another (chained) one follows.
            if next.source == source && exception_re().is_match(t) {
                rec.push(it.next().expect("peeked"));
                let chained = it.peek().is_some_and(|n| {
                    n.text.trim().is_empty()
                        || n.text.starts_with("During handling")
                        || n.text.starts_with("The above exception")
                });
                if chained {
                    continue;
                }
            }
            break;
        }
        out.push(Record { lines: rec });
    }
    out
}

fn key(block: &[&Record]) -> String {
    block
        .iter()
        .flat_map(|r| r.lines.iter())
        .map(|l| mask_re().replace_all(&l.text, "#").into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The exception raised and the innermost frame outside the Python runtime and site-packages.
fn diagnose(block: &[&Record]) -> (Option<String>, Option<String>) {
    let lines: Vec<&Line> = block.iter().flat_map(|r| r.lines.iter()).collect();
    let exception = lines
        .iter()
        .rev()
        .filter_map(|l| exception_re().captures(&l.text))
        .map(|c| match c.get(2) {
            Some(m) if !m.as_str().is_empty() => format!("{}: {}", &c[1], m.as_str()),
            _ => c[1].to_string(),
        })
        .next();
    let frame = lines
        .iter()
        .rev()
        .filter_map(|l| frame_re().captures(&l.text))
        .find(|c| !c[1].contains("site-packages") && !c[1].contains("/lib/python") && !c[1].starts_with('<'))
        .map(|c| format!("{}:{} in {}", app_path(&c[1]), &c[2], &c[3]));
    (exception, frame)
}

/// A frame's file as a path in the app's repository: the deployment prefix is cut off (the local
/// platform's `.../local/versions/<label>/`, Elastic Beanstalk's `/var/app/current/`).
fn app_path(file: &str) -> String {
    if let Some((_, rest)) = file.split_once("/local/versions/")
        && let Some((label, inner)) = rest.split_once('/')
    {
        return format!("{inner} ({label})");
    }
    file.strip_prefix("/var/app/current/").unwrap_or(file).to_string()
}

fn parse_since(s: &str) -> Result<Millis> {
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now_ms() - d.as_millis() as i64);
    }
    parse_rfc3339(s).ok_or_else(|| {
        usage!("--since {s:?}: expected a duration (\"30m\") or an RFC 3339 time (\"2026-11-23T22:00:00Z\")")
    })
}

pub fn collect_logs(ctx: &Ctx, req: &LogsRequest<'_>) -> Result<Outcome> {
    let pattern = req.pattern.or(ctx.config.logs.pattern.as_deref()).unwrap_or(DEFAULT_PATTERN);
    let select = Regex::new(pattern)
        .map_err(|e| usage!("--pattern: invalid regex: {}", e.to_string().lines().last().unwrap_or_default()))?;
    let context = req.context.unwrap_or(ctx.config.logs.context);
    let since = req.since.map(parse_since).transpose()?;

    let mut sources: Vec<PathBuf> = req.inputs.to_vec();
    let mut env_name = None;
    if let Some(env) = req.env {
        let environment = ctx.config.environment(env)?;
        sources.extend(ctx.platform()?.logs(environment)?);
        env_name = Some(env.to_string());
    }
    if req.env.is_none() && req.inputs.is_empty() {
        return Err(usage!("collect-logs needs --env NAME or --input FILE"));
    }
    let mut lines = vec![];
    for (i, path) in sources.iter().enumerate() {
        let text = std::fs::read(path).map_err(|e| usage!("{}: cannot read log: {e}", path.display()))?;
        parse_lines(i, &String::from_utf8_lossy(&text), &mut lines);
    }
    let total = lines.len();
    if let Some(s) = since {
        lines.retain(|l| l.at.is_none_or(|t| t >= s));
    }
    let recs = records(lines);

    // Matching records, widened by `context` records each side; overlapping windows merge.
    let hits: Vec<usize> = recs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.lines.iter().any(|l| select.is_match(&l.text)))
        .map(|(i, _)| i)
        .collect();
    let mut windows: Vec<(usize, usize)> = vec![];
    for &i in &hits {
        let (lo, hi) = (i.saturating_sub(context), (i + context).min(recs.len() - 1));
        match windows.last_mut() {
            Some(w) if lo <= w.1 + 1 => w.1 = w.1.max(hi),
            _ => windows.push((lo, hi)),
        }
    }

    // Repeated blocks collapse into counted groups, first-seen order.
    let mut groups: Vec<Group> = vec![];
    let mut index: HashMap<String, usize> = HashMap::new();
    for (lo, hi) in &windows {
        let block: Vec<&Record> = recs[*lo..=*hi].iter().collect();
        // A group is identified by its matching records (context aside: the same error between
        // different neighbours is still the same error), and dated by them.
        let matched: Vec<&Record> =
            block.iter().copied().filter(|r| r.lines.iter().any(|l| select.is_match(&l.text))).collect();
        let times: Vec<Millis> = matched.iter().flat_map(|r| r.lines.iter()).filter_map(|l| l.at).collect();
        let (first, last) = (times.iter().min().copied(), times.iter().max().copied());
        let k = key(&matched);
        if let Some(&g) = index.get(&k) {
            let group = &mut groups[g];
            group.count += 1;
            if let Some(l) = last {
                group.last_seen = Some(rfc3339(l));
            }
            continue;
        }
        let (exception, frame) = diagnose(&matched);
        let example = block
            .iter()
            .flat_map(|r| r.lines.iter())
            .map(|l| {
                ctx.ui.redactor.redact(&match l.at {
                    Some(t) => format!("{} {}", rfc3339(t), l.text),
                    None => l.text.clone(),
                })
            })
            .collect();
        index.insert(k, groups.len());
        groups.push(Group {
            count: 1,
            first_seen: first.map(rfc3339),
            last_seen: last.map(rfc3339),
            exception,
            frame,
            example,
        });
    }

    let report = render(env_name.as_deref(), &sources, total, since, pattern, &hits, &groups);
    let out = req.out.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(DEFAULT_OUT));
    ctx.write_report(&out, &report, "the report")?;
    let exceptions: Vec<String> = groups.iter().filter_map(|g| g.exception.clone()).collect();
    if !ctx.dry_run {
        ctx.ui.result(format!("{} matching block(s) in {} group(s) → {}", windows.len(), groups.len(), out.display()));
        for g in &groups {
            if let Some(e) = &g.exception {
                ctx.ui.result(format!(
                    "  {e} ×{}{}",
                    g.count,
                    g.frame.as_ref().map(|f| format!(" at {f}")).unwrap_or_default()
                ));
            }
        }
    }
    Ok(Outcome::ok(json!({
        "env": env_name, "sources": sources, "lines": total, "matches": hits.len(),
        "blocks": windows.len(), "groups": groups, "exceptions": exceptions,
        "report": out, "dry_run": ctx.dry_run,
    })))
}

fn render(
    env: Option<&str>,
    sources: &[PathBuf],
    total: usize,
    since: Option<Millis>,
    pattern: &str,
    hits: &[usize],
    groups: &[Group],
) -> String {
    let mut s = String::new();
    s += &format!("safedeploy collect-logs report, {}\n", rfc3339(now_ms()));
    if let Some(e) = env {
        s += &format!("environment: {e}\n");
    }
    for p in sources {
        s += &format!("source: {}\n", p.display());
    }
    s += &format!(
        "lines read: {total}; window: {}\n",
        since.map(|t| format!("since {}", rfc3339(t))).unwrap_or_else(|| "everything".into())
    );
    s += &format!("pattern: {pattern}\n");
    s += &format!("{} matching record(s) in {} distinct group(s), first seen first\n", hits.len(), groups.len());
    for (i, g) in groups.iter().enumerate() {
        s += &format!(
            "\n=== group {} — seen {} time(s), first {}, last {}\n",
            i + 1,
            g.count,
            g.first_seen.as_deref().unwrap_or("-"),
            g.last_seen.as_deref().unwrap_or("-")
        );
        if let Some(e) = &g.exception {
            s += &format!("exception: {e}\n");
        }
        if let Some(f) = &g.frame {
            s += &format!("innermost app frame: {f}\n");
        }
        s += "---\n";
        for line in &g.example {
            s += line;
            s.push('\n');
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "2026-11-23T10:00:00.000Z [INFO] Booting worker with pid: 12
2026-11-23T10:00:01.000Z [ERROR] Exception on /shorten [POST]
2026-11-23T10:00:01.000Z Traceback (most recent call last):
2026-11-23T10:00:01.000Z   File \"/x/site-packages/flask/app.py\", line 1, in wsgi_app
2026-11-23T10:00:01.000Z     response = self.full_dispatch_request()
2026-11-23T10:00:01.000Z   File \"/s/local/versions/v2/application.py\", line 21, in load_urls
2026-11-23T10:00:01.000Z     return json.loads(urls_file)
2026-11-23T10:00:01.000Z TypeError: the JSON object must be str, bytes or bytearray, not TextIOWrapper
2026-11-23T10:00:02.000Z 127.0.0.1 - - \"POST /shorten HTTP/1.1\" 500 265
";

    #[test]
    fn traceback_is_one_record_with_exception_and_app_frame() {
        let mut lines = vec![];
        parse_lines(0, LOG, &mut lines);
        let recs = records(lines);
        assert_eq!(recs.len(), 4, "{recs:#?}");
        assert_eq!(recs[2].lines.len(), 6);
        let (e, f) = diagnose(&[&recs[2]]);
        assert_eq!(e.as_deref(), Some("TypeError: the JSON object must be str, bytes or bytearray, not TextIOWrapper"));
        assert_eq!(f.as_deref(), Some("application.py (v2):21 in load_urls"));
    }

    #[test]
    fn default_pattern_catches_levels_and_exceptions_not_flag_names() {
        let re = Regex::new(DEFAULT_PATTERN).expect("valid");
        for hit in [
            "[2026-11-23 22:51:58,559] ERROR in app: Exception on /shorten [POST]",
            "TypeError: the JSON object must be str",
            "level=error msg=boom",
            "[error] 12#0: upstream timed out",
            "Traceback (most recent call last):",
            "127.0.0.1 - - [23/Nov/2026] \"POST /shorten HTTP/1.1\" 500 265",
        ] {
            assert!(re.is_match(hit), "should match: {hit}");
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
    fn repeated_blocks_mask_numbers() {
        let mut a = vec![];
        parse_lines(0, "2026-11-23T10:00:00Z error on request 17\n2026-11-23T10:00:09Z error on request 18\n", &mut a);
        let recs = records(a);
        assert_eq!(key(&[&recs[0]]), key(&[&recs[1]]));
    }
}
