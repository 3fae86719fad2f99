//! Lines and records. A line's time comes from its prefix — safedeploy's local platform
//! (`2026-11-23T22:40:01.123Z `), Elastic Beanstalk's syslog (`Nov  3 02:55:20 ip-… web[2013]: `,
//! no year) — or, when it has none, from the message's own stamp: gunicorn
//! (`[2026-11-23 22:51:43 +0000]`), Flask (`[2026-11-23 22:51:58,559]`), nginx
//! (`2026/11/23 22:51:58 [error]`). A record is one line, or a whole stack trace of any of the
//! runtimes [`super::traces`] knows (Python, Node, Java, Go, Ruby), grouped by the trace's
//! grammar, not by indentation (Elastic Beanstalk strips it).

use super::traces::{self, Phase, Runtime, Step};
use crate::clock::{Millis, now_ms};
use regex::Regex;
use std::sync::{LazyLock, OnceLock};

#[derive(Debug, Clone)]
pub struct Line {
    pub source: usize,
    pub at: Option<Millis>,
    /// The line without its time/host prefix.
    pub text: String,
    /// Selected by the pattern (set by the search).
    pub hit: bool,
}

#[derive(Debug, Clone)]
pub struct Record {
    pub lines: Vec<Line>,
    /// The runtime whose stack trace this record is (a trace of one line is none).
    pub trace: Option<Runtime>,
    /// The trace's frames, innermost first, read once when the record closes (the fingerprint
    /// and the diagnosis both use them); none for a record that is no trace.
    pub frames: Vec<traces::Frame>,
}

impl Record {
    pub fn line(line: Line) -> Record {
        Record { lines: vec![line], trace: None, frames: vec![] }
    }
    pub fn at(&self) -> Option<Millis> {
        self.lines.iter().find_map(|l| l.at)
    }
    /// A stack trace, or a logged message with its stack trace.
    pub fn is_traceback(&self) -> bool {
        self.trace.is_some()
    }
    /// The record's lines as text, for the trace grammar (a logged message merged before a
    /// trace is among them; the grammar's patterns skip it).
    pub fn texts(&self) -> Vec<&str> {
        self.lines.iter().map(|l| l.text.as_str()).collect()
    }
}

// gunicorn "[2026-11-23 22:51:43 +0000]", Flask "[2026-11-23 22:51:58,559]", nginx "2026/11/23 22:51:58".
// ASCII digits only: `\d` would take any Unicode digit, and the captures are sliced by byte.
static INNER_STAMP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^\[?([0-9]{4})[-/]([0-9]{2})[-/]([0-9]{2}) ([0-9]{2}:[0-9]{2}:[0-9]{2})(?:[,.]([0-9]{1,6}))?(?: ([+-][0-9]{4}))?\]?",
    )
    .expect("static regex")
});

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm): dates from log lines are
/// computed, never formatted and re-parsed, since this runs for every line read.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |n, d| n * 10 + (d - b'0') as u32))
}

/// `HH:MM:SS` → milliseconds into the day.
fn clock_ms(b: &[u8]) -> Option<i64> {
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let (h, m, s) = (digits(&b[0..2])?, digits(&b[3..5])?, digits(&b[6..8])?);
    Some(((h * 3600 + m * 60 + s) as i64) * 1000)
}

/// Midnight of a calendar date; `None` for one that does not exist (`Nov 31`, `Feb 29` of a
/// common year), which would otherwise be dated the next month's first days.
fn date_ms(y: i64, m: u32, d: u32) -> Option<i64> {
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    (1..=days).contains(&d).then(|| days_from_civil(y, m, d) * 86_400_000)
}

/// The time syslog's missing year is inferred against: read once per run, so every line of a
/// run is dated against the same instant (and the clock is not read for each line).
fn now() -> Millis {
    static NOW: OnceLock<Millis> = OnceLock::new();
    *NOW.get_or_init(now_ms)
}

/// The current year, and the year before, as syslog's missing year is inferred from them.
pub(super) fn this_year() -> i64 {
    1970 + (now() / 1000 / 86_400 * 400 / 146_097)
}

/// Syslog has no year: the current one, or the previous one for a date that would otherwise
/// lie in the future (a log read in January of lines from December) or that this year does
/// not have (`Feb 29`).
fn syslog_time(month: &[u8], day: &[u8], time: &[u8]) -> Option<Millis> {
    let m = MONTHS.iter().position(|x| x.as_bytes() == month)? as u32 + 1;
    let day = digits(day.trim_ascii_start())?;
    let t = clock_ms(time)?;
    let year = this_year();
    let this = date_ms(year, m, day).map(|d| d + t).filter(|&at| at <= now() + 86_400_000);
    this.or_else(|| Some(date_ms(year - 1, m, day)? + t))
}

/// Syslog's `Nov  3 02:55:20`, dated by [`syslog_time`]: the last stamp dated is kept, since
/// the lines of one second (most lines follow one of the same second) share it.
fn syslog_stamp(stamp: &[u8]) -> Option<Millis> {
    thread_local! {
        static LAST: std::cell::Cell<Option<([u8; 15], Millis)>> = const { std::cell::Cell::new(None) };
    }
    let key: [u8; 15] = stamp.try_into().ok()?;
    if let Some((last, at)) = LAST.get()
        && last == key
    {
        return Some(at);
    }
    let at = syslog_time(&stamp[0..3], &stamp[4..6], &stamp[7..15])?;
    LAST.set(Some((key, at)));
    Some(at)
}

/// `Nov  3 02:55:20 ip-172-31-35-64 web[2013]: ` → (time, length of the prefix).
fn syslog_prefix(b: &[u8]) -> Option<(Option<Millis>, usize)> {
    if b.len() < 17 || b[3] != b' ' || b[6] != b' ' || b[15] != b' ' || !b[0].is_ascii_uppercase() {
        return None;
    }
    let at = syslog_stamp(&b[..15])?;
    let host_end = 16 + b[16..].iter().position(|c| *c == b' ')?;
    let rest = &b[host_end + 1..];
    let colon = rest.iter().position(|c| *c == b':')?;
    let tag = &rest[..colon];
    if tag.is_empty() || !tag.iter().all(|c| c.is_ascii_alphanumeric() || b"._-/[]".contains(c)) {
        return None;
    }
    let mut len = host_end + 1 + colon + 1;
    if b.get(len) == Some(&b' ') {
        len += 1;
    }
    Some((Some(at), len))
}

/// `2026-11-23T22:40:01.123Z ` → (time, length of the prefix).
fn local_prefix(b: &[u8]) -> Option<(Option<Millis>, usize)> {
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    let (y, m, d) = (digits(&b[0..4])? as i64, digits(&b[5..7])?, digits(&b[8..10])?);
    let mut at = date_ms(y, m, d)? + clock_ms(&b[11..19])?;
    let mut len = 19;
    if b.get(len) == Some(&b'.') {
        let frac_len = b[20..].iter().take_while(|c| c.is_ascii_digit()).count();
        let frac = &b[20..20 + frac_len.min(3)];
        at += digits(frac).map(|f| f as i64 * 10_i64.pow(3 - frac.len() as u32)).unwrap_or(0);
        len = 20 + frac_len;
    }
    if b.get(len) == Some(&b'Z') {
        len += 1;
    }
    if b.get(len) == Some(&b' ') {
        len += 1;
    }
    Some((Some(at), len))
}

/// The common/combined log format's time, after the client, ident and user fields:
/// `127.0.0.1 - - [23/Nov/2026:22:51:58 +0000] "GET / HTTP/1.1" 500 ...` (nginx, Apache).
fn access_log_time(b: &[u8]) -> Option<Millis> {
    let open = b.iter().take(256).position(|c| *c == b'[')?;
    let t = b.get(open + 1..open + 27)?;
    if t[2] != b'/' || t[6] != b'/' || t[11] != b':' || t[20] != b' ' {
        return None;
    }
    let day = digits(&t[0..2])?;
    let m = MONTHS.iter().position(|x| x.as_bytes() == &t[3..6])? as u32 + 1;
    let y = digits(&t[7..11])? as i64;
    let mut at = date_ms(y, m, day)? + clock_ms(&t[12..20])?;
    let sign = match t[21] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (oh, om) = (digits(&t[22..24])? as i64, digits(&t[24..26])? as i64);
    at -= sign * (oh * 3600 + om * 60) * 1000;
    (b.get(open + 27) == Some(&b']')).then_some(at)
}

fn inner_time(text: &str) -> Option<Millis> {
    let b = text.as_bytes();
    if let Some(at) = access_log_time(b) {
        return Some(at);
    }
    let start = usize::from(b.first() == Some(&b'['));
    // A cheap test before the regex: most lines have no stamp of their own.
    if b.len() < start + 19 || !b[start..start + 4].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let c = INNER_STAMP.captures(text)?;
    let (y, m, d) = (c[1].parse().ok()?, c[2].parse().ok()?, c[3].parse().ok()?);
    let mut t = date_ms(y, m, d)? + clock_ms(c[4].as_bytes())?;
    if let Some(f) = c.get(5) {
        let f = &f.as_str()[..f.as_str().len().min(3)];
        t += f.parse::<i64>().ok()? * 10_i64.pow(3 - f.len() as u32);
    }
    if let Some(off) = c.get(6).map(|o| o.as_str()) {
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (h, m): (i64, i64) = (off[1..3].parse().ok()?, off[3..5].parse().ok()?);
        t -= sign * (h * 3600 + m * 60) * 1000;
    }
    Some(t)
}

/// Splits a raw line into its time and text; `last` is the previous line's time, which a line
/// without one inherits.
/// A line's text is kept up to this many bytes; the rest is cut, and the cut is said.
pub const MAX_TEXT: usize = 4096;
/// A record keeps this many lines; further lines of it are counted, not kept.
pub const MAX_RECORD_LINES: usize = 500;
/// Blank lines held after an exception line (a chained traceback may follow them).
const MAX_HELD: usize = 100;

/// ANSI escape sequences (colours, cursor moves, OSC titles and links), which a coloured
/// logger writes around the very words the search and the trace grammar look for.
static ANSI: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])").expect("static regex")
});

pub fn parse_line(source: usize, raw: &str, last: Option<Millis>) -> Line {
    let raw = raw.trim_end_matches(['\r', '\n']);
    let plain;
    let raw = if memchr::memchr(0x1b, raw.as_bytes()).is_some() {
        plain = ANSI.replace_all(raw, "");
        &*plain
    } else {
        raw
    };
    let b = raw.as_bytes();
    if let Some((at, len)) = local_prefix(b).or_else(|| syslog_prefix(b)) {
        return Line { source, at: at.or(last), text: bounded(&raw[len..]), hit: false };
    }
    Line { source, at: inner_time(raw).or(last), text: bounded(raw), hit: false }
}

/// At most [`MAX_TEXT`] bytes of `text` (cut at a character boundary), the cut said.
fn bounded(text: &str) -> String {
    if text.len() <= MAX_TEXT {
        return text.to_string();
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} … [cut by safedeploy: {} more bytes]", &text[..end], text.len() - end)
}

/// Turns a stream of lines (one source, in order) into records.
#[derive(Default)]
pub struct Grouper {
    current: Option<(Record, Runtime, Phase)>,
    /// Lines held while a trace may go on (the blank lines before a chained traceback).
    held: Vec<Line>,
    /// Lines of the current record past [`MAX_RECORD_LINES`], counted, not kept.
    cut: usize,
}

impl Grouper {
    /// Feeds one line; adds the records it completes to `out`, in order (the caller's buffer:
    /// most lines complete one record, and this runs for every line read).
    pub fn push(&mut self, line: Line, out: &mut Vec<Record>) {
        if let Some((mut rec, rt, phase)) = self.current.take() {
            match traces::step(rt, phase, &line.text) {
                Step::Hold if self.held.len() < MAX_HELD => {
                    self.held.push(line);
                    self.current = Some((rec, rt, phase));
                    return;
                }
                Step::Take(next) if self.held.len() < MAX_HELD => {
                    for l in self.held.drain(..).chain(std::iter::once(line)) {
                        if rec.lines.len() < MAX_RECORD_LINES {
                            rec.lines.push(l);
                        } else {
                            self.cut += 1;
                        }
                    }
                    self.current = Some((rec, rt, next));
                    return;
                }
                _ => {}
            }
            out.push(self.close(rec, rt));
            out.extend(self.held.drain(..).map(Record::line));
        }
        match traces::start(&line.text) {
            Some((rt, phase)) => self.current = Some((Record::line(line), rt, phase)),
            None => out.push(Record::line(line)),
        }
    }

    /// A record ends: it is a trace when it has a frame (a `file.js:1` line that took the next
    /// log line as its source line is not one: two such records would have been one group);
    /// the lines cut from it are said on a last line of its own.
    fn close(&mut self, mut rec: Record, rt: Runtime) -> Record {
        if rec.lines.len() > 1 {
            rec.frames = traces::frames(rt, &rec.texts());
            if !rec.frames.is_empty() {
                rec.trace = Some(rt);
            }
        }
        let cut = std::mem::take(&mut self.cut);
        if cut > 0 {
            let last = rec.lines.last().cloned();
            if let Some(mut l) = last {
                l.text = format!("… [cut by safedeploy: {cut} more line(s) of this record]");
                l.hit = false;
                rec.lines.push(l);
            }
        }
        rec
    }

    /// No record is open: the next line starts a new one.
    pub fn is_idle(&self) -> bool {
        self.current.is_none() && self.held.is_empty()
    }

    /// The records still open at the end of the stream.
    pub fn finish(&mut self) -> Vec<Record> {
        let current = self.current.take();
        let mut out: Vec<Record> = current.map(|(r, rt, _)| self.close(r, rt)).into_iter().collect();
        out.extend(self.held.drain(..).map(Record::line));
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
            g.push(l, &mut out);
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
    fn civil_dates_agree_with_rfc3339() {
        for stamp in ["1970-01-01T00:00:00Z", "2000-02-29T12:34:56Z", "2026-11-23T22:40:01Z", "2026-12-31T23:59:59Z"] {
            let l = parse_line(0, &format!("{stamp} x"), None);
            assert_eq!(l.at, crate::clock::parse_rfc3339(stamp), "{stamp}");
            assert_eq!(l.text, "x");
        }
        assert_eq!(
            parse_line(0, "2026-11-23T22:40:01.5Z y", None).at.map(crate::clock::rfc3339).as_deref(),
            Some("2026-11-23T22:40:01.500Z")
        );
        assert!(crate::clock::rfc3339(date_ms(this_year(), 1, 1).expect("date")).starts_with(&this_year().to_string()));
    }

    /// A date no calendar has is no time, not the next month's first days; a leap day is one
    /// in a leap year only, and syslog's (no year) is dated in the last year that had it.
    #[test]
    fn a_date_that_does_not_exist_is_no_time() {
        for line in [
            "2026-11-31T10:00:00Z x",
            "2026-02-29T10:00:00Z x",
            "2100-02-29T10:00:00Z x",
            "[2026-04-31 10:00:00,101] ERROR in app: x",
            "127.0.0.1 - - [31/Sep/2026:10:00:00 +0000] \"GET / HTTP/1.1\" 500 1",
        ] {
            assert_eq!(parse_line(0, line, None).at, None, "{line}");
            let real = line.replace("-31", "-30").replace("-29", "-28").replace("31/", "30/");
            assert!(parse_line(0, &real, None).at.is_some(), "{real}");
        }
        for stamp in ["2024-02-29T10:00:00Z", "2000-02-29T10:00:00Z", "2026-12-31T10:00:00Z", "2026-04-30T10:00:00Z"] {
            assert_eq!(parse_line(0, &format!("{stamp} x"), None).at, crate::clock::parse_rfc3339(stamp), "{stamp}");
        }
        assert_eq!(parse_line(0, "Nov 31 02:55:20 host web: x", None).at, None);
        assert_eq!(parse_line(0, "Jun 31 02:55:20 host web: x", None).at, None);
        let year = this_year();
        let last_leap = (year - 1..=year).rev().find(|y| date_ms(*y, 2, 29).is_some());
        let leap_day = parse_line(0, "Feb 29 02:55:20 host web: x", None).at;
        assert_eq!(leap_day, last_leap.map(|y| date_ms(y, 2, 29).expect("leap") + (2 * 3600 + 55 * 60 + 20) * 1000));
        for (m, d) in [("Jan", 31), ("Apr", 30), ("Nov", 30), ("Dec", 31)] {
            let line = format!("{m} {d} 02:55:20 host web: x");
            assert!(parse_line(0, &line, None).at.is_some(), "{line}");
        }
    }

    #[test]
    fn a_loggers_prefix_or_colours_do_not_hide_a_trace() {
        let ruby_first = "E, [2026-12-05T10:00:00.123456 #4242] ERROR -- : app/models/user.rb:12:in `name': undefined method `upcase' for nil (NoMethodError)";
        let from = "\tfrom app/controllers/users_controller.rb:8:in `show'";
        let prefixed_from = format!("E, [2026-12-05T10:00:00.123457 #4242] ERROR -- web: {from}");
        let cases = [
            // Ruby's Logger before the first line only, then before every line.
            (format!("{ruby_first}\n{from}\n\tfrom /gems/x.rb:5:in `call'\nI, [x #1]  INFO -- : next\n"), 3, Runtime::Ruby, "NoMethodError"),
            (format!("{ruby_first}\n{prefixed_from}\n{prefixed_from}\nnext line\n"), 3, Runtime::Ruby, "NoMethodError"),
            // Node's error in colours, as a TTY-minded logger writes it.
            ("\x1b[31mTypeError: x is undefined\x1b[39m\n\x1b[90m    at load (/app/server.js:3:31)\x1b[39m\n    at /app/server.js:8:59\nnext line\n".into(), 3, Runtime::Node, "TypeError"),
            // Go's runtime fatal errors.
            ("fatal error: concurrent map writes\n\ngoroutine 7 [running]:\nmain.store(...)\n\t/app/main.go:21 +0x45\nexit status 2\nnext line\n".into(), 6, Runtime::Go, "fatal error"),
        ];
        for (log, lines, rt, ty) in cases {
            let recs = records(&log);
            assert_eq!((recs[0].lines.len(), recs[0].trace), (lines, Some(rt)), "{log}: {recs:?}");
            let texts = recs[0].texts();
            assert_eq!(traces::error(rt, &texts).map(|e| e.0).as_deref(), Some(ty), "{log}");
            assert!(!traces::frames(rt, &texts).is_empty(), "{log}");
            assert!(!recs[0].lines.iter().any(|l| l.text.contains('\x1b')), "colours are taken off: {log}");
        }
    }

    #[test]
    fn a_python_exception_whose_message_goes_on_is_one_record() {
        let log = "Traceback (most recent call last):\n  File \"/app/views.py\", line 9, in index\n    rows = db.execute(q)\nsqlalchemy.exc.OperationalError: (sqlite3.OperationalError) no such column: post.body\n[SQL: SELECT post.body FROM post]\n(Background on this error at: https://sqlalche.me/e/20/e3q8)\nnext line\n";
        let recs = records(log);
        assert_eq!(recs.len(), 2, "{recs:?}");
        assert_eq!((recs[0].lines.len(), recs[0].trace), (6, Some(Runtime::Python)));
    }

    #[test]
    fn java_and_node_traces_with_their_indentation_stripped_are_one_record() {
        // Elastic Beanstalk's log bundles strip the leading whitespace of every line.
        let java = "Exception in thread \"main\" java.lang.IllegalStateException: no store\nat com.example.Store.load(Store.java:9)\nat com.example.Main.main(Main.java:3)\nCaused by: java.io.IOException: gone\nat com.example.Disk.read(Disk.java:4)\n... 1 more\nnext line\n";
        let recs = records(java);
        assert_eq!((recs.len(), recs[0].lines.len(), recs[0].trace), (2, 6, Some(Runtime::Java)), "{recs:?}");
        let node = "TypeError: x is undefined\nat load (/app/server.js:3:31)\nat /app/server.js:8:59\nnext line\n";
        let recs = records(node);
        assert_eq!((recs.len(), recs[0].lines.len(), recs[0].trace), (2, 3, Some(Runtime::Node)), "{recs:?}");
    }

    #[test]
    fn a_trace_without_frames_is_not_a_trace() {
        let recs = records("a.js:1\nERROR disk full\nx\nb.js:2\nERROR db refused\ny\nTypeError: alone\nnext\n");
        assert!(recs.iter().all(|r| !r.is_traceback()), "{recs:?}");
        let recs = records("TypeError: bad\n    at f (/app/a.js:1:2)\n");
        assert!(recs[0].is_traceback(), "{recs:?}");
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

    /// Found by `scripts/fuzz log_records`: Unicode digits in a stamp's offset were sliced by byte.
    #[test]
    fn fuzz_regression_unicode_digits_in_a_stamp() {
        // The odd offset is not an offset: the stamp reads as UTC.
        let utc = crate::clock::parse_rfc3339("2026-11-03T02:55:20Z");
        assert_eq!(inner_time("[2026-11-03 02:55:20 +0\u{662}00] x"), utc);
        let crash = include_bytes!("../../fuzz/regressions/log_records/crash-c79b2aaa23ad97c58c8c99193c6e7a38efccdf4a");
        let mut g = Grouper::default();
        for raw in String::from_utf8_lossy(crash).split('\n') {
            g.push(parse_line(0, raw, None), &mut vec![]);
        }
        g.finish();
    }

    #[test]
    fn inner_stamps_of_gunicorn_flask_and_nginx() {
        for (raw, want) in [
            (
                r#"127.0.0.1 - - [23/Nov/2026:22:51:58 +0000] "POST /shorten HTTP/1.1" 500 265 "-" "curl/8.5""#,
                "2026-11-23T22:51:58.000Z",
            ),
            (r#"10.0.0.7 - alice [01/Dec/2026:01:30:00 +0130] "GET / HTTP/1.0" 200 12"#, "2026-12-01T00:00:00.000Z"),
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
