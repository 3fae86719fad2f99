//! The search of one source, from bytes to occurrences.
//!
//! ripgrep's engine finds the candidate lines (every byte is searched: never "binary file
//! matches"), among them every line that starts a stack trace and a Python traceback's frames,
//! and hands over lines of context around them (enough for the rest of a trace). Only what a
//! report can use is parsed: the lines of a hit, of its traceback and of the records around it.
//! Context lines after a window has closed stay raw in a ring (the next hit's before-context,
//! and a lead of a few lines where its record may start) and are dropped unread; of the ring,
//! the lead is read only when it can change what the hit's history holds. Parsing every
//! context line used to be most of collect-logs' time.
//!
//! Each hit record is one occurrence: the record and `context` records either side. A hit line
//! right before a traceback is that traceback's message (Python's `logger.exception` writes
//! both), so the two are one record.

mod mapped;

use super::groups::Store;
use super::parse::{self, Grouper, Record};
use super::traces;
use crate::clock::Millis;
use crate::usage;
use anyhow::Result;
use regex::Regex;
use std::collections::VecDeque;
use std::io::Read;
use std::path::Path;
use std::rc::Rc;

/// Also searched for, whatever the pattern: the lines that start or continue a Python
/// traceback (header, frames, chain markers) and JVM frames, whose traces run longest. The
/// other runtimes' traces start on a line the pattern selects (an error, an exception, a panic)
/// and their rest comes as context ([`TRACE_TAIL`]); a context line far from any candidate is
/// always a record of its own.
pub(super) const TRACEBACK_LINES: &str = concat!(
    r#"Traceback \(most recent call last\)|File "|"#,
    r"During handling of the above exception|The above exception was the direct cause|",
    // JVM frames: a Java trace runs to hundreds of frames between its `Caused by:` lines (and
    // Elastic Beanstalk strips the tab before their `at`).
    r"\.java:\d"
);

/// Lines after a candidate that may still belong to its record though they match nothing: a
/// Python frame's source and caret lines and its exception, and the frames of the other
/// runtimes' traces, whose first line (an error, an exception, a panic) is the candidate. They
/// are handed over, not parsed: only the lines that continue an open trace are (see
/// `Scanner::line`). Searching for each runtime's frame lines instead cost the search its
/// literal prefilter (1.3x on 1 GiB for eight literals, 7x with a `^` anchor).
const TRACE_TAIL: usize = 40;
/// Lines before a candidate that may start its record: Node's crash header (`server.js:14`, the
/// source line, the caret, a blank line) comes before the error line.
const TRACE_LEAD: usize = 4;

/// What is selected, and how much is kept around it.
pub(super) struct Selection<'a> {
    /// What the search looks for: a superset of what `select` takes, plus `TRACEBACK_LINES`.
    pub candidates: &'a grep_regex::RegexMatcher,
    /// Decides, line by line, among the candidates the search finds.
    pub select: &'a Regex,
    /// Records each side of a hit.
    pub context: usize,
    pub since: Option<Millis>,
    pub until: Option<Millis>,
    /// Set by SIGINT/SIGTERM: the search stops.
    pub interrupted: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Whether a line stamped `t` falls in the window. A stamp of whole seconds (nginx's access
/// log, syslog) stands for its whole second: a 500 logged at `22:51:58` by a version deployed at
/// `22:51:58.300` is in a window from the deploy.
fn in_window(t: Millis, since: Option<Millis>, until: Option<Millis>) -> bool {
    let last = if t.rem_euclid(1000) == 0 { t + 999 } else { t };
    since.is_none_or(|s| last >= s) && until.is_none_or(|u| t <= u)
}

impl Selection<'_> {
    /// Lines of context the search hands over: `context` records either side of a candidate
    /// (a record of several lines starts at or just before a candidate: [`TRACE_LEAD`]), and
    /// the rest of a trace after one ([`TRACE_TAIL`]).
    fn search_context(&self) -> (usize, usize) {
        (self.context + TRACE_LEAD, self.context + TRACE_TAIL)
    }

    fn in_window(&self, r: &Record) -> bool {
        r.at().is_none_or(|t| in_window(t, self.since, self.until))
    }
}

/// A hit waiting for its after-context. Its records are shared with the other windows and the
/// history, not copied into each.
struct Pending {
    records: Vec<Rc<Record>>,
    hit: usize,
    after: usize,
}

/// One source's lines → records → occurrences, folded into the store as they complete.
struct Scanner<'s, 'a> {
    store: &'s mut Store<'a>,
    sel: &'s Selection<'s>,
    name: String,
    index: usize,
    /// Parsing every line as it comes (near a hit), or only keeping the last few raw.
    active: bool,
    ring: VecDeque<Vec<u8>>,
    ring_cap: usize,
    /// Buffers of lines read out of the ring, for the next lines kept in it.
    spare: Vec<Vec<u8>>,
    /// Whether lines of the ring that could only pass through the history are left unread
    /// (see [`Scanner::read_ring`]); off, every line is read, as the reference in the tests.
    pass_by: bool,
    /// Lines of the ring left unread so.
    passed_by: u64,
    /// Records accepted so far (in the window).
    accepted: usize,
    /// Lines fell out of the ring unread: what came before it is not adjacent any more.
    gap: bool,
    grouper: Grouper,
    /// The records the last line completed (a buffer kept from line to line).
    done: Vec<Record>,
    last: Option<Millis>,
    /// The last `context` records (the next hit's before-context).
    history: VecDeque<Rc<Record>>,
    pending: VecDeque<Pending>,
    /// A single-line hit held back one record: a traceback may follow it, as its message.
    held: Option<Record>,
    /// The last record was a single-line hit outside the window (see `held`).
    outside_held: bool,
}

impl<'s, 'a> Scanner<'s, 'a> {
    fn new(store: &'s mut Store<'a>, sel: &'s Selection<'s>, index: usize, path: &Path) -> Self {
        Scanner {
            store,
            sel,
            name: path.display().to_string(),
            index,
            active: false,
            ring: VecDeque::new(),
            ring_cap: sel.search_context().0,
            spare: vec![],
            pass_by: true,
            passed_by: 0,
            accepted: 0,
            gap: false,
            grouper: Grouper::default(),
            done: vec![],
            last: None,
            history: VecDeque::new(),
            pending: VecDeque::new(),
            held: None,
            outside_held: false,
        }
    }

    fn line(&mut self, raw: &[u8], candidate: bool) {
        if !self.active {
            if !candidate {
                self.keep_raw(raw);
                return;
            }
            self.active = true;
            if std::mem::take(&mut self.gap) {
                self.history.clear();
                self.last = None;
            }
            self.read_ring();
        }
        self.parse(raw, candidate);
        if !candidate && self.settled() {
            self.active = false;
        }
    }

    /// Keeps a context line raw in the ring (its buffer reused from a line read before).
    fn keep_raw(&mut self, raw: &[u8]) {
        let mut buf = if self.ring.len() == self.ring_cap {
            self.gap = true;
            match self.ring.pop_front() {
                Some(buf) => buf,
                None => return, // no ring: `--context 0` and no lead
            }
        } else {
            self.spare.pop().unwrap_or_default()
        };
        buf.clear();
        buf.extend_from_slice(raw);
        self.ring.push_back(buf);
    }

    /// Reads the lines kept before a candidate. The ring holds `context` lines and a lead (a
    /// record may start a few lines before its candidate). When no line of the lead can start
    /// a trace, each is a record of one line, and the lines after it are read first: if they
    /// give `context` records of the window, those are the whole before-context, and the lead
    /// would only have passed through the history and fallen out of it, so it is not read at
    /// all (on the benchmark's log, four lines of every seven). Otherwise its records are read
    /// after all and put in the history before theirs. The first line after the lead must have
    /// a time of its own (it would take the lead's), or every line is read in order.
    fn read_ring(&mut self) {
        // At least one line is read first (with no context, the last one).
        let lead = self.ring.len().saturating_sub(self.sel.context.max(1));
        if self.pass_by && lead > 0 && self.ring.iter().take(lead).all(|raw| !traces::may_start(raw)) {
            let first = self.read(&self.ring[lead], None);
            if first.at.is_some() {
                let before_lead = self.last;
                let accepted = self.accepted;
                self.last = first.at;
                self.take(first, false);
                self.parse_ring(lead + 1..self.ring.len());
                let kept = self.accepted - accepted;
                if kept < self.sel.context {
                    self.put_lead_before(lead, kept, before_lead);
                } else {
                    self.passed_by += lead as u64;
                }
                return self.recycle();
            }
        }
        self.parse_ring(0..self.ring.len());
        self.recycle();
    }

    fn parse_ring(&mut self, lines: std::ops::Range<usize>) {
        for i in lines {
            let raw = std::mem::take(&mut self.ring[i]);
            self.parse(&raw, false);
            self.ring[i] = raw;
        }
    }

    /// The lead's records (one line each), read after the `kept` records that came after them
    /// were taken, and put before those in the history, as reading in order would have.
    fn put_lead_before(&mut self, lead: usize, kept: usize, mut last: Option<Millis>) {
        let mut records = vec![];
        for raw in self.ring.iter().take(lead) {
            let line = self.read(raw, last);
            last = line.at;
            let rec = Record::line(line);
            if self.sel.in_window(&rec) {
                records.push(Rc::new(rec));
            }
        }
        let after: Vec<Rc<Record>> = self.history.drain(self.history.len() - kept..).collect();
        for rec in records.into_iter().chain(after) {
            self.remember(rec);
        }
    }

    /// Empties the ring, keeping its buffers for the next lines.
    fn recycle(&mut self) {
        self.spare.extend(self.ring.drain(..));
    }

    /// Nothing is open: no record, no window waiting for context.
    fn settled(&self) -> bool {
        self.pending.is_empty() && self.held.is_none() && self.grouper.is_idle()
    }

    fn parse(&mut self, raw: &[u8], candidate: bool) {
        let line = self.read(raw, self.last);
        self.last = line.at;
        self.take(line, candidate);
    }

    /// A raw line as a line of text with its time (`last`'s when it has none of its own).
    fn read(&self, raw: &[u8], last: Option<Millis>) -> parse::Line {
        // Valid UTF-8 (nearly every line) is checked by the standard library's fast path; only
        // a line that is not pays for the replacement of its bad bytes.
        let text = match std::str::from_utf8(raw) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(raw),
        };
        parse::parse_line(self.index, &text, last)
    }

    /// A line read, into its record.
    fn take(&mut self, mut line: parse::Line, candidate: bool) {
        // Every line the pattern selects is a candidate; a context line never is.
        line.hit = candidate && self.sel.select.is_match(&line.text);
        let mut done = std::mem::take(&mut self.done);
        self.grouper.push(line, &mut done);
        for rec in done.drain(..) {
            self.record(rec);
        }
        self.done = done;
    }

    fn record(&mut self, rec: Record) {
        if !self.sel.in_window(&rec) {
            // Counted as the window counts them: a traceback right after a hit line is that
            // line's (its message's) record, not one more.
            let joins = std::mem::take(&mut self.outside_held) && rec.is_traceback();
            let hit = rec.lines.iter().any(|l| l.hit);
            if hit && !joins {
                self.store.outside.note(rec.at());
                self.outside_held = rec.lines.len() == 1;
            }
            return;
        }
        self.outside_held = false;
        if let Some(mut message) = self.held.take() {
            if rec.is_traceback() {
                message.lines.extend(rec.lines);
                message.trace = rec.trace;
                message.frames = rec.frames;
                return self.accept(message, true);
            }
            self.accept(message, true);
        }
        let hit = rec.lines.iter().any(|l| l.hit);
        if hit && rec.lines.len() == 1 {
            self.held = Some(rec);
            return;
        }
        self.accept(rec, hit);
    }

    fn accept(&mut self, rec: Record, hit: bool) {
        let rec = Rc::new(rec);
        for p in &mut self.pending {
            p.records.push(Rc::clone(&rec));
            p.after -= 1;
        }
        if hit {
            self.store.matches += 1;
            let mut records: Vec<Rc<Record>> = self.history.iter().cloned().collect();
            records.push(Rc::clone(&rec));
            self.pending.push_back(Pending { hit: records.len() - 1, records, after: self.sel.context });
        }
        // Every window waits for the same number of records, so they complete in order.
        while self.pending.front().is_some_and(|p| p.after == 0) {
            let Some(p) = self.pending.pop_front() else { break };
            self.store.occurrence(&self.name, &p.records, p.hit);
        }
        self.accepted += 1;
        self.remember(rec);
    }

    /// A record into the history of the last `context` records.
    fn remember(&mut self, rec: Rc<Record>) {
        if self.sel.context > 0 {
            if self.history.len() == self.sel.context {
                self.history.pop_front();
            }
            self.history.push_back(rec);
        }
    }

    /// The end of a region (or of the source): what is open closes with what it has.
    fn flush(&mut self) {
        for rec in self.grouper.finish() {
            self.record(rec);
        }
        if let Some(message) = self.held.take() {
            self.accept(message, true);
        }
        for p in std::mem::take(&mut self.pending) {
            self.store.occurrence(&self.name, &p.records, p.hit);
        }
        self.history.clear();
        self.recycle();
        self.active = false;
        self.gap = false;
        self.outside_held = false;
        // A region's time does not carry into the next one: the lines between were not read.
        self.last = None;
    }

    fn lines(&mut self, bytes: &[u8], candidate: bool) {
        for raw in bytes.split_inclusive(|b| *b == b'\n') {
            self.line(raw, candidate);
        }
    }
}

impl grep_searcher::Sink for Scanner<'_, '_> {
    type Error = std::io::Error;

    fn matched(&mut self, _: &grep_searcher::Searcher, m: &grep_searcher::SinkMatch<'_>) -> Result<bool, Self::Error> {
        self.lines(m.bytes(), true);
        Ok(true)
    }
    fn context(
        &mut self,
        _: &grep_searcher::Searcher,
        c: &grep_searcher::SinkContext<'_>,
    ) -> Result<bool, Self::Error> {
        self.lines(c.bytes(), false);
        Ok(true)
    }
    fn context_break(&mut self, _: &grep_searcher::Searcher) -> Result<bool, Self::Error> {
        self.flush();
        Ok(true)
    }
    fn finish(&mut self, _: &grep_searcher::Searcher, _: &grep_searcher::SinkFinish) -> Result<(), Self::Error> {
        self.flush();
        Ok(())
    }
}

/// How a large plain file is split: a file at least `min` bytes long, into one part per core.
#[derive(Clone, Copy)]
struct Split {
    min: u64,
    cores: u64,
    /// How each part is mapped.
    windows: mapped::Windows,
}

impl Split {
    fn here() -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8) as u64;
        Split { min: 32 << 20, cores, windows: mapped::WINDOWS }
    }
}
/// How far past a planned cut a quiet stretch is looked for.
const CUT_SEARCH: u64 = 4 << 20;
/// The first stretch read there: a quiet stretch is usually within a few hundred lines, and
/// every byte read and searched before the parts start is time no thread searches in.
const CUT_FIRST: usize = 64 << 10;

/// Searches one source and folds its occurrences into the store; returns the bytes read.
///
/// A large plain file is split into one part per core, each searched on its own thread. A part
/// ends inside a quiet stretch, where a single search would have a context break anyway (more
/// candidate-free lines than the before- and after-context together), so the parts give the
/// same occurrences as one search; their groups are folded in, in the order of the file.
pub(super) fn search(store: &mut Store<'_>, sel: &Selection<'_>, index: usize, path: &Path) -> Result<u64> {
    search_split(store, sel, index, path, Split::here())
}

fn search_split(store: &mut Store<'_>, sel: &Selection<'_>, index: usize, path: &Path, split: Split) -> Result<u64> {
    let parts = parts(sel, path, split)?;
    if parts.len() < 2 {
        return match plain_len(path) {
            Some(len) => {
                mapped::search_range(&mut Scanner::new(store, sel, index, path), path, (0, len), split.windows)
            }
            None => search_reader(store, sel, index, path, super::open(path)?),
        };
    }
    let results: Vec<Result<(Store<'_>, u64)>> = std::thread::scope(|s| {
        let threads: Vec<_> = parts
            .iter()
            .map(|&(start, end)| {
                let mut part = store.part();
                s.spawn(move || -> Result<(Store<'_>, u64)> {
                    crate::failpoint::panic_at("log part");
                    let mut scanner = Scanner::new(&mut part, sel, index, path);
                    let n = mapped::search_range(&mut scanner, path, (start, end), split.windows)?;
                    Ok((part, n))
                })
            })
            .collect();
        // A part whose thread panicked has no result: the search could not be done, which is
        // never a report of fewer errors.
        threads
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                t.join().unwrap_or_else(|e| {
                    Err(crate::could_not_act!(
                        "{}: the search of part {} of {} stopped with an internal error ({})",
                        path.display(),
                        i + 1,
                        parts.len(),
                        crate::error::panic_message(&*e)
                    ))
                })
            })
            .collect()
    });
    let mut total = 0;
    for r in results {
        let (part, n) = r?;
        store.absorb(part);
        total += n;
    }
    Ok(total)
}

/// Where a plain file is cut into parts: `(start, end)` byte ranges, or none to search it whole
/// (stdin, gzip, a small file, one core, or no quiet stretch found near a planned cut).
fn parts(sel: &Selection<'_>, path: &Path, split: Split) -> Result<Vec<(u64, u64)>> {
    let cores = split.cores;
    let Some(len) = plain_len(path) else { return Ok(vec![]) };
    if cores < 2 || len < split.min {
        return Ok(vec![]);
    }
    let Ok(file) = std::fs::File::open(path) else { return Ok(vec![]) };
    let mut cuts = vec![0];
    let mut window = vec![];
    for k in 1..cores {
        let planned = len * k / cores;
        if planned <= cuts.last().copied().unwrap_or(0) {
            continue;
        }
        if let Some(cut) = cut_after(sel, &file, planned, &mut window)? {
            cuts.push(planned + cut);
        }
    }
    cuts.push(len);
    Ok(cuts.windows(2).map(|w| (w[0], w[1])).filter(|(a, b)| a < b).collect())
}

/// The length of a plain file that can be mapped and read in parts: a regular file, not stdin,
/// not gzip. Looked at before it is opened: opening a FIFO would wait for its writer, and
/// closing it again could lose what the writer had sent. A regular file of length 0 is read as
/// a stream: `/proc` and `/sys` files say 0 and still hold text (and an empty file reads the
/// same either way).
fn plain_len(path: &Path) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    let len = match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() > 0 && path != Path::new("-") => m.len(),
        _ => return None,
    };
    let file = std::fs::File::open(path).ok()?;
    let mut magic = [0u8; 2];
    let gzip = file.read_exact_at(&mut magic, 0).is_ok() && magic == [0x1f, 0x8b];
    (!gzip).then_some(len)
}

/// A quiet cut in the [`CUT_SEARCH`] bytes from `at`, looked for in a stretch that doubles from
/// [`CUT_FIRST`] until one is found. The answer is the one the whole stretch gives: the lines
/// past a shorter stretch count as candidates, so a cut found in it is one the longer stretch
/// has too, and the first.
fn cut_after(sel: &Selection<'_>, file: &std::fs::File, at: u64, window: &mut Vec<u8>) -> Result<Option<u64>> {
    let mut size = CUT_FIRST;
    loop {
        window.resize(size, 0);
        let n = read_full_at(file, window, at)?;
        if let Some(cut) = quiet_cut(sel, &window[..n])? {
            return Ok(Some(cut));
        }
        if n < size || size as u64 >= CUT_SEARCH {
            return Ok(None);
        }
        size = (size * 2).min(CUT_SEARCH as usize);
    }
}

fn read_full_at(file: &std::fs::File, buf: &mut [u8], at: u64) -> Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], at + n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// A cut inside `bytes` (which start anywhere in a line): the start of a line that lies more
/// than the after-context past the previous candidate line and more than the before-context
/// ahead of the next one. The lines just outside `bytes` count as candidates, being unknown.
fn quiet_cut(sel: &Selection<'_>, bytes: &[u8]) -> Result<Option<u64>> {
    let (before, after) = sel.search_context();
    let Some(first) = bytes.iter().position(|b| *b == b'\n') else { return Ok(None) };
    let body = &bytes[first + 1..];
    let complete = body.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let body = &body[..complete];
    // Line numbers of the candidates, 1-based; the line before the body is 0.
    let mut candidates: Vec<u64> = vec![0];
    grep_searcher::SearcherBuilder::new()
        .binary_detection(grep_searcher::BinaryDetection::none())
        .line_number(true)
        .build()
        .search_slice(
            sel.candidates,
            body,
            grep_searcher::sinks::Bytes(|n, _| {
                candidates.push(n);
                Ok(true)
            }),
        )?;
    let lines = memchr::memchr_iter(b'\n', body).count() as u64;
    candidates.push(lines + 1);
    let Some(w) = candidates.windows(2).find(|w| w[1] - w[0] > (before + after + 1) as u64) else {
        return Ok(None);
    };
    // The cut line: just past the earlier candidate's after-context.
    let cut_line = w[0] + after as u64 + 1;
    let offset = if cut_line == 1 {
        0
    } else {
        memchr::memchr_iter(b'\n', body).nth(cut_line as usize - 2).map_or(0, |i| i + 1)
    };
    Ok(Some((first + 1 + offset) as u64))
}

/// Searches a reader from its first line to its end.
fn search_reader(
    store: &mut Store<'_>,
    sel: &Selection<'_>,
    index: usize,
    path: &Path,
    reader: Box<dyn Read + '_>,
) -> Result<u64> {
    let (before, after) = sel.search_context();
    let mut searcher = grep_searcher::SearcherBuilder::new()
        .binary_detection(grep_searcher::BinaryDetection::none())
        .line_number(false)
        .before_context(before)
        .after_context(after)
        .build();
    let mut scanner = Scanner::new(store, sel, index, path);
    // Lines longer than MAX_LINE are cut before the search sees them: its buffer holds whole
    // lines, and a log may hold one of any length (or be /dev/zero).
    let capped = super::cap::LineCap::new(reader, MAX_LINE).stop_on(sel.interrupted.clone());
    let (read, cut) = (capped.read.clone(), capped.cut.clone());
    searcher.search_reader(sel.candidates, capped, &mut scanner).map_err(|e| {
        if e.to_string().contains(super::cap::INTERRUPTED) {
            crate::error::Error::interrupted(format!(
                "interrupted while reading {}; no report was written",
                path.display()
            ))
            .into()
        } else {
            usage!("{}: {e}", path.display())
        }
    })?;
    scanner.store.lines_cut += cut.get();
    Ok(read.get())
}

/// The longest line the search takes whole; the rest of a longer one is dropped, and said.
pub(super) const MAX_LINE: usize = 64 * 1024;

#[cfg(test)]
mod tests {

    #[test]
    fn a_whole_second_stamp_stands_for_its_second() {
        let deploy = 1_000_300; // .300 into second 1000
        assert!(in_window(1_000_000, Some(deploy), None), "a line of that second is kept");
        assert!(!in_window(999_000, Some(deploy), None), "a line of the second before is not");
        assert!(!in_window(1_000_100, Some(deploy), None), "a millisecond stamp is exact");
        assert!(in_window(1_000_300, Some(deploy), Some(1_000_300)));
        assert!(!in_window(1_001_000, None, Some(1_000_999)));
    }

    use super::*;

    /// An Elastic Beanstalk-style log with errors at uneven distances, some close together.
    fn log(lines: usize) -> String {
        let mut out = String::new();
        let mut n = 0u64;
        while (n as usize) < lines {
            n += 1;
            let pre = format!("Nov  3 02:{:02}:{:02} ip-172-31-35-64 web[2013]: ", n / 60 % 60, n % 60);
            let roll = n.wrapping_mul(2654435761) % 1000;
            if roll < 4 {
                for l in [
                    "[2026-11-03 02:55:20,101] ERROR in app: Exception on /shorten [POST]",
                    "Traceback (most recent call last):",
                    "File \"/var/app/current/application.py\", line 67, in load_urls",
                    "return json.loads(urls_file)",
                    "TypeError: the JSON object must be str, bytes or bytearray, not TextIOWrapper",
                ] {
                    out += &format!("{pre}{l}\n");
                }
            } else if roll < 8 {
                out += &format!("{pre}10.0.{}.{} - - \"POST /shorten HTTP/1.1\" 500 265\n", n / 256 % 256, n % 256);
            } else {
                out += &format!("{pre}10.0.{}.{} - - \"GET /x{n} HTTP/1.1\" 302 {n}\n", n / 256 % 256, n % 256);
            }
        }
        out
    }

    /// A group as compared: key, count, first and last seen, example.
    type Seen = (u64, usize, Option<Millis>, Option<Millis>, Vec<String>);

    /// The search's matcher for a pattern's candidates, as collect-logs builds it.
    fn matcher(candidates: &str) -> grep_regex::RegexMatcher {
        grep_regex::RegexMatcherBuilder::new()
            .line_terminator(Some(b'\n'))
            .build(&format!("{candidates}|{TRACEBACK_LINES}"))
            .expect("matcher")
    }

    /// A selection with `context` records either side and no time window.
    fn selection<'a>(candidates: &'a grep_regex::RegexMatcher, select: &'a Regex, context: usize) -> Selection<'a> {
        Selection { candidates, select, context, since: None, until: None, interrupted: Default::default() }
    }

    /// Runs `f` with the default selection (the product's pattern and candidates, 2 lines of
    /// context) and an empty store.
    fn with_defaults<T>(f: impl FnOnce(&Selection<'_>, Store<'_>) -> T) -> T {
        let select = Regex::new(super::super::DEFAULT_PATTERN).expect("regex");
        let matcher = matcher(super::super::DEFAULT_CANDIDATES);
        let sel = selection(&matcher, &select, 2);
        let redactor = crate::redact::Redactor::default();
        f(&sel, Store::new(&[], &redactor))
    }

    /// Runs `f` with a selection of the lines holding `ERROR`, `context` records either side.
    fn with_errors<T>(context: usize, f: impl FnOnce(&Selection<'_>) -> T) -> T {
        let matcher = matcher("ERROR");
        let select = Regex::new("ERROR").expect("regex");
        f(&selection(&matcher, &select, context))
    }

    fn run(path: &Path, split: Split) -> (Vec<Seen>, usize, u64) {
        with_defaults(|sel, mut store| {
            let bytes = search_split(&mut store, sel, 0, path, split).expect("search");
            let super::super::groups::Found { groups, matches, .. } = store.finish();
            (groups.into_iter().map(|g| (g.key, g.count, g.first, g.last, g.example)).collect(), matches, bytes)
        })
    }

    #[test]
    fn a_file_split_across_cores_gives_what_one_search_gives() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("web.log");
        std::fs::write(&path, log(60_000)).expect("write");
        let sel_re = Regex::new("x").expect("regex");
        let matcher = matcher(super::super::DEFAULT_CANDIDATES);
        let sel = selection(&matcher, &sel_re, 2);
        let parts = parts(&sel, &path, Split { min: 0, cores: 4, windows: mapped::WINDOWS }).expect("parts");
        assert_eq!(parts.len(), 4, "{parts:?}");
        let whole = run(&path, Split { min: 0, cores: 1, windows: mapped::WINDOWS });
        assert!(whole.1 > 300, "{} hits", whole.1);
        assert_eq!(whole.0.len(), 2, "{:#?}", whole.0.iter().map(|g| (g.1, &g.4)).collect::<Vec<_>>());
        for cores in [2, 3, 4, 5, 7] {
            assert_eq!(whole, run(&path, Split { min: 0, cores, windows: mapped::WINDOWS }), "{cores} parts");
        }
    }

    /// The log above with the traces of other runtimes among its lines: a Java trace whose
    /// frames run past any context, a Node crash whose header comes before its error line, a
    /// Go panic, and a last line without a newline.
    fn mixed_log() -> String {
        let mut out = String::new();
        for (i, chunk) in log(12_000).lines().collect::<Vec<_>>().chunks(397).enumerate() {
            out += &chunk.join("\n");
            out += "\n";
            // A word of its own for each error, so each occurrence is its group's example (the
            // example holds its context: what the two searches must agree on).
            let w: String = format!("{i:03}").chars().map(|c| (b'a' + c as u8 - b'0') as char).collect();
            match i % 3 {
                0 => {
                    out += &format!(
                        "2026-11-03T02:55:21.000Z ERROR [main] c.e.App - request failed {w}\njava.lang.IllegalStateException: boom {w}\n"
                    );
                    for f in 0..60 {
                        out += &format!("\tat com.example.App.{w}{f}(App.java:{})\n", 10 + f);
                    }
                    out += "Caused by: java.io.IOException: closed\n\tat com.example.Db.read(Db.java:7)\n";
                }
                1 => {
                    out += &format!(
                        "/var/app/current/server.js:14\n    throw new Error('no db');\n    ^\n\nError: no db {w}\n    at {w} (/var/app/current/server.js:14:11)\n    at Module._compile (node:internal/modules/cjs/loader:1256:14)\n"
                    )
                }
                _ => {
                    out += &format!(
                        "panic: runtime error: {w} out of range [3] with length 3\n\ngoroutine 1 [running]:\nmain.{w}()\n\t/app/main.go:9 +0x1d\nexit status 2\n"
                    )
                }
            }
        }
        out + "2026-11-03T03:00:00.000Z ERROR the last line has no newline"
    }

    /// The streamed search (stdin, FIFOs, gzip) and the mapped one agree on every group, its
    /// count, its first and last times and its example, whatever the windows' size (windows of
    /// a few lines cross every record and trace), on one core and on several.
    #[test]
    fn a_mapped_search_gives_what_the_streamed_search_gives_whatever_its_windows() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("web.log");
        std::fs::write(&path, mixed_log()).expect("write");
        let select = Regex::new(super::super::DEFAULT_PATTERN).expect("regex");
        let matcher = matcher(super::super::DEFAULT_CANDIDATES);
        for context in [0, 2, 5] {
            let sel = selection(&matcher, &select, context);
            let redactor = crate::redact::Redactor::default();
            let found = |search: &dyn Fn(&mut Store<'_>) -> u64| {
                let mut store = Store::new(&[], &redactor);
                let bytes = search(&mut store);
                let super::super::groups::Found { groups, matches, .. } = store.finish();
                let groups: Vec<Seen> =
                    groups.into_iter().map(|g| (g.key, g.count, g.first, g.last, g.example)).collect();
                (groups, matches, bytes)
            };
            let streamed = found(&|store| {
                search_reader(store, &sel, 0, &path, super::super::open(&path).expect("open")).expect("search")
            });
            assert!(streamed.0.len() >= 30 && streamed.1 > 100, "{} groups, {} hits", streamed.0.len(), streamed.1);
            for windows in [
                mapped::Windows { size: 700, overlap: 4096 },
                mapped::Windows { size: 4096, overlap: 4096 },
                mapped::Windows { size: 100_000, overlap: 8192 },
                mapped::WINDOWS,
            ] {
                for cores in [1, 3] {
                    let split = Split { min: 0, cores, windows };
                    let got = found(&|store| search_split(store, &sel, 0, &path, split).expect("search"));
                    assert_eq!(streamed, got, "context {context}, {windows:?}, {cores} core(s)");
                }
            }
        }
    }

    /// A log of every kind of line the lead of a ring can hold, in a seeded random order: lines
    /// with and without a time of their own, colour codes inside a word, `\r\r\n` endings, a
    /// line that ends in a digit, Node's crash header a few lines before its error, Ruby's
    /// logger, and the traces of each runtime.
    fn hostile_log(seed: u64, lines: usize) -> String {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut out = String::new();
        for n in 0..lines {
            let stamp = match rng.u8(0..4) {
                0 => String::new(),
                1 => format!("2026-11-03T02:{:02}:{:02}.{:03}Z ", n / 3600 % 60, n / 60 % 60, n % 1000),
                _ => format!("Nov  3 02:{:02}:{:02} ip-172-31-35-64 web[2013]: ", n / 60 % 60, n % 60),
            };
            let body = match rng.u8(0..40) {
                0 => "ERROR in app: Exception on /shorten [POST]".to_string(),
                1 => "Traceback (most recent call last):\nFile \"/app/a.py\", line 3, in f\nx()\nKeyError: 'k'".into(),
                2 => format!(
                    "/var/app/current/server.js:{n}\n    const rows = db.query(sql);\n    ^\n\nTypeError: no db"
                ),
                3 => "\nTypeError: no db\n    at f (/app/server.js:3:1)".into(),
                4 => format!("\"POST /x HTTP/1.1\" 500 {n}"),
                5 => format!("request took {n}"),
                6 => "colours \x1b[31mErr\x1b[0mor: here".into(),
                7 => format!("windows line {n}\r\r"),
                8 => "E, [2026-11-03T02:55:20.123 #1] ERROR -- : app/x.rb:3:in 'f': bad (NameError)".into(),
                9 => "panic: boom\n\ngoroutine 1 [running]:\nmain.f()\n\t/app/main.go:9 +0x1d".into(),
                10 => "java.lang.IllegalStateException: x\n\tat a.B.c(B.java:1)".into(),
                11 => "".into(),
                // A word the colour codes split: no candidate, yet its text starts a trace.
                12 => "E\x1b[0mrror: split\n    at g (/app/server.js:5:1)\n    at h (/app/server.js:6:1)".into(),
                // Ruby's first line whose class names no error: no candidate either.
                13 => "app/x.rb:3:in 'f': none (ActiveRecord::RecordNotFound)\n\tfrom app/y.rb:4:in 'g'".into(),
                _ => format!("10.0.0.{} - - \"GET /{n} HTTP/1.1\" 302 {n} \"-\" \"curl/8.5.0\"", n % 256),
            };
            for l in body.split('\n') {
                out += &format!("{stamp}{l}\n");
            }
        }
        out
    }

    /// Leaving the ring's lead unread changes nothing: with and without it, the same groups,
    /// counts, times and examples, whatever the context and the window (a window that leaves
    /// kept lines out, stamps that the lead alone would give).
    #[test]
    fn lines_passed_by_unread_change_no_group_or_example() {
        let dir = tempfile::tempdir().expect("tmp");
        let select = Regex::new(super::super::DEFAULT_PATTERN).expect("regex");
        let matcher = matcher(super::super::DEFAULT_CANDIDATES);
        let redactor = crate::redact::Redactor::default();
        let day = crate::clock::parse_rfc3339(&format!("{}-11-03T00:00:00Z", parse::this_year())).expect("t");
        let windows =
            [(None, None), (Some(day + 2 * 3_600_000 + 10 * 60_000), None), (None, Some(day + 2 * 3_600_000 + 30_000))];
        let mut passed_by = 0;
        for seed in 0..4 {
            let path = dir.path().join(format!("hostile-{seed}.log"));
            std::fs::write(&path, hostile_log(seed, 2_000)).expect("write");
            let len = std::fs::metadata(&path).expect("len").len();
            for context in [0, 1, 2, 3, 5] {
                for (since, until) in windows {
                    let sel = Selection { since, until, ..selection(&matcher, &select, context) };
                    let found = |pass_by: bool| {
                        let mut store = Store::new(&[], &redactor);
                        let mut scanner = Scanner::new(&mut store, &sel, 0, &path);
                        scanner.pass_by = pass_by;
                        mapped::search_range(&mut scanner, &path, (0, len), mapped::WINDOWS).expect("search");
                        let unread = scanner.passed_by;
                        let super::super::groups::Found { groups, matches, .. } = store.finish();
                        let groups: Vec<Seen> =
                            groups.into_iter().map(|g| (g.key, g.count, g.first, g.last, g.example)).collect();
                        ((groups, matches), unread)
                    };
                    let (all, none_unread) = found(false);
                    assert_eq!(none_unread, 0);
                    assert!(all.1 > 20, "seed {seed}, window {since:?}..{until:?}: {} hits", all.1);
                    let (some, unread) = found(true);
                    assert_eq!(all, some, "seed {seed}, context {context}, window {since:?}..{until:?}");
                    passed_by += unread;
                }
            }
        }
        // The lines passed by are many: the comparison is not of two searches that read alike.
        assert!(passed_by > 4_000, "{passed_by} lines passed by");
    }

    /// A file shorter than when its search began (a `copytruncate` rotation) is found before
    /// the next window is mapped: "could not act", never a read past its end (SIGBUS).
    #[test]
    fn a_file_that_shrank_while_it_was_read_is_said_not_read_past_its_end() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("web.log");
        std::fs::write(&path, log(200)).expect("write");
        let len = std::fs::metadata(&path).expect("len").len();
        with_defaults(|sel, mut store| {
            let mut scanner = Scanner::new(&mut store, sel, 0, &path);
            // The search was planned for a file 64 KiB longer than the one there now.
            let windows = mapped::Windows { size: 4096, overlap: 4096 };
            let err = mapped::search_range(&mut scanner, &path, (0, len + (64 << 10)), windows).expect_err("shrank");
            assert_eq!(crate::error::kind_of(&err), crate::error::Kind::CouldNotAct);
            assert!(format!("{err:#}").contains("shrank from at least"), "{err:#}");
        });
    }

    /// The cut looked for in a growing stretch is the one the whole stretch gives: quiet
    /// stretches that start before, across and after each size the stretch takes, a file that
    /// ends first, and none within reach.
    #[test]
    fn a_cut_found_in_a_growing_stretch_is_the_cut_of_the_whole_stretch() {
        with_errors(3, |sel| {
            let dir = tempfile::tempdir().expect("tmp");
            let path = dir.path().join("web.log");
            let dense_line = "2026-11-01 00:00:00 ERROR x\n";
            let mut found = 0;
            for dense_kib in [0usize, 1, 40, 63, 64, 65, 100, 127, 128, 129, 600, 3000, 4095, 5000] {
                for quiet in [10usize, 60, 200] {
                    let dense = dense_line.repeat(dense_kib * 1024 / dense_line.len());
                    let text = format!("head\n{dense}{}{dense}", "quiet line\n".repeat(quiet));
                    std::fs::write(&path, &text).expect("write");
                    let file = std::fs::File::open(&path).expect("open");
                    let mut whole = vec![0u8; CUT_SEARCH as usize];
                    let n = read_full_at(&file, &mut whole, 3).expect("read");
                    let want = quiet_cut(sel, &whole[..n]).expect("cut");
                    let got = cut_after(sel, &file, 3, &mut vec![]).expect("cut");
                    assert_eq!(got, want, "{dense_kib} KiB of errors, then {quiet} quiet lines");
                    found += usize::from(got.is_some());
                }
            }
            assert!(found >= 10, "{found} cuts found: the sweep must hold cuts to compare");
        });
    }

    #[test]
    fn cuts_fall_only_in_quiet_stretches() {
        with_errors(0, |sel| {
            let dense = "x ERROR\n".repeat(10_000);
            assert_eq!(quiet_cut(sel, dense.as_bytes()).expect("cut"), None);
            // One quiet stretch: the cut is just past the earlier error's after-context.
            let (_, after) = sel.search_context();
            let text = format!("partial\nERROR a\n{}ERROR b\n", "quiet\n".repeat(100));
            let cut = quiet_cut(sel, text.as_bytes()).expect("cut").expect("a cut") as usize;
            assert_eq!(cut, "partial\nERROR a\n".len() + "quiet\n".len() * after);
            // The line the window starts in is unknown, so it counts as an error.
            let text = format!("ERROR partial\n{}", "quiet\n".repeat(100));
            let cut = quiet_cut(sel, text.as_bytes()).expect("cut").expect("a cut") as usize;
            assert_eq!(cut, "ERROR partial\n".len() + "quiet\n".len() * after);
        });
    }
}
