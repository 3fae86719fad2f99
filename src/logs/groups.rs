//! Groups: what makes two records the same error (a fingerprint), and the store that folds each
//! occurrence into its group as the search finds it, in bounded memory.

use super::parse::{Line, Record};
use super::{suspect, traces};
use crate::clock::{Millis, rfc3339};
use regex::Regex;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::hash::Hasher;
use std::path::Path;
use std::rc::Rc;
use std::sync::OnceLock;
use traces::Frame;

#[derive(Debug, Serialize)]
pub struct Group {
    pub count: usize,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    #[serde(skip)]
    pub(super) first: Option<Millis>,
    #[serde(skip)]
    pub(super) last: Option<Millis>,
    pub sources: BTreeSet<String>,
    /// The matching line itself (redacted, at most 200 characters): what the group is about
    /// when it is not an exception.
    pub message: String,
    pub exception: Option<String>,
    pub frame: Option<String>,
    pub example: Vec<String>,
    #[serde(skip)]
    pub(super) frames: Vec<Frame>,
    #[serde(skip)]
    pub(super) key: u64,
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
/// says; for a line, its text with what varies masked. Hashed as it is read (this runs for every
/// occurrence), never written out.
fn fingerprint(r: &Record) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    if let Some(rt) = r.trace {
        // The parts are kept apart by bytes that UTF-8 text never holds (0xfc to 0xff).
        h.write_u8(rt as u8);
        let in_app = r.frames.iter().any(|f| f.in_app);
        for f in r.frames.iter().filter(|f| f.in_app || !in_app) {
            h.write_u8(0xfe);
            h.write(Path::new(&f.file).file_name().map_or(&b""[..], |n| n.as_encoded_bytes()));
            match f.function.as_str() {
                "" | "<anonymous>" | "<module>" => {
                    h.write_u8(0xfd);
                    h.write_u32(f.line);
                }
                function => {
                    h.write_u8(0xfc);
                    h.write(function.as_bytes());
                }
            }
        }
        h.write_u8(0xff);
        let error = traces::error(rt, &r.texts()).map(|(ty, _)| ty).unwrap_or_default();
        h.write(error.as_bytes());
        return h.finish();
    }
    for l in &r.lines {
        let mut at = 0;
        masks(&l.text, |start, end| {
            h.write(&l.text.as_bytes()[at..start]);
            h.write_u8(b'#');
            at = end;
        });
        h.write(&l.text.as_bytes()[at..]);
        h.write_u8(b'\n');
    }
    h.finish()
}

/// Where [`mask_re`] matches in `text`, in order: found by hand in a line of ASCII (the regex's
/// alternation has no literal to look for, and this runs for every occurrence of a line that
/// is no trace), by the regex in any other (its `\d` and `\b` are Unicode's).
fn masks(text: &str, mut each: impl FnMut(usize, usize)) {
    if !text.is_ascii() {
        for m in mask_re().find_iter(text) {
            each(m.start(), m.end());
        }
        return;
    }
    let b = text.as_bytes();
    let mut p = 0;
    while p < b.len() {
        match mask_at(b, p) {
            Some(end) => {
                each(p, end);
                p = end;
            }
            None => p += 1,
        }
    }
}

/// The end of [`mask_re`]'s match at `p` in ASCII `b`: its alternatives in their order, each as
/// the regex takes it (greedy, backtracking where a shorter run could still match).
fn mask_at(b: &[u8], p: usize) -> Option<usize> {
    let c = b[p];
    let quote = c == b'"' || c == b'\'';
    if !(c.is_ascii_hexdigit() || quote) {
        return None;
    }
    let word = |i: usize| i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_');
    let boundary = |i: usize| (i > 0 && word(i - 1)) != word(i);
    let run = |from: usize, f: fn(&u8) -> bool| b[from.min(b.len())..].iter().take_while(|c| f(c)).count();
    // Each alternative is looked at only where its first bytes allow it, so a line is read in
    // linear time, and a letter inside a word (most of a line) costs a few comparisons.
    // UUID: 8-4-4-4-12 hex digits (its first dash comes 8 bytes on).
    let uuid = || {
        let mut at = p;
        for (i, n) in [8, 4, 4, 4, 12].into_iter().enumerate() {
            if i > 0 {
                (b.get(at) == Some(&b'-')).then_some(())?;
                at += 1;
            }
            (b.len() >= at + n && b[at..at + n].iter().all(u8::is_ascii_hexdigit)).then_some(())?;
            at += n;
        }
        Some(at)
    };
    if b.get(p + 8) == Some(&b'-')
        && let Some(end) = uuid()
    {
        return Some(end);
    }
    let at_boundary = boundary(p);
    // A letter (`a` to `f`, either case) starts nothing else but a hex word.
    if c.is_ascii_alphabetic() && !at_boundary {
        return None;
    }
    // IPv4: `\b\d{1,3}(?:\.\d{1,3}){3}\b`, each part as long as it can be.
    fn ipv4(b: &[u8], i: usize, parts: usize, boundary: &dyn Fn(usize) -> bool) -> Option<usize> {
        let digits = b[i..].iter().take(3).take_while(|c| c.is_ascii_digit()).count();
        (1..=digits).rev().find_map(|n| match parts {
            1 => boundary(i + n).then_some(i + n),
            _ if b.get(i + n) == Some(&b'.') => ipv4(b, i + n + 1, parts - 1, boundary),
            _ => None,
        })
    }
    if at_boundary
        && c.is_ascii_digit()
        && let Some(end) = ipv4(b, p, 4, &boundary)
    {
        return Some(end);
    }
    if quote {
        return memchr::memchr(c, &b[p + 1..]).map(|q| p + 1 + q + 1);
    }
    // `0x[0-9a-fA-F]+`
    if b[p..].starts_with(b"0x") {
        let n = run(p + 2, u8::is_ascii_hexdigit);
        if n > 0 {
            return Some(p + 2 + n);
        }
    }
    // `\b[0-9a-f]{7,}\b`: only the whole run can end at a boundary, and a run is counted once,
    // at its start (the boundary before it).
    if at_boundary {
        let n = run(p, |c| c.is_ascii_digit() || (b'a'..=b'f').contains(c));
        if n >= 7 && boundary(p + n) {
            return Some(p + n);
        }
    }
    // `\d+`
    let n = run(p, u8::is_ascii_digit);
    (n > 0).then_some(p + n)
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
    let frames = record.frames.iter().filter(|f| f.in_app).cloned().collect();
    (exception, frames)
}

fn frame_label(f: &Frame, prefixes: &[String]) -> String {
    match suspect::repo_path(&f.file, prefixes) {
        (path, Some(label)) => format!("{path} ({label}):{} in {}", f.line, f.function),
        (path, None) => format!("{path}:{} in {}", f.line, f.function),
    }
}

/// Distinct groups kept; further distinct ones are counted, not kept (bounded memory).
pub(super) const MAX_GROUPS: usize = 10_000;
/// Lines of a group's example kept, and their bytes.
const MAX_EXAMPLE: usize = 300;
const MAX_EXAMPLE_BYTES: usize = 64 * 1024;
/// Bytes of all the groups' examples together; past it a new group keeps only its line.
const EXAMPLES_BUDGET: usize = 16 * 1024 * 1024;

impl Group {
    /// One line naming the group: its exception, else its matching line.
    pub(super) fn headline(&self) -> &str {
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
pub(super) struct Found {
    /// In first-seen order.
    pub(super) groups: Vec<Group>,
    /// Matching records.
    pub(super) matches: usize,
    /// Occurrences of distinct errors past [`MAX_GROUPS`], counted, not kept.
    pub(super) dropped: usize,
    /// Lines longer than the search's limit, cut.
    pub(super) lines_cut: u64,
    pub(super) outside: Outside,
}

/// Matching records read but left out for their time: outside the window.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Outside {
    pub(super) count: usize,
    pub(super) first: Option<Millis>,
    pub(super) last: Option<Millis>,
}

impl Outside {
    pub(super) fn note(&mut self, at: Option<Millis>) {
        self.merge(Outside { count: 1, first: at, last: at });
    }
    fn merge(&mut self, o: Outside) {
        self.count += o.count;
        self.first = match (self.first, o.first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last = self.last.max(o.last);
    }
}

/// The groups found so far. Occurrences are folded in as the search finds them, so memory
/// follows the number of distinct groups, not the size of the logs.
pub(super) struct Store<'a> {
    pub(super) prefixes: &'a [String],
    pub(super) redactor: &'a crate::redact::Redactor,
    pub(super) groups: Vec<Group>,
    pub(super) index: HashMap<u64, usize>,
    pub(super) matches: usize,
    pub(super) dropped: usize,
    /// Lines cut at the search's limit (`scan::MAX_LINE`).
    pub(super) lines_cut: u64,
    pub(super) outside: Outside,
    /// Bytes of all the examples kept: past [`EXAMPLES_BUDGET`] a new group keeps only its line.
    pub(super) example_bytes: usize,
}

impl<'a> Store<'a> {
    /// One hit record (`window[hit]`) with its context. The group is the hit's (context aside:
    /// the same error between different neighbours is still the same error), and so is the time.
    pub(super) fn occurrence(&mut self, source: &str, window: &[Rc<Record>], hit: usize) {
        let matched = &window[hit];
        let at = matched.at();
        let key = fingerprint(matched);
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

    pub(super) fn new(prefixes: &'a [String], redactor: &'a crate::redact::Redactor) -> Self {
        Store {
            prefixes,
            redactor,
            groups: vec![],
            index: HashMap::new(),
            matches: 0,
            dropped: 0,
            lines_cut: 0,
            outside: Outside::default(),
            example_bytes: 0,
        }
    }

    /// An empty store for a part of a source searched on its own.
    pub(super) fn part(&self) -> Self {
        Store::new(self.prefixes, self.redactor)
    }

    /// Folds in a part's groups (parts in the order of the file).
    pub(super) fn absorb(&mut self, part: Store<'_>) {
        self.matches += part.matches;
        self.dropped += part.dropped;
        self.lines_cut += part.lines_cut;
        self.outside.merge(part.outside);
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
    pub(super) fn finish(mut self) -> Found {
        self.groups.sort_by_key(|g| g.first.unwrap_or(i64::MAX));
        for g in &mut self.groups {
            g.first_seen = g.first.map(rfc3339);
            g.last_seen = g.last.map(rfc3339);
        }
        Found {
            groups: self.groups,
            matches: self.matches,
            dropped: self.dropped,
            lines_cut: self.lines_cut,
            outside: self.outside,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The masks found by hand are the regex's, over lines built of what it masks and what
    /// stands around it (word characters at the edges, dots, quotes, hex of either case).
    #[test]
    fn masks_by_hand_are_the_regexs() {
        let mut rng = fastrand::Rng::with_seed(11);
        let parts = [
            "5f3a9c2e-1111-2222-3333-444455556666",
            "10.0.0.7",
            "1.2.3.4567",
            "127.0.0.1.5",
            "0x1F",
            "0x",
            "0xg",
            "deadbeef",
            "DEADBEEF1",
            "abcdef0",
            "abcdefg",
            "deadbeef-12",
            "abcdef0123456789abcdefg",
            "1234567",
            "12",
            ".",
            "-",
            "_",
            "\"",
            "'",
            " ",
            "x",
            "g",
            "a",
            "F",
            "9",
            "é",
        ];
        let mut masked = 0;
        for _ in 0..30_000 {
            let line: String = (0..rng.usize(1..9)).map(|_| parts[rng.usize(0..parts.len())]).collect();
            let by_regex: Vec<(usize, usize)> = mask_re().find_iter(&line).map(|m| (m.start(), m.end())).collect();
            let mut by_hand = vec![];
            masks(&line, |a, b| by_hand.push((a, b)));
            assert_eq!(by_hand, by_regex, "{line:?}");
            masked += by_regex.len();
        }
        assert!(masked > 30_000, "the sweep holds what is masked: {masked} masks");
    }

    #[test]
    fn fingerprints_mask_what_varies() {
        let rec = |t: &str| Record::line(Line { source: 0, at: None, text: t.into(), hit: true });
        assert_eq!(
            fingerprint(&rec("timeout for 10.0.0.7 after 30s on 'q1' id 5f3a9c2e-1111-2222-3333-444455556666")),
            fingerprint(&rec("timeout for 10.0.0.9 after 31s on 'q2' id 0b1e2d3c-aaaa-bbbb-cccc-ddddeeeeffff"))
        );
        let tb = |line: &str| {
            let texts = [
                "Traceback (most recent call last):",
                &format!("File \"/a/app.py\", line {line}, in f"),
                "x()",
                "TypeError: bad 1",
            ];
            Record {
                lines: texts.iter().map(|t| Line { source: 0, at: None, text: t.to_string(), hit: false }).collect(),
                trace: Some(traces::Runtime::Python),
                frames: traces::frames(traces::Runtime::Python, &texts),
            }
        };
        assert_eq!(fingerprint(&tb("10")), fingerprint(&tb("12")), "a traceback is its frames' files and functions");
    }
}
