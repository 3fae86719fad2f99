//! Stack traces of the mainstream web runtimes, by their grammar: where one starts, which lines
//! continue it, its frames (file, line, function; in-app or the runtime's and libraries') and
//! its error type. The [`super::parse::Grouper`] asks [`start`] and [`step`] line by line, so a
//! whole trace is one record whatever its runtime.
//!
//! - Python: `Traceback (most recent call last):`, `File "f.py", line N, in fn` (+ source and
//!   caret lines), the exception line; chained tracebacks continue the record.
//! - Node: the crash header `file.js:N` with its source line and caret, then `TypeError: msg`,
//!   `    at fn (file:line:col)`, `    at file:line:col`, `    at async fn (…)`, `... N lines
//!   matching cause stack trace ...`, the `{ code: … }` property block (with `[cause]: …`), and
//!   `Node.js vNN`. A logged error (`console.error(err)`) is the same without the header.
//! - Java/JVM: `Exception in thread "main" pkg.SomeException: msg` (or the exception line
//!   alone, as loggers print it), `\tat pkg.Class.method(File.java:123)`, `Caused by: …`,
//!   `Suppressed: …`, `\t... N more`.
//! - Go: `panic: msg` (or net/http's `http: panic serving ADDR: msg`), `goroutine N [running]:`,
//!   a function line `pkg.fn(...)`, then `\t/path/file.go:123 +0x1d`; `created by …`,
//!   `exit status 2`.
//! - Ruby: `file.rb:12:in 'method': msg (ErrorClass)` (backquoted before Ruby 3.4), the
//!   error_highlight snippet, then `\tfrom file.rb:34:in 'method'` lines.

use regex::Regex;
use std::sync::LazyLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Python,
    Node,
    Java,
    Go,
    Ruby,
}

/// Where a trace stands while its lines arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Python: expecting a `File` line or the exception line.
    Frames,
    /// Python: after a `File` line, whose source line may follow.
    AfterFrame,
    /// The trace is complete; only what may trail it (a chained traceback after blank lines,
    /// Node's version line) continues it.
    Ended,
    /// Node's crash header `file.js:N`: its source line follows.
    Header,
    /// Node's crash header: after the source line, its caret and blank lines, then the error.
    HeaderCaret,
    /// Node and Java and Ruby: frame lines (and cause lines) follow.
    Stack,
    /// Node: inside the `{ … }` property block after the frames.
    Props,
    /// Ruby: the error_highlight snippet under the first line, before the `from` lines.
    Snippet,
}

/// What a line does to the open trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// It belongs to the trace; the trace goes on in this phase.
    Take(Phase),
    /// It may belong (a blank line before a chained trace): held until the next line decides.
    Hold,
    /// It does not belong: the trace is complete without it.
    End,
}

/// One frame of a trace, as the log shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Frame {
    /// The path as the log shows it (Java: the package's directories and the file's name).
    pub file: String,
    pub line: u32,
    pub function: String,
    #[serde(skip)]
    pub in_app: bool,
}

static PYTHON_EXCEPTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|Fault))(?::\s*(.*))?$")
        .expect("static regex")
});
static PYTHON_FRAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"^\s*File "([^"]+)", line (\d+), in (\S+)"#).expect("static regex"));
/// `TypeError: msg`, `Error [ERR_X]: msg`, `Uncaught RangeError: msg`, `[cause]: Error: msg`.
static NODE_ERROR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*(?:\[cause\]: |Uncaught )?((?:[A-Z][A-Za-z0-9]*)?(?:Error|Exception))(?: \[([A-Z0-9_]+)\])?(?::\s*(.*))?$").expect("static regex")
});
/// `at fn (file:line:col)`, `at async fn (…)`, `at new Foo (…)`, `at file:line:col`.
static NODE_FRAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*at (?:async )?(?:new )?(?:(.+?) \((.+?):(\d+):\d+\)|(.+?):(\d+):\d+)(?: \{)?$")
        .expect("static regex")
});
static NODE_HEADER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(\S.*\.(?:js|mjs|cjs|ts|mts|cts|jsx|tsx)):(\d+)$").expect("static regex"));
/// `Exception in thread "main" java.lang.X: msg`, or the exception line alone.
static JAVA_EXCEPTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"^(?:Exception in thread "[^"]*" |\s*Caused by: |\s*Suppressed: )?((?:[a-z_][\w$]*\.)+[A-Z][\w$]*(?:Exception|Error|Throwable))(?::\s*(.*))?$"#).expect("static regex")
});
static JAVA_FRAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*at (?:[\w.$-]+/)?([\w.$<>]+)\.([\w$<>]+)\(([^():]*)(?::(\d+))?\)$").expect("static regex")
});
static GO_PANIC: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(?:.*http: panic serving \S+: |panic: |fatal error: )(.*)$").expect("static regex"));
static GO_LOCATION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s+(\S.*\.go):(\d+)(?: \+0x[0-9a-f]+)?$").expect("static regex"));
/// `main.lookup(...)`, `main.(*store).lookup(0x0, {0xc000016118, 0x6})`, `panic({0x6b8f20?, 0x9b7a20?})`.
static GO_FUNCTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^((?:[\w-]+/)*[\w.-]+?(?:\.\(\*?[\w.\[\]]+\))?(?:\.[\w\[\]{}.-]+)*)\(.*\)$").expect("static regex")
});
/// `file.rb:12:in 'method': msg (ErrorClass)`: the first line of an uncaught exception.
static RUBY_FIRST: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(\S+\.rb):(\d+):in [`']([^']+)': (.*) \(([A-Z][\w:]*)\)$").expect("static regex"));
static RUBY_FRAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*(?:from )?(\S+\.rb):(\d+):in [`']([^']+)'$").expect("static regex"));

/// Ruby's Logger: `E, [2026-12-05T10:00:00.123456 #4242] ERROR -- progname: message`.
static RUBY_LOGGER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[DIWEFAU], \[[^\]]*\] +[A-Z]+ -- [^:]*: ").expect("static regex"));

/// A line as the trace grammar reads it: without a logger's own prefix, which would otherwise
/// hide the trace it carries (Ruby's Logger writes one before the exception's first line, and
/// often before each `from` line). ANSI colours are taken off every line as it is read.
pub fn bare(text: &str) -> &str {
    if text.len() > 4
        && text.as_bytes()[1..4] == *b", ["
        && let Some(m) = RUBY_LOGGER.find(text)
    {
        return &text[m.end()..];
    }
    text
}

fn is_blank(t: &str) -> bool {
    t.trim().is_empty()
}

fn is_caret(t: &str) -> bool {
    let t = t.trim();
    !t.is_empty() && t.chars().all(|c| matches!(c, '^' | '~' | ' '))
}

fn is_python_chain(t: &str) -> bool {
    let t = t.trim_start();
    t.starts_with("During handling of the above exception") || t.starts_with("The above exception was the direct cause")
}

/// Words one of which every first line of a trace but Node's header holds (that header ends in
/// a line number): a line without any is no start, found in one pass instead of five regexes.
/// Leftmost-first matching lets the search use its SIMD prefilter (the standard kind walks the
/// automaton byte by byte, 7% of a whole collect-logs run); whether a word is there is the same
/// under either kind.
static START_WORDS: LazyLock<aho_corasick::AhoCorasick> = LazyLock::new(|| {
    aho_corasick::AhoCorasick::builder()
        .match_kind(aho_corasick::MatchKind::LeftmostFirst)
        .build(["Traceback", "Error", "Exception", "Throwable", "panic: ", "panic serving ", "fatal error: ", ".rb:"])
        .expect("static words")
});

/// Whether the raw line `raw` (its prefix, colours and all) may start a trace: true for every
/// line whose text [`start`] takes, and cheap, for the lines read only to be passed by. The
/// text is a part of the line (no prefix, no trailing newline, at most its first bytes), so a
/// word of the text is in the line and a text ending in a digit is a line ending in one; a
/// colour code between two letters could make a word of the text that the line does not hold.
pub fn may_start(raw: &[u8]) -> bool {
    let last = raw.iter().rfind(|b| !matches!(b, b'\r' | b'\n'));
    last.is_some_and(u8::is_ascii_digit) || memchr::memchr(0x1b, raw).is_some() || START_WORDS.is_match(raw)
}

/// Whether `text` starts a trace, and of which runtime.
pub fn start(text: &str) -> Option<(Runtime, Phase)> {
    let text = bare(text);
    if !text.ends_with(|c: char| c.is_ascii_digit()) && !START_WORDS.is_match(text) {
        return None;
    }
    let t = text.trim_start();
    if t.starts_with("Traceback (most recent call last)") {
        return Some((Runtime::Python, Phase::Frames));
    }
    if NODE_HEADER.is_match(text) {
        return Some((Runtime::Node, Phase::Header));
    }
    if GO_PANIC.is_match(text) {
        return Some((Runtime::Go, Phase::Stack));
    }
    if RUBY_FIRST.is_match(text) {
        return Some((Runtime::Ruby, Phase::Snippet));
    }
    if JAVA_EXCEPTION.is_match(text) && !t.starts_with("Caused by") {
        return Some((Runtime::Java, Phase::Stack));
    }
    // "TypeError: msg" is also Python's exception line; Python's traceback starts with
    // "Traceback", so as a start it is Node's, and the next line tells whether frames follow.
    if NODE_ERROR.is_match(text) {
        return Some((Runtime::Node, Phase::Stack));
    }
    None
}

/// What `text` does to an open trace of `rt` in `phase`.
pub fn step(rt: Runtime, phase: Phase, text: &str) -> Step {
    let text = bare(text);
    match rt {
        Runtime::Python => python_step(phase, text),
        Runtime::Node => node_step(phase, text),
        Runtime::Java => java_step(text),
        Runtime::Go => go_step(text),
        Runtime::Ruby => ruby_step(phase, text),
    }
}

/// The lines an exception's message goes on with after its first line: SQLAlchemy writes the
/// statement, its parameters and a link under every database error.
fn is_python_message_tail(t: &str) -> bool {
    let t = t.trim_start();
    t.starts_with("[SQL: ") || t.starts_with("[parameters: ") || t.starts_with("(Background on this error at: ")
}

fn python_step(phase: Phase, t: &str) -> Step {
    match phase {
        Phase::Ended if is_python_message_tail(t) => Step::Take(Phase::Ended),
        Phase::Ended if is_blank(t) => Step::Hold,
        Phase::Ended if is_python_chain(t) => Step::Take(Phase::Frames),
        Phase::Ended => Step::End,
        _ if python_frame(t).is_some() => Step::Take(Phase::AfterFrame),
        _ if is_caret(t) => Step::Take(phase),
        _ if is_blank(t) || t.trim_start().starts_with("Traceback (most recent call last)") || is_python_chain(t) => {
            Step::Take(Phase::Frames)
        }
        _ if PYTHON_EXCEPTION.is_match(t) => Step::Take(Phase::Ended),
        Phase::AfterFrame => Step::Take(Phase::Frames), // the frame's source line
        _ => Step::End,
    }
}

fn node_step(phase: Phase, t: &str) -> Step {
    let trimmed = t.trim_start();
    match phase {
        Phase::Header => Step::Take(Phase::HeaderCaret), // the source line
        Phase::HeaderCaret if is_caret(t) || is_blank(t) => Step::Take(Phase::HeaderCaret),
        Phase::HeaderCaret if NODE_ERROR.is_match(t) && !t.starts_with(' ') => Step::Take(Phase::Stack),
        Phase::Stack | Phase::Props if NODE_FRAME.is_match(t) => {
            Step::Take(if t.ends_with(" {") { Phase::Props } else { phase })
        }
        Phase::Stack | Phase::Props if trimmed.starts_with("... ") && trimmed.ends_with("...") => Step::Take(phase),
        Phase::Stack if t.trim_end().ends_with('{') && t.starts_with(' ') => Step::Take(Phase::Props),
        Phase::Props if t.starts_with('}') => Step::Take(Phase::Ended),
        Phase::Props => Step::Take(Phase::Props), // `  code: 'ENOENT',`, `[cause]: TypeError: …`
        Phase::Stack | Phase::Ended if is_blank(t) => Step::Hold,
        Phase::Stack | Phase::Ended if trimmed.starts_with("Node.js v") => Step::Take(Phase::Ended),
        _ => Step::End,
    }
}

fn java_step(t: &str) -> Step {
    let trimmed = t.trim_start();
    if JAVA_FRAME.is_match(t)
        || (trimmed.starts_with("... ") && trimmed.ends_with(" more"))
        || trimmed.starts_with("Caused by: ")
        || trimmed.starts_with("Suppressed: ")
        || (t.starts_with(char::is_whitespace) && trimmed.starts_with("at ") && t.contains('('))
    {
        return Step::Take(Phase::Stack);
    }
    Step::End
}

fn go_step(t: &str) -> Step {
    let trimmed = t.trim();
    if is_blank(t) {
        return Step::Hold;
    }
    if trimmed.starts_with("goroutine ")
        || GO_LOCATION.is_match(t)
        || trimmed.starts_with("created by ")
        || trimmed.starts_with("exit status ")
        || trimmed == "[recovered]"
        || GO_FUNCTION.is_match(t)
    {
        return Step::Take(Phase::Stack);
    }
    Step::End
}

fn ruby_step(phase: Phase, t: &str) -> Step {
    if RUBY_FRAME.is_match(t) {
        return Step::Take(Phase::Stack);
    }
    match phase {
        // error_highlight: a blank line, the source line, the carets.
        Phase::Snippet if is_blank(t) || is_caret(t) || t.starts_with("    ") => Step::Take(Phase::Snippet),
        _ => Step::End,
    }
}

/// Whether a frame's file is the app's own code rather than the runtime's or a library's.
pub fn in_app(rt: Runtime, file: &str) -> bool {
    let library = match rt {
        Runtime::Python => {
            file.contains("site-packages")
                || file.contains("/lib/python")
                || file.starts_with('<')
                || file.contains("dist-packages")
        }
        Runtime::Node => file.starts_with("node:") || file.contains("node_modules/") || file.starts_with('<'),
        Runtime::Java => {
            const LIBS: [&str; 16] = [
                "java/",
                "javax/",
                "jdk/",
                "sun/",
                "com/sun/",
                "kotlin/",
                "scala/",
                "groovy/",
                "org/springframework/",
                "org/apache/",
                "io/netty/",
                "org/eclipse/",
                "com/fasterxml/",
                "org/junit/",
                "org/hibernate/",
                "io/micronaut/",
            ];
            LIBS.iter().any(|l| file.starts_with(l))
        }
        Runtime::Go => file.contains("/go/src/") || file.contains("/pkg/mod/") || file.contains("/libexec/src/"),
        Runtime::Ruby => {
            file.contains("/gems/")
                || file.contains("/lib/ruby/")
                || file.starts_with("<internal:")
                || file.contains("/rubygems/")
        }
    };
    !library
}

/// Every frame of a trace, innermost first.
pub fn frames(rt: Runtime, lines: &[&str]) -> Vec<Frame> {
    let lines: Vec<&str> = lines.iter().map(|l| bare(l)).collect();
    let mut out = vec![];
    let frame = |file: &str, line: &str, function: &str| Frame {
        file: file.to_string(),
        line: line.parse().unwrap_or(0),
        function: function.to_string(),
        in_app: in_app(rt, file),
    };
    match rt {
        Runtime::Python => {
            // Outermost first in the log; the innermost is the last.
            for (file, line, function) in lines.iter().filter_map(|l| python_frame(l)) {
                out.push(frame(file, line, function));
            }
            out.reverse();
        }
        Runtime::Node => {
            for c in lines.iter().filter_map(|l| NODE_FRAME.captures(l)) {
                match (c.get(1), c.get(2), c.get(3)) {
                    (Some(f), Some(file), Some(line)) => out.push(frame(file.as_str(), line.as_str(), f.as_str())),
                    _ => out.push(frame(&c[4], &c[5], "<anonymous>")),
                }
            }
        }
        Runtime::Java => {
            for c in lines.iter().filter_map(|l| JAVA_FRAME.captures(l)) {
                let Some(line) = c.get(4) else { continue }; // Native Method, Unknown Source
                let class = &c[1];
                // The file sits in its package's directory: com.example.A$B → com/example/A.java.
                let package: Vec<&str> =
                    class.split('.').take_while(|p| p.starts_with(|ch: char| ch.is_lowercase())).collect();
                let file =
                    if package.is_empty() { c[3].to_string() } else { format!("{}/{}", package.join("/"), &c[3]) };
                let short = class.rsplit('.').next().unwrap_or(class);
                out.push(frame(&file, line.as_str(), &format!("{short}.{}", &c[2])));
            }
        }
        Runtime::Go => {
            let mut function = String::new();
            for l in lines {
                if let Some(c) = GO_LOCATION.captures(l) {
                    out.push(frame(&c[1], &c[2], &function));
                } else if let Some(created) = l.trim().strip_prefix("created by ") {
                    let name = created.split(" in goroutine ").next().unwrap_or(created);
                    function = name.rsplit('/').next().unwrap_or(name).to_string();
                } else if let Some(c) = GO_FUNCTION.captures(l.trim_end()) {
                    function = c[1].rsplit('/').next().unwrap_or(&c[1]).to_string();
                }
            }
        }
        Runtime::Ruby => {
            // The first line and the `from` lines both begin file, line, method.
            for c in lines.iter().filter_map(|l| RUBY_FIRST.captures(l).or_else(|| RUBY_FRAME.captures(l))) {
                out.push(frame(&c[1], &c[2], &c[3]));
            }
        }
    }
    out
}

/// A Python frame line's file, line and function, as [`PYTHON_FRAME`] captures them: split by
/// hand for a line of ASCII (nearly all; the capture was most of reading a trace), by the regex
/// otherwise (`\d` and `\s` are Unicode's). Every line of a trace is asked.
fn python_frame(l: &str) -> Option<(&str, &str, &str)> {
    let rest = l.trim_start().strip_prefix("File \"")?;
    if !l.is_ascii() {
        let c = PYTHON_FRAME.captures(l)?;
        let part = |i| c.get(i).map_or("", |m| m.as_str());
        return Some((part(1), part(2), part(3)));
    }
    // `[^"]+` ends at the first quote: a shorter one would not be followed by one.
    let (file, rest) = rest.split_at(rest.find('"')?);
    let rest = rest.strip_prefix("\", line ")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (line, rest) = rest.split_at(digits);
    let rest = rest.strip_prefix(", in ")?;
    let function = &rest[..rest.find(char::is_whitespace).unwrap_or(rest.len())];
    (!file.is_empty() && !line.is_empty() && !function.is_empty()).then_some((file, line, function))
}

/// The type and message of a line [`PYTHON_EXCEPTION`] matches, as its groups hold them: the
/// type runs to the first `:` (it is word characters and dots, and the match ends at the line's
/// end), the message after it, its leading spaces off. Split by hand because the regex cannot
/// capture in one pass (`[\w.]*` then `Error` is ambiguous): its backtracking was the largest
/// part of reading an exception.
fn python_exception(line: &str) -> (String, String) {
    let t = line.trim_start();
    match t.split_once(':') {
        Some((ty, msg)) => (ty.to_string(), msg.trim_start().to_string()),
        None => (t.to_string(), String::new()),
    }
}

/// The error a trace reports: its type and message. Python's is its last exception line (the
/// innermost of a chain); Node's, Java's, Go's and Ruby's the first (what was thrown at the
/// frames the trace starts with; Java's causes follow it).
pub fn error(rt: Runtime, lines: &[&str]) -> Option<(String, String)> {
    let lines: Vec<&str> = lines.iter().map(|l| bare(l)).collect();
    let pair =
        |ty: &str, msg: Option<regex::Match>| (ty.to_string(), msg.map(|m| m.as_str().to_string()).unwrap_or_default());
    match rt {
        Runtime::Python => lines.iter().rev().find(|l| PYTHON_EXCEPTION.is_match(l)).map(|l| python_exception(l)),
        Runtime::Node => lines.iter().find_map(|l| NODE_ERROR.captures(l)).map(|c| {
            let ty = match c.get(2) {
                Some(code) => format!("{} [{}]", &c[1], code.as_str()),
                None => c[1].to_string(),
            };
            pair(&ty, c.get(3))
        }),
        Runtime::Java => lines.iter().find_map(|l| JAVA_EXCEPTION.captures(l)).map(|c| pair(&c[1], c.get(2))),
        Runtime::Go => lines.iter().find_map(|l| GO_PANIC.captures(l)).map(|c| {
            let msg = c[1].to_string();
            // Go's runtime errors are a kind then details: "runtime error: index out of range [5] with length 3".
            let ty = if msg.starts_with("runtime error: ") {
                msg.split(['[', ',']).next().unwrap_or(&msg).trim().to_string()
            } else if c[0].trim_start().starts_with("fatal error: ") {
                // The runtime's own fatal errors (a deadlock, concurrent map writes) are no panic.
                "fatal error".to_string()
            } else {
                "panic".to_string()
            };
            (ty, msg)
        }),
        Runtime::Ruby => lines.iter().find_map(|l| RUBY_FIRST.captures(l)).map(|c| pair(&c[5], c.get(4))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The split by hand gives what the regex's groups give, over a sweep of lines shaped as
    /// frames with parts swapped, dropped or added (Unicode spaces and digits among them).
    #[test]
    fn a_python_frame_line_splits_as_the_regex_captures_it() {
        let mut rng = fastrand::Rng::with_seed(7);
        let parts = [
            "File \"",
            "\", line ",
            ", in ",
            "\"",
            " ",
            "\t",
            "\u{b}",
            "\u{a0}",
            "\u{2003}",
            "12",
            "0",
            "\u{663}",
            "app.py",
            "f",
            "<module>",
            ",",
            "x y",
            "\u{e9}",
            "in",
            "line",
        ];
        let mut frames = 0;
        for _ in 0..20_000 {
            let mut line: String =
                (0..rng.usize(0..3)).map(|_| [" ", "\t", "\u{b}", "\u{2003}"][rng.usize(0..4)]).collect();
            // Mostly the frame's own shape, with a part swapped or added at random.
            let shape = ["File \"", "/app/a.py", "\", line ", "67", ", in ", "load_urls", " extra"];
            for (i, part) in shape.iter().enumerate() {
                match rng.u8(0..12) {
                    0 => line += parts[rng.usize(0..parts.len())],
                    1 if i > 0 => {}
                    2 => {
                        line += part;
                        line += parts[rng.usize(0..parts.len())];
                    }
                    _ => line += part,
                }
            }
            let by_regex = PYTHON_FRAME.captures(&line).map(|c| (c[1].to_string(), c[2].to_string(), c[3].to_string()));
            let by_hand = python_frame(&line).map(|(f, n, func)| (f.to_string(), n.to_string(), func.to_string()));
            assert_eq!(by_hand, by_regex, "{line:?}");
            frames += usize::from(by_regex.is_some());
        }
        assert!((5_000..19_000).contains(&frames), "the sweep holds frames and lines that are not: {frames} frames");
    }

    /// The split by hand gives what the regex's groups give, over a sweep of exception lines.
    #[test]
    fn a_python_exception_line_splits_as_the_regex_captures_it() {
        let lines = [
            "TypeError: the JSON object must be str, bytes or bytearray, not TextIOWrapper",
            "  ValueError: bad: very bad",
            "\u{2003}\tKeyError:   'x'  ",
            "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)",
            "StopIteration",
            "KeyboardInterrupt",
            "SystemExit: 2",
            "RuntimeWarning:",
            "sqlalchemy.exc.OperationalError:(psycopg2) no host",
            "_Private_Fault: \u{e9}l\u{e8}ve",
            "Erreur\u{e9}Error: unicode word",
            "Error:",
            "TypeError:\u{a0}non-breaking",
        ];
        let mut matched = 0;
        for line in lines {
            let by_regex = PYTHON_EXCEPTION
                .captures(line)
                .map(|c| (c[1].to_string(), c.get(2).map(|m| m.as_str().to_string()).unwrap_or_default()));
            let by_hand = PYTHON_EXCEPTION.is_match(line).then(|| python_exception(line));
            assert_eq!(by_hand, by_regex, "{line:?}");
            matched += usize::from(by_regex.is_some());
        }
        assert!(matched >= 11, "the sweep is of exception lines: {matched} matched");
    }
}
