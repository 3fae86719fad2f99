//! deploy-staging, promote and rollback: the three ways a version reaches an environment,
//! sharing one path — a [`Session`] takes the environment's lock and closes what a killed run
//! left open; each deployment goes through the platform, which says how it ended as a value
//! ([`Deployed`]), and is recorded in the ledger — and the SLA budget they report.
//!
//! An incident is recorded (open) before anything is done about it and closed once the good
//! version serves through the environment's address, so a run killed in between leaves it open
//! for the next run in the environment to close: no incident is lost, and the time it takes to
//! stop the bad version afterwards is never charged as downtime.
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | the shared path: the session (lock, ledger, platform, live), a recorded deployment |
//! | [`staging`] | deploy-staging |
//! | [`promote`] | promote: the check before traffic, the canary, a failed promote |
//! | [`rollback`] | rollback: what to restore, the verified restore, the incident |
//! | [`crate::rules`] | the decisions that change production, as pure functions with table tests |

use crate::bundle;
use crate::clock::{Millis, human, now_ms, rfc3339};
use crate::config::Label;
use crate::context::Ctx;
use crate::error::Error;
use crate::ledger::{Action, Cause, Incident, Ledger, Version};
use crate::lock;
use crate::platform::{CanaryAborted, Deployed, Live, Platform};
use crate::sla::Budget;
use crate::{Outcome, usage};
use anyhow::Result;
use serde::Serialize;

mod promote;
mod rollback;
mod staging;

pub use promote::{CanaryRequest, PromoteRequest, promote};

/// How a deployment's reason records `promote --accept-irreversible REASON` (followed by it).
pub const IRREVERSIBLE: &str = "irreversible accepted: ";
pub use rollback::{RollbackRequest, rollback};
pub use staging::deploy_staging;

/// One deployment as the ledger records it.
pub(super) struct Step<'a> {
    pub(super) label: &'a str,
    pub(super) action: Action,
    pub(super) previous: Option<&'a str>,
    pub(super) reason: Option<&'a str>,
    /// The check of the candidate before it takes traffic, where one runs.
    pub(super) pre: Option<&'a crate::platform::PreTraffic<'a>>,
    /// A canary phase before the whole switch.
    pub(super) canary: Option<&'a crate::platform::Canary<'a>>,
}

/// How a deployment ended: the platform's outcome, the release that ran before it, and whether
/// the version users were served broke meanwhile.
pub(super) struct Ended {
    pub(super) deployed: Deployed,
    pub(super) released: Option<crate::platform::Released>,
    pub(super) broke_live: Option<BrokeLive>,
    /// The version users were served was watched, and (unless `broke_live`) still serves.
    pub(super) watched: bool,
}

impl Ended {
    /// The switch, or the verdict of any other outcome (a restore, deploy-staging).
    pub(super) fn live_or_verdict(self, label: &str, env: &str) -> Result<crate::platform::Switched> {
        self.deployed.live_or_verdict(label, env)
    }
}

/// The version users were served stopped serving them while another version's release or
/// start ran: users met the change before it took traffic.
#[derive(Debug, Clone)]
pub(super) struct BrokeLive {
    pub(super) label: String,
    /// When what broke it began: the release's start, else the candidate's start.
    pub(super) since: Millis,
    /// When a round saw it failing.
    pub(super) seen_at: Millis,
    pub(super) why: String,
}

/// The watch on the version users are served: a round of the smoke chains through the
/// environment's address before anything changes (a version already failing is not this run's
/// doing: it is not watched), and after each step that may change shared data.
struct Watch<'a> {
    ctx: &'a Ctx,
    env: &'a str,
    serving: Option<String>,
    broke: std::cell::RefCell<Option<BrokeLive>>,
}

impl<'a> Watch<'a> {
    fn new(ctx: &'a Ctx, env: &'a str, serving: Option<String>) -> Result<Self> {
        let serving = match serving {
            Some(l) => match crate::smoke::watch_live(ctx, env, &l)? {
                None => Some(l),
                Some(why) => {
                    ctx.ui.warn(format!(
                        "{env}: {l} already fails its checks before anything changes ({why}); it is not watched"
                    ));
                    None
                }
            },
            None => None,
        };
        Ok(Watch { ctx, env, serving, broke: Default::default() })
    }

    fn on(&self) -> bool {
        self.serving.is_some()
    }

    /// One round, unless it already broke; `since`: when what may have broken it began.
    fn round(&self, since: Millis) -> Result<()> {
        let Some(label) = self.serving.as_deref().filter(|_| self.broke.borrow().is_none()) else { return Ok(()) };
        if let Some(why) = crate::smoke::watch_live(self.ctx, self.env, label)? {
            let seen_at = now_ms();
            self.ctx.ui.warn(format!(
                "{}: {label}, which users are served, fails its checks since the change began at {}: {why}",
                self.env,
                rfc3339(since)
            ));
            *self.broke.borrow_mut() = Some(BrokeLive { label: label.to_string(), since, seen_at, why });
        }
        Ok(())
    }

    fn broke(&self) -> Option<BrokeLive> {
        self.broke.borrow().clone()
    }
}

/// One run's hold on an environment: its lock, the ledger, the platform, and what served there
/// once a killed run's leftovers were tidied. Every deployment of the run goes through it, so
/// none is made without the lock or left unrecorded.
pub(super) struct Session<'a> {
    pub(super) ctx: &'a Ctx,
    pub(super) ledger: Ledger,
    pub(super) platform: Box<dyn Platform + 'a>,
    pub(super) env: &'a str,
    pub(super) environment: &'a crate::config::Environment,
    /// What served when the run took the environment.
    pub(super) live: Option<Live>,
    _lock: Option<lock::EnvLock>,
}

impl<'a> Session<'a> {
    /// Takes the environment's lock and closes what a killed run left: deployments left open
    /// are abandoned, the platform tidies its leftovers, and an open incident whose good version
    /// now serves is closed.
    pub(super) fn open(ctx: &'a Ctx, ledger: Ledger, platform: Box<dyn Platform + 'a>, env: &'a str) -> Result<Self> {
        // The app's secrets from the shell are there before anything is changed.
        ctx.config.environment(env)?.check_app_vars(&ctx.env)?;
        let who = lock::Holder { tool: ctx.ui.tool, actor: ctx.env.actor() };
        let held = lock::acquire(&ctx.state_dir, env, &who, ctx.dry_run)?;
        let stale = ledger.abandon_stale(env)?;
        if stale > 0 {
            ctx.ui.warn(format!("{env}: closed {stale} deployment(s) left open by a run that was stopped"));
        }
        let environment = ctx.config.environment(env)?;
        platform.tidy(environment)?;
        let live = platform.live(environment)?;
        settle_incidents(ctx, &ledger, env, live.as_ref())?;
        Ok(Session { ctx, ledger, platform, env, environment, live, _lock: held })
    }

    /// The label of what served when the run took the environment.
    pub(super) fn live_label(&self) -> Option<String> {
        self.live.as_ref().map(|l| l.label.clone())
    }

    /// Deploys the environment with `step.label` and records the deployment and how it ended:
    /// first its release, where it has one that has not run here (a failed release starts
    /// nothing), then the platform's deploy. While anything that can change the data users are
    /// served from runs (the release; under promote, the candidate's start and its check before
    /// traffic) the version users are served is watched through the environment's address.
    pub(super) fn deploy(&self, step: Step<'_>) -> Result<Ended> {
        let Step { label, action, previous, reason, pre, canary } = step;
        let (ctx, ledger, env) = (self.ctx, &self.ledger, self.env);
        if !ctx.dry_run {
            ledger.adopt(label)?;
        }
        let id = ledger.begin_deployment(env, label, action, previous, reason)?;
        let fail = |e: anyhow::Error| -> Result<Ended> {
            ledger.finish_deployment(id, false, &format!("{e:#}"))?;
            if crate::error::kind_of(&e) == crate::error::Kind::Inconclusive {
                ledger.record_inconclusive(env, label, "canary", &format!("{e:#}"))?;
            }
            Err(e)
        };
        // What users are served, if anything else: watched while shared data may change.
        let serving = self.live.as_ref().filter(|l| l.healthy && l.label != label).map(|l| l.label.clone());
        // Its release, unless it already passed here (a rollback never runs one).
        let release = match action {
            Action::Deploy | Action::Promote if ledger.released_in(env, label)?.is_none() => {
                match self.platform.release_command(self.environment, label) {
                    Ok(r) => r,
                    Err(e) => return fail(e),
                }
            }
            _ => None,
        };
        // Watched while something can change the users' data: a release, or a candidate started
        // beside it and checked before traffic (a promote that skips that check, on a person's
        // word, is not watched).
        let watched_version = serving.filter(|_| !ctx.dry_run && (release.is_some() || pre.is_some()));
        let watch = match Watch::new(ctx, env, watched_version) {
            Ok(w) => w,
            Err(e) => return fail(e),
        };
        let mut released = None;
        let mut failed_release = None;
        if let Some(command) = &release {
            let r = match self.platform.release(self.environment, label, command) {
                Ok(r) => r,
                Err(e) => return fail(e),
            };
            if let Some(r) = r {
                let rid = ledger.record_release(env, label, &r)?;
                ledger.record_deployment_release(id, rid)?;
                if let Err(e) = watch.round(r.started_at) {
                    return fail(e);
                }
                if r.ok {
                    ctx.ui.status(format!("{env}: {label}'s release passed in {}", human(r.ended_at - r.started_at)));
                    released = Some(r);
                } else {
                    failed_release = Some(r);
                }
            }
        }
        // A failed release starts nothing; otherwise the platform deploys.
        let deployed = match failed_release {
            Some(r) => Deployed::ReleaseFailed(r),
            None => {
                // The candidate starts beside what serves on the environment's data, and its
                // start may change that data too (a migrator left in the web line): before the
                // switch, the version users are served is asked again. What broke is charged
                // from the release's start, else from that start.
                let released_at = released.as_ref().map(|r| r.started_at);
                let before_switch = |started: Millis| watch.round(released_at.unwrap_or(started));
                let watch_hook: Option<&crate::platform::Watch<'_>> =
                    if watch.on() { Some(&before_switch) } else { None };
                let keep_previous = self.keep_previous(action, previous)?;
                let how = crate::platform::DeployOptions { pre, keep_previous, canary, watch: watch_hook };
                match self.platform.deploy(self.environment, label, &how) {
                    Ok(d) => d,
                    Err(e) => return fail(e),
                }
            }
        };
        self.record_end(id, &deployed)?;
        Ok(Ended { deployed, released, broke_live: watch.broke(), watched: watch.on() })
    }

    /// Whether the version replaced stays warm for an instant switch back. A rollback replaces
    /// the bad version: it is not kept warm; nor is a version that failed here (its newest
    /// verdict a failure, or marked bad): it is no target for an instant switch back.
    fn keep_previous(&self, action: Action, previous: Option<&str>) -> Result<bool> {
        let previous_failed = match previous {
            Some(p) if !self.ctx.dry_run => self.ledger.failed_in(self.env, p)?,
            _ => false,
        };
        Ok(crate::rules::keep_warm(matches!(action, Action::Rollback | Action::Restore), previous_failed))
    }

    /// Closes the deployment's row with how it ended, and when users first met it.
    fn record_end(&self, id: i64, deployed: &Deployed) -> Result<()> {
        let ledger = &self.ledger;
        match deployed {
            Deployed::Live(switched) => {
                // Users first met it when its canary share took traffic, if it had one.
                ledger.record_switch(id, switched.took_traffic())?;
                ledger.finish_deployment(id, true, "healthy")?;
            }
            Deployed::CanaryAborted(a) => {
                ledger.record_switch(id, a.took_traffic_at)?;
                ledger.finish_deployment(id, false, &format!("canary at {}% aborted: {}", a.percent, a.why))?;
            }
            Deployed::StoppedBeforeTraffic(e) => {
                ledger.finish_deployment(id, false, &format!("stopped before traffic: {e:#}"))?;
            }
            Deployed::Unhealthy(e) => ledger.finish_deployment(id, false, &format!("{e:#}"))?,
            Deployed::ReleaseFailed(r) => {
                ledger.finish_deployment(id, false, &format!("its release failed ({})", r.exit))?
            }
        }
        Ok(())
    }

    /// `label` serves (the platform says so) but the ledger's last healthy deployment here is
    /// another: a run was killed after switching and before recording it. Record the truth.
    pub(super) fn reconcile(&self, label: &str, action: Action) -> Result<()> {
        let (ctx, ledger, env) = (self.ctx, &self.ledger, self.env);
        if ledger.live_deployment(env)?.is_some_and(|d| d.label == label) {
            return Ok(());
        }
        ctx.ui.warn(format!("{env}: {label} serves, but the ledger did not record it: recording it now"));
        if !ctx.dry_run {
            ledger.adopt(label)?;
        }
        let id = ledger.begin_deployment(env, label, action, None, Some("found live after an interrupted run"))?;
        ledger.finish_deployment(id, true, "found live and healthy")?;
        Ok(())
    }
}

/// Closes the open incidents of `env` whose good version serves now: the run that restored it
/// was stopped before it could say so. Restored is when this run found it serving (the latest
/// it can have been), so the downtime is never under-counted.
pub(super) fn settle_incidents(ctx: &Ctx, ledger: &Ledger, env: &str, live: Option<&Live>) -> Result<()> {
    let Some(live) = live.filter(|l| l.healthy) else { return Ok(()) };
    for i in ledger.open_incidents(env)? {
        if i.restored_label.as_deref() == Some(live.label.as_str()) {
            ctx.ui.warn(format!(
                "{env}: closing the incident of {} left open by a run that was stopped: {} serves",
                i.bad_label.as_deref().unwrap_or("-"),
                live.label
            ));
            let note = " (restored by a run that was stopped; closed when found serving)";
            ledger.close_incident(i.id, &live.label, now_ms(), Some(note))?;
        }
    }
    Ok(())
}

/// Closes the incidents of `env` that a release left open (the version users were served broke
/// and nothing could take over): `restored` serves its users again from `at`.
pub(super) fn close_release_incidents(ledger: &Ledger, env: &str, restored: &str, at: Millis) -> Result<()> {
    for i in ledger.open_incidents(env)? {
        if i.cause.as_deref() == Some(Cause::Release.as_str()) {
            ledger.close_incident(i.id, restored, at, Some(&format!(" (closed when {restored} served again)")))?;
        }
    }
    Ok(())
}

/// What a deploy's release did, in `--json` documents.
#[derive(Serialize)]
pub(super) struct ReleaseSummary {
    command: String,
    exit: String,
    duration_ms: Millis,
}

impl ReleaseSummary {
    pub(super) fn of(r: &crate::platform::Released) -> Self {
        ReleaseSummary { command: r.command.clone(), exit: r.exit.clone(), duration_ms: r.ended_at - r.started_at }
    }
}

/// The environments that only promote may change: those whose incidents spend the SLA budget.
pub(super) fn is_production(ctx: &Ctx, env: &str) -> bool {
    ctx.config.sla.environments.iter().any(|e| e == env)
}

/// At most `n` characters of `text`, marked when cut.
pub(super) fn clip(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(n).collect::<String>())
    }
}
