//! The product's error kinds and the one mapping from an outcome to an exit code.
//!
//! Library code returns `anyhow::Result`; where the kind matters to the pipeline it raises an
//! [`Error`] (usage, verdict, could-not-act, inconclusive, interrupted). Anything unclassified is "could not
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
    /// Not enough evidence to judge the version (too few requests, a metric without data past
    /// its cap): neither a pass nor a verdict, and nothing is marked bad.
    Inconclusive,
    /// SIGINT/SIGTERM arrived; the environment is left in the described state.
    Interrupted,
}

impl Kind {
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::Verdict => exit::VERDICT,
            Kind::Usage => exit::USAGE,
            Kind::CouldNotAct => exit::COULD_NOT_ACT,
            Kind::Inconclusive => exit::INCONCLUSIVE,
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
    pub const INCONCLUSIVE: u8 = 4;
    pub const INTERRUPTED: u8 = 130;
}

/// A classified failure: one line of message, optionally a hint for the reader of the console,
/// and the failure it explains (its `source`, so the chain shows both and [`classified`] sees
/// through it).
#[derive(Debug)]
pub struct Error {
    pub kind: Kind,
    pub message: String,
    pub hint: Option<String>,
    cause: Option<anyhow::Error>,
}

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), hint: None, cause: None }
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
    pub fn inconclusive(message: impl Into<String>) -> Self {
        Self::new(Kind::Inconclusive, message)
    }
    pub fn interrupted(message: impl Into<String>) -> Self {
        Self::new(Kind::Interrupted, message)
    }
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    /// This error, explaining `cause`: its kind is the one the pipeline acts on (a restore that
    /// failed after a verdict is "could not act", whatever the verdict said).
    pub fn caused_by(mut self, cause: anyhow::Error) -> anyhow::Error {
        self.cause = Some(cause);
        self.into()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_ref().map(|c| {
            let e: &(dyn std::error::Error + Send + Sync + 'static) = c.as_ref();
            e as &(dyn std::error::Error + 'static)
        })
    }
}

/// The kind of an error chain: the outermost classified [`Error`] wins; unclassified errors are
/// "could not act".
pub fn kind_of(err: &anyhow::Error) -> Kind {
    classified(err).map_or(Kind::CouldNotAct, |e| e.kind)
}

/// The outermost classified error in a chain, if any: an [`Error`] anywhere in the chain, also
/// under `.context(...)` lines and as the cause of another error.
pub fn classified(err: &anyhow::Error) -> Option<&Error> {
    err.downcast_ref::<Error>().or_else(|| err.chain().find_map(|cause| cause.downcast_ref::<Error>()))
}

/// What each exit code means, for every binary, and what a pipeline does with it: the one
/// table the binaries' `--help` and the README's table are made from (a test compares them).
pub const EXIT_CODES: &[(u8, &str, &str)] = &[
    (exit::SUCCESS, "success", "next stage"),
    (exit::VERDICT, "verdict: the version or change is bad", "stop; roll back if production changed"),
    (exit::USAGE, "usage, configuration or input error: nothing was changed", "stop, fix the pipeline"),
    (
        exit::COULD_NOT_ACT,
        "could not act: platform or command error, lock held, timeout, internal error",
        "stop or retry; never read as a verdict",
    ),
    (
        exit::INCONCLUSIVE,
        "inconclusive: not enough evidence to judge the version (too few requests, no data); nothing is marked bad",
        "stop; try again with more traffic or a longer bake; never read as a pass",
    ),
    (
        exit::INTERRUPTED,
        "interrupted (SIGINT/SIGTERM): the environment is left in the state the message describes",
        "look at the environment",
    ),
];

/// The README's exit-code table, from [`EXIT_CODES`].
pub fn exit_codes_table() -> String {
    let mut t = String::from("| code | meaning | what the pipeline does |\n|---|---|---|\n");
    for (code, meaning, then) in EXIT_CODES {
        t += &format!("| {code} | {meaning} | {then} |\n");
    }
    t
}

/// What success and a verdict mean for each binary (`None`: it gives no verdict).
pub const OUTCOMES: &[(&str, &str, Option<&str>)] = &[
    (
        "gate-tests",
        "the tests ran and passed, and the policies passed or were waived",
        Some("tests failed or too few ran, no fresh report, a policy failed"),
    ),
    ("deploy-staging", "the version is live and healthy", Some("the version failed to build or to become healthy")),
    (
        "smoke-check",
        "every check passed (and every monitor was OK)",
        Some("a check failed, the version was not served in time, a monitor is not OK"),
    ),
    (
        "promote",
        "promoted, or already live; with --budget, the report",
        Some("refused (not verified, marked bad, budget spent) or unhealthy, the previous version back"),
    ),
    ("rollback", "restored, or nothing to roll back; with --budget, the report", None),
    ("collect-logs", "the report is written, whether or not errors were found", None),
    ("safedeploy", "done (check: the configuration is valid)", None),
];

/// The exit-code paragraph of a binary's `--help`, from [`EXIT_CODES`] and [`OUTCOMES`].
pub fn exit_codes_help(tool: &str) -> String {
    let (success, verdict) =
        OUTCOMES.iter().find(|(t, _, _)| *t == tool).map(|(_, s, v)| (*s, *v)).unwrap_or(("it did its job", None));
    let mut lines = vec!["Exit codes (the same in every safedeploy binary):".to_string()];
    for (code, meaning, _) in EXIT_CODES {
        lines.push(match (*code, verdict) {
            (exit::SUCCESS, _) => format!("  {code:>3}  {meaning}: {success}"),
            (exit::VERDICT, Some(v)) => format!("  {code:>3}  {meaning}: {v}"),
            (exit::VERDICT, None) => format!("  {code:>3}  {meaning} (not given by {tool})"),
            _ => format!("  {code:>3}  {meaning}"),
        });
    }
    lines.join("\n")
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

/// Shorthand for an inconclusive error (not enough evidence).
#[macro_export]
macro_rules! inconclusive {
    ($($arg:tt)*) => { ::anyhow::Error::from($crate::error::Error::inconclusive(format!($($arg)*))) };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outermost_classified_error_decides_through_contexts_and_causes() {
        let verdict = || anyhow::Error::from(Error::verdict("v2 did not become healthy"));
        // Plain context lines above a classified error keep its kind.
        let e = verdict().context("deploying v2").context("promote");
        assert_eq!(kind_of(&e), Kind::Verdict);
        // A restore that failed after a verdict is "could not act", however deep the verdict.
        let e = Error::could_not_act("restoring v1 failed").caused_by(verdict().context("starting v1"));
        assert_eq!(kind_of(&e), Kind::CouldNotAct);
        let e = Error::could_not_act("restoring v1 failed").caused_by(verdict()).context("rollback");
        assert_eq!(kind_of(&e), Kind::CouldNotAct);
        // An error made a context of another (anyhow's own way) is seen too.
        let e = anyhow::anyhow!("exit status 1").context(Error::verdict("version v3 failed to build"));
        assert_eq!(kind_of(&e), Kind::Verdict);
        // The chain shows the message, then its cause.
        let e = Error::could_not_act("restoring v1 failed").caused_by(verdict());
        let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
        assert_eq!(chain, ["restoring v1 failed", "v2 did not become healthy"]);
        // Unclassified is "could not act", never a verdict.
        assert_eq!(kind_of(&anyhow::anyhow!("disk full")), Kind::CouldNotAct);
    }

    #[test]
    fn every_binary_has_an_outcome_line_and_the_help_lists_every_code() {
        for (tool, _, _) in OUTCOMES {
            let help = exit_codes_help(tool);
            for (code, meaning, _) in EXIT_CODES {
                assert!(help.contains(&format!("{code:>3}  {meaning}")), "{tool}: {code}\n{help}");
            }
        }
    }
}
