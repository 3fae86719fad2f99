//! The product's error kinds and the one mapping from an outcome to an exit code.
//!
//! Library code returns `anyhow::Result`; where the kind matters to the pipeline it raises an
//! [`Error`] (usage, verdict, could-not-act, interrupted). Anything unclassified is "could not
//! act" (exit 3): the tool failed to do its job, which is never a verdict on the version.

use std::fmt;

/// What the pipeline should do with a failure; each kind has one exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The version or change is bad: tests failed, smoke failed, unhealthy after deploy.
    Verdict,
    /// Usage, configuration or input error; nothing was changed.
    Usage,
    /// The tool could not act: platform or CLI error, lock held, timeout.
    CouldNotAct,
    /// SIGINT/SIGTERM arrived; the environment is left in the described state.
    Interrupted,
}

impl Kind {
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::Verdict => exit::VERDICT,
            Kind::Usage => exit::USAGE,
            Kind::CouldNotAct => exit::COULD_NOT_ACT,
            Kind::Interrupted => exit::INTERRUPTED,
        }
    }
}

/// The exit codes of every binary (README "Exit codes").
pub mod exit {
    pub const SUCCESS: u8 = 0;
    pub const VERDICT: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const COULD_NOT_ACT: u8 = 3;
    pub const INTERRUPTED: u8 = 130;
}

/// A classified failure: one line of message, optionally a hint for the reader of the console.
#[derive(Debug)]
pub struct Error {
    pub kind: Kind,
    pub message: String,
    pub hint: Option<String>,
}

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), hint: None }
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Kind::Usage, message)
    }
    pub fn verdict(message: impl Into<String>) -> Self {
        Self::new(Kind::Verdict, message)
    }
    pub fn could_not_act(message: impl Into<String>) -> Self {
        Self::new(Kind::CouldNotAct, message)
    }
    pub fn interrupted(message: impl Into<String>) -> Self {
        Self::new(Kind::Interrupted, message)
    }
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// The kind of an error chain: the outermost classified [`Error`] wins; unclassified errors are
/// "could not act".
pub fn kind_of(err: &anyhow::Error) -> Kind {
    classified(err).map_or(Kind::CouldNotAct, |e| e.kind)
}

/// The outermost classified error in a chain, if any.
pub fn classified(err: &anyhow::Error) -> Option<&Error> {
    err.chain().find_map(|cause| cause.downcast_ref::<Error>())
}

/// Shorthand for `Err(Error::usage(..).into())`.
#[macro_export]
macro_rules! usage {
    ($($arg:tt)*) => { ::anyhow::Error::from($crate::error::Error::usage(format!($($arg)*))) };
}

/// Shorthand for a verdict error.
#[macro_export]
macro_rules! verdict {
    ($($arg:tt)*) => { ::anyhow::Error::from($crate::error::Error::verdict(format!($($arg)*))) };
}

/// Shorthand for a could-not-act error.
#[macro_export]
macro_rules! could_not_act {
    ($($arg:tt)*) => { ::anyhow::Error::from($crate::error::Error::could_not_act(format!($($arg)*))) };
}

/// Where the last panic happened and what it said, recorded by [`quiet_panics`]' hook.
static LAST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Replaces Rust's panic report (several lines, on stderr) with a record of it: a panic is
/// turned into an error (exit 3) where it is caught, and rendered once, in the one error format.
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let what = panic_text(info.payload());
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(format!("{what}{at}"));
        }
    }));
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// The message a caught panic carried, with where it happened when the hook saw it.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = panic_text(payload);
    match LAST_PANIC.lock().ok().and_then(|l| l.clone()) {
        Some(recorded) if recorded.starts_with(&text) => recorded,
        _ => text,
    }
}
