//! Console output discipline: results on stdout (human summary, or the `--json` document),
//! progress and diagnostics on stderr, plain text unless colour is asked for or a TTY shows it.
//! Everything printed passes through the redactor.

use crate::redact::Redactor;
use anstream::{eprintln, println};
use anstyle::{AnsiColor, Style};

#[derive(Debug, Clone)]
pub struct Ui {
    /// The binary's name, used in error lines (`promote: error: ...`).
    pub tool: &'static str,
    pub json: bool,
    /// -1 quiet, 0 normal, 1+ verbose.
    pub verbosity: i8,
    pub redactor: Redactor,
}

const RED: Style = AnsiColor::Red.on_default().bold();
const GREEN: Style = AnsiColor::Green.on_default().bold();
const YELLOW: Style = AnsiColor::Yellow.on_default().bold();
const DIM: Style = Style::new().dimmed();

impl Ui {
    pub fn new(tool: &'static str, env: &crate::environ::Environ) -> Self {
        Ui { tool, json: false, verbosity: 0, redactor: Redactor::for_env(env) }
    }

    /// Progress on stderr (hidden by `-q`).
    pub fn status(&self, msg: impl AsRef<str>) {
        if self.verbosity >= 0 {
            eprintln!("{}", self.redactor.redact(msg.as_ref()));
        }
    }

    /// A line of a child's output shown live (a test runner's), redacted like everything else.
    pub fn passthrough(&self, line: &str) {
        eprintln!("{}", self.redactor.redact(line));
    }

    /// Extra detail on stderr (shown by `-v`).
    pub fn detail(&self, msg: impl AsRef<str>) {
        if self.verbosity >= 1 {
            eprintln!("{DIM}{}{DIM:#}", self.redactor.redact(msg.as_ref()));
        }
    }

    pub fn warn(&self, msg: impl AsRef<str>) {
        eprintln!("{YELLOW}warning:{YELLOW:#} {}", self.redactor.redact(msg.as_ref()));
    }

    /// A pass/fail line for one check, on stderr.
    pub fn check(&self, passed: bool, msg: impl AsRef<str>) {
        if self.verbosity >= 0 || !passed {
            let (style, word) = if passed { (GREEN, "ok  ") } else { (RED, "FAIL") };
            eprintln!("  {style}{word}{style:#} {}", self.redactor.redact(msg.as_ref()));
        }
    }

    /// A check that did not run (an earlier one of its chain failed): neither ok nor FAIL.
    pub fn skipped(&self, msg: impl AsRef<str>) {
        if self.verbosity >= 0 {
            eprintln!("  {DIM}skip{DIM:#} {}", self.redactor.redact(msg.as_ref()));
        }
    }

    /// A line of the human result: stdout, or stderr when stdout carries `--json`.
    pub fn result(&self, msg: impl AsRef<str>) {
        let line = self.redactor.redact(msg.as_ref());
        // `-q` is "only errors and the result": the result line is printed at every verbosity.
        if self.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }

    /// One step of a dry-run plan: an argv or request a real run would make.
    pub fn plan(&self, msg: impl AsRef<str>) {
        let line = self.redactor.redact(msg.as_ref());
        if self.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }

    /// One JSON document on stdout, on one line (with `--json` only): a tool that streams
    /// records first (collect-logs' groups) then its summary yields JSON Lines.
    pub fn json_line(&self, value: &serde_json::Value) {
        if self.json {
            // Masked value by value before serializing: on the serialized text, escaping would
            // hide `"password": "x"` as `\"password\": \"x\"`, and a mask could cut an escape.
            let text = serde_json::to_string(&self.redactor.redact_json(value)).unwrap_or_else(|_| "{}".into());
            println!("{text}");
        }
    }

    /// The one rendering of a failure: `tool: error: msg`, `caused by:` lines, `hint:`.
    pub fn error(&self, err: &anyhow::Error) {
        let r = &self.redactor;
        let mut chain = err.chain();
        let head = chain.next().map(|e| e.to_string()).unwrap_or_default();
        eprintln!("{}: {RED}error:{RED:#} {}", self.tool, r.redact(&head));
        for cause in chain {
            eprintln!("  caused by: {}", r.redact(&cause.to_string()));
        }
        if let Some(hint) = crate::error::classified(err).and_then(|e| e.hint.as_deref()) {
            eprintln!("  {YELLOW}hint:{YELLOW:#} {}", r.redact(hint));
        }
    }
}
