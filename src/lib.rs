//! safedeploy: small Jenkins-pipeline binaries that keep a bad commit out of production and
//! bring production back in seconds when one gets through.
//!
//! Architecture map (each binary in `src/bin/` is one call into [`tools`], its command line):
//!
//! | module | owns |
//! |---|---|
//! | [`cli`] | the common flags, the one outcome → exit-code mapping, error rendering |
//! | [`error`] | the error kinds (verdict 1, usage 2, could-not-act 3, interrupted 130) |
//! | [`failpoint`] | fault injection at the chokepoints, for the reliability suite only |
//! | [`effects`] | console, command and request chokepoints, dry run, interrupt flag, environment |
//! | [`context`] | what every operation is handed: the effects, the config, the state dir |
//! | [`environ`] | the process environment, read once; no other module reads `std::env` |
//! | [`config`] | `safedeploy.toml`, parsed once into typed values and checked before any side effect |
//! | [`exec`] | the only place that starts a process; `--dry-run` for commands and effects |
//! | [`procs`] | processes and process groups from /proc: found by group or directory, ended |
//! | [`http`] | the only place that makes a request; `--dry-run` for requests |
//! | [`ledger`] | SQLite record of versions, deployments, verifications, incidents, stops |
//! | [`lock`] | one deploy per environment at a time |
//! | [`rules`] | the decisions that change production (last known good, cause, exposure, alert evidence, warmth), pure, with table tests |
//! | [`statedir`] | the state dir's trust: this user's alone, closed to others, no planted symlink |
//! | [`platform`] | the `Platform` trait; `local` and `elasticbeanstalk` (aws CLI) behind it |
//! | [`paths`] | joins of paths built from inputs, proven to stay under their parent |
//! | [`bundle`] | a version's bundle: `git archive` of one commit, built once |
//! | [`git`] | read-only questions to git |
//! | [`gate`], [`smoke`], [`deploy`], [`logs`] | the operations behind the six binaries |
//! | [`manage`] | the `safedeploy` command's operations: init, check, status, history, stop, man |
//! | [`tools`] | every binary's command line (clap) and `main`; completions and man pages come from them |
//! | [`alert`], [`notify`] | the Datadog webhook payload in; Slack and Datadog events out |
//! | [`sla`] | the SLA budget: `[sla]` and what the ledger's incidents spent of it |
//! | [`ui`], [`redact`], [`clock`] | console discipline, secret masking, time |

pub mod alert;
pub mod bundle;
pub mod cli;
pub mod clock;
pub mod config;
pub mod context;
pub mod deploy;
pub mod effects;
pub mod environ;
pub mod error;
pub mod exec;
pub mod failpoint;
pub mod gate;
pub mod git;
pub mod http;
pub mod judge;
pub mod ledger;
pub mod lock;
pub mod logs;
pub mod manage;
pub mod notify;
pub mod paths;
pub mod platform;
pub mod procs;
pub mod redact;
pub mod report;
pub mod rules;
pub mod sla;
pub mod smoke;
pub mod statedir;
pub mod tools;
pub mod ui;

/// What an operation hands back: its summary (the `--json` document) and, when the version or
/// change was judged bad, the verdict (exit 1).
#[derive(Debug)]
pub struct Outcome {
    pub summary: serde_json::Value,
    pub verdict: Option<String>,
}

impl Outcome {
    /// A success whose summary is `summary`'s JSON.
    pub fn of(summary: &impl serde::Serialize) -> anyhow::Result<Self> {
        Ok(Outcome::ok(serde_json::to_value(summary)?))
    }
    /// A verdict whose summary is `summary`'s JSON.
    pub fn verdict_of(summary: &impl serde::Serialize, verdict: impl Into<String>) -> anyhow::Result<Self> {
        Ok(Outcome::verdict(serde_json::to_value(summary)?, verdict))
    }
    pub fn ok(summary: serde_json::Value) -> Self {
        Outcome { summary, verdict: None }
    }
    pub fn verdict(summary: serde_json::Value, verdict: impl Into<String>) -> Self {
        Outcome { summary, verdict: Some(verdict.into()) }
    }
}
