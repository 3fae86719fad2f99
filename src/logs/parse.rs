//! Lines and records. A line's time comes from its prefix — safedeploy's local platform
//! (`2026-11-23T22:40:01.123Z `), Elastic Beanstalk's syslog (`Nov  3 02:55:20 ip-… web[2013]: `,
//! no year) — or, when it has none, from the message's own stamp: gunicorn
//! (`[2026-11-23 22:51:43 +0000]`), Flask (`[2026-11-23 22:51:58,559]`), nginx
//! (`2026/11/23 22:51:58 [error]`). A record is one line, or a whole Python traceback.
//!
//! Tracebacks are grouped by their grammar, not by indentation (Elastic Beanstalk strips it):
//! after `Traceback (most recent call last):` come `File "…", line N, in f` lines, each
//! optionally followed by its source line and caret lines, up to the exception line; a chained
//! exception ("During handling of the above exception…") continues the same record.

use crate::clock::{Millis, now_ms, parse_rfc3339};
use regex::Regex;
use std::sync::OnceLock;

#[derive(Debug, Clone)]
pub struct Line {
    pub source: usize,
    pub at: Option<Millis>,
    /// The line without its time/host prefix.
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct Record {
    pub lines: Vec<Line>,
}

impl Record {
    pub fn at(&self) -> Option<Millis> {
        self.lines.iter().find_map(|l| l.at)
    }
    pub fn is_traceback(&self) -> bool {
        self.lines.first().is_some_and(|l| is_traceback_start(&l.text))
    }
}

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("static regex"))
}

fn local_stamp() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    re(&R, r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z?)\s?")
}
fn syslog() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    re(&R, r"^([A-Z][a-z]{2}) ([ \d]\d) (\d\d:\d\d:\d\d) (\S+) ([\w.\-/]+)(?:\[\d+\])?: ?")
}
fn inner_stamp() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    // gunicorn "[2026-11-23 22:51:43 +0000]", Flask "[2026-11-23 22:51:58,559]", nginx "2026/11/23 22:51:58".
    re(&R, r"^\[?(\d{4})[-/](\d\d)[-/](\d\d) (\d\d:\d\d:\d\d)(?:[,.](\d{1,6}))?(?: ([+-]\d{4}))?\]?")
}
pub fn exception_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    re(&R, r"^\s*([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|Fault))(?::\s*(.*))?$")
}
pub fn frame_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    re(&R, r#"^\s*File "([^"]+)", line (\d+), in (\S+)"#)
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// Syslog has no year: the current one, or the previous one for a date that would otherwise
/// lie in the future (a log read in January of lines from December).
fn syslog_time(month: &str, day: &str, time: &str) -> Option<Millis> {
    let m = MONTHS.iter().position(|x| *x == month)? + 1;
    let day: u32 = day.trim().parse().ok()?;
    let year: i64 = crate::clock::rfc3339(now_ms())[..4].parse().ok()?;
    for y in [year, year - 1] {
        let t = parse_rfc3339(&format!("{y}-{m:02}-{day:02}T{time}Z"))?;
        if t <= now_ms() + 86_400_000 {
            return Some(t);
        }
    }
    None
}

fn inner_time(text: &str) -> Option<Millis> {
    let c = inner_stamp().captures(text)?;
    let frac = c.get(5).map(|f| format!(".{}", f.as_str())).unwrap_or_default();
    let mut t = parse_rfc3339(&format!("{}-{}-{}T{}{frac}Z", &c[1], &c[2], &c[3], &c[4]))?;
    if let Some(off) = c.get(6).map(|o| o.as_str()) {
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (h, m): (i64, i64) = (off[1..3].parse().ok()?, off[3..5].parse().ok()?);
        t -= sign * (h * 3600 + m * 60) * 1000;
    }
    Some(t)
}

/// Splits a raw line into its time and text; `last` is the previous line's time, which a line
/// without one inherits.
pub fn parse_line(source: usize, raw: &str, last: Option<Millis>) -> Line {
    let raw = raw.trim_end_matches(['\r', '\n']);
    if let Some(c) = local_stamp().captures(raw) {
        return Line { source, at: parse_rfc3339(&c[1]).or(last), text: raw[c[0].len()..].to_string() };
    }
    if let Some(c) = syslog().captures(raw) {
        return Line { source, at: syslog_time(&c[1], &c[2], &c[3]).or(last), text: raw[c[0].len()..].to_string() };
    }
    Line { source, at: inner_time(raw).or(last), text: raw.to_string() }
}

pub fn is_traceback_start(text: &str) -> bool {
    text.trim_start().starts_with("Traceback (most recent call last)")
}

fn is_chain_marker(text: &str) -> bool {
    let t = text.trim_start();
    t.starts_with("During handling of the above exception") || t.starts_with("The above exception was the direct cause")
}

fn is_caret(text: &str) -> bool {
    let t = text.trim();
    !t.is_empty() && t.chars().all(|c| matches!(c, '^' | '~' | ' '))
}

/// Where a traceback stands while its lines arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tb {
    /// Expecting a `File` line or the exception line.
    Frames,
    /// After a `File` line: its source line may follow.
    AfterFrame,
    /// After the exception line: only a chain marker (after blank lines) continues.
    Ended,
}

/// Turns a stream of lines (one source, in order) into records.
#[derive(Default)]
pub struct Grouper {
    current: Option<(Record, Tb)>,
    /// Blank lines held after an exception line, in case a chained traceback follows.
    held: Vec<Line>,
}

impl Grouper {
    /// Feeds one line; returns the records it completes, in order.
    pub fn push(&mut self, line: Line) -> Vec<Record> {
        let mut out = vec![];
        if let Some((mut rec, state)) = self.current.take() {
            let t = line.text.as_str();
            let (continues, next) = match state {
                Tb::Ended if t.trim().is_empty() => {
                    self.held.push(line);
                    self.current = Some((rec, Tb::Ended));
                    return out;
                }
                Tb::Ended if is_chain_marker(t) => (true, Tb::Frames),
                Tb::Ended => (false, Tb::Ended),
                _ if frame_re().is_match(t) => (true, Tb::AfterFrame),
                _ if is_caret(t) => (true, state),
                _ if t.trim().is_empty() || is_traceback_start(t) || is_chain_marker(t) => (true, Tb::Frames),
                _ if exception_re().is_match(t) => (true, Tb::Ended),
                Tb::AfterFrame => (true, Tb::Frames), // the frame's source line
                Tb::Frames => (false, Tb::Frames),
            };
            if continues {
                rec.lines.append(&mut self.held);
                rec.lines.push(line);
                self.current = Some((rec, next));
                return out;
            }
            out.push(rec);
            out.extend(self.held.drain(..).map(|l| Record { lines: vec![l] }));
        }
        if is_traceback_start(&line.text) {
            self.current = Some((Record { lines: vec![line] }, Tb::Frames));
        } else {
            out.push(Record { lines: vec![line] });
        }
        out
    }

    /// The records still open at the end of the stream.
    pub fn finish(&mut self) -> Vec<Record> {
        let mut out: Vec<Record> = self.current.take().map(|(r, _)| r).into_iter().collect();
        out.extend(self.held.drain(..).map(|l| Record { lines: vec![l] }));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(text: &str) -> Vec<Record> {
        let mut g = Grouper::default();
        let mut out = vec![];
        let mut last = None;
        for raw in text.lines() {
            let l = parse_line(0, raw, last);
            last = l.at;
            out.extend(g.push(l));
        }
        out.extend(g.finish());
        out
    }

    #[test]
    fn eb_syslog_prefix_with_padded_day_and_no_indentation() {
        let log = "Nov  3 02:55:20 ip-172-31-35-64 web[2013]: [2026-11-03 02:55:20,101] ERROR in app: Exception on /shorten [POST]
Nov  3 02:55:20 ip-172-31-35-64 web[2013]: Traceback (most recent call last):
Nov  3 02:55:20 ip-172-31-35-64 web[2013]: File \"/var/app/venv/lib/python3.11/site-packages/flask/app.py\", line 1511, in wsgi_app
Nov  3 02:55:20 ip-172-31-35-64 web[2013]: response = self.full_dispatch_request()
Nov  3 02:55:20 ip-172-31-35-64 web[2013]: File \"/var/app/current/application.py\", line 67, in load_urls
Nov  3 02:55:20 ip-172-31-35-64 web[2013]: return json.loads(urls_file)
Nov  3 02:55:20 ip-172-31-35-64 web[2013]: ^^^^^^^^^^^^^^^^^^^^^
Nov  3 02:55:20 ip-172-31-35-64 web[2013]: TypeError: the JSON object must be str, bytes or bytearray, not TextIOWrapper
Nov 13 02:55:21 ip-172-31-35-64 web: 127.0.0.1 - - \"POST /shorten HTTP/1.1\" 500 265";
        let recs = records(log);
        assert_eq!(recs.len(), 3, "{recs:#?}");
        assert_eq!(recs[1].lines.len(), 7);
        assert_eq!(recs[1].lines[0].text, "Traceback (most recent call last):");
        assert!(recs[1].is_traceback());
        let t = recs[0].at().expect("time");
        assert!(crate::clock::rfc3339(t).ends_with("-11-03T02:55:20.000Z"), "{}", crate::clock::rfc3339(t));
        assert!(crate::clock::rfc3339(recs[2].at().expect("t")).ends_with("-11-13T02:55:21.000Z"));
    }

    #[test]
    fn chained_tracebacks_are_one_record() {
        let log = "Traceback (most recent call last):
File \"a.py\", line 1, in f
x = d['k']
KeyError: 'k'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
File \"a.py\", line 3, in f
raise ValueError('bad')
ValueError: bad
next request";
        let recs = records(log);
        assert_eq!(recs.len(), 2, "{recs:#?}");
        assert_eq!(recs[0].lines.last().map(|l| l.text.as_str()), Some("ValueError: bad"));
    }

    #[test]
    fn inner_stamps_of_gunicorn_flask_and_nginx() {
        for (raw, want) in [
            ("[2026-11-23 22:51:43 +0000] [8769] [INFO] Booting", "2026-11-23T22:51:43.000Z"),
            ("[2026-11-23 23:51:43 +0100] [8769] [INFO] Booting", "2026-11-23T22:51:43.000Z"),
            ("[2026-11-23 22:51:58,559] ERROR in app: Exception", "2026-11-23T22:51:58.559Z"),
            (
                "2026/11/23 22:51:58 [error] 12#0: *3 upstream timed out (110: Connection timed out)",
                "2026-11-23T22:51:58.000Z",
            ),
        ] {
            let l = parse_line(0, raw, None);
            assert_eq!(l.at.map(crate::clock::rfc3339).as_deref(), Some(want), "{raw}");
        }
    }
}
