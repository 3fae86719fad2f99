//! An environment update: started, followed event by event and instance by instance until EB
//! is Ready on the version with an accepted health, aborted when its health goes Red.

use super::*;

impl ElasticBeanstalk<'_> {
    /// `name` as EB describes it, when Ready: an update in progress is never interrupted.
    pub(super) fn ready(&self, name: &str) -> Result<EnvDesc> {
        let d = self.describe_one(name)?;
        if d.status != "Ready" {
            return Err(could_not_act!(
                "{name} is {} ({}), not Ready: another update is in progress; not interrupting it",
                d.status,
                d.health()
            ));
        }
        Ok(d)
    }

    /// `update-environment` to `label`, then wait until it has provably taken it.
    pub(super) fn update_and_wait(&self, name: &str, label: &str) -> Result<()> {
        let d = self.ready(name)?;
        if d.version_label.as_deref() == Some(label) && self.accepted(&d) {
            self.fx.ui.status(format!("{name}: already runs {label} and is {}; nothing to deploy", d.health()));
            return Ok(());
        }
        let old = d.label().to_string();
        self.fx.ui.status(format!("{name}: runs {old} ({}); deploying {label}", d.health()));
        let args = ["--application-name", self.app(), "--environment-name", name, "--version-label", label];
        let mut tries = 0;
        let updated = loop {
            match self.aws.change("elasticbeanstalk", "update-environment", &args) {
                // Right after create-application-version EB may not see the label yet.
                Err(e)
                    if tries < 3
                        && e.downcast_ref::<AwsError>()
                            .is_some_and(|a| a.message.contains("No Application Version named")) =>
                {
                    tries += 1;
                    self.fx.ui.warn(format!("{name}: EB does not see {label} yet; asking again"));
                    self.fx.nap(self.cfg.retry_backoff.0, || format!("{name} was not changed"))?;
                }
                other => {
                    break other.map_err(|e| {
                        interrupted_leaving(e, || {
                            format!(
                                "{name} may be updating from {old} to {label}: the signal came while EB was being asked"
                            )
                        })
                    })?;
                }
            }
        };
        let Some(updated) = updated else {
            self.fx.ui.plan(format!(
                "# would poll describe-environments and describe-events for {name} until Ready on {label} with health {}",
                self.cfg.accepted_health.iter().map(|h| h.as_str()).collect::<Vec<_>>().join("|")
            ));
            return Ok(());
        };
        let since = updated["DateUpdated"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| crate::clock::rfc3339(crate::clock::now_ms() - 1000));
        self.wait_deployed(name, label, &old, &since).map_err(|e| {
            interrupted_leaving(e, || {
                format!("{name} is left updating from {old} to {label}; EB carries on without us")
            })
        })
    }

    pub(super) fn wait_deployed(&self, name: &str, label: &str, old: &str, since: &str) -> Result<()> {
        let deadline = Instant::now() + self.cfg.deploy_timeout.0;
        let mut pause = self.cfg.poll.0;
        let mut seen = HashSet::new();
        let mut errors = vec![];
        let mut watch = UpdateWatch { grace: self.cfg.health_grace.0, ..Default::default() };
        let mut said = String::new();
        loop {
            // Status first, then the events: everything EB logged up to that status is judged.
            let d = self.describe_one(name)?;
            self.stream_events(name, since, &mut seen, &mut errors)?;
            let instances = self.instances(name)?;
            let on = instances.as_ref().map(|all| (all.iter().filter(|i| i.runs(label)).count(), all.len()));
            let now = format!(
                "{name}: {}, health {}{}",
                d.status,
                d.health(),
                on.map(|(n, of)| format!("; {label} on {n} of {of} instance(s)")).unwrap_or_default()
            );
            if now != said {
                self.fx.ui.status(&now);
                said = now;
            }
            let accepted_list = || self.cfg.accepted_health.iter().map(|h| h.as_str()).collect::<Vec<_>>().join(", ");
            let poll =
                UpdatePoll { d: &d, instances: instances.as_deref(), errors: &errors, accepted: self.accepted(&d) };
            match watch.judge(Instant::now(), label, &poll) {
                UpdateStep::Wait => {}
                UpdateStep::Deployed => {
                    self.fx.ui.status(format!("{name}: Ready on {label}, health {}", d.health()));
                    return Ok(());
                }
                UpdateStep::Verdict(why) => return Err(verdict!("{name} {why}")),
                UpdateStep::NotAccepted => {
                    return Err(verdict!(
                        "{name} runs {label} but its health is {} (accepted: {})",
                        d.health(),
                        accepted_list()
                    ));
                }
                UpdateStep::Terminating => {
                    return Err(could_not_act!("{name} is {} while deploying {label}", d.status));
                }
                UpdateStep::AbortRed => return Err(self.abort_red_update(name, label, old, on, &errors)),
            }
            if Instant::now() + pause > deadline {
                return Err(crate::error::Error::could_not_act(format!(
                    "{name} is still {} ({}) after {}: gave up waiting for {label} (it was {old})",
                    d.status,
                    d.health(),
                    self.timeout()
                ))
                .with_hint(
                    "the update was not aborted and may still finish; look at the environment before deploying again",
                )
                .into());
            }
            self.pause(&mut pause, String::new)?;
        }
    }

    /// Health Red for `health_grace` during an update: `abort-environment-update` (EB puts
    /// the old version back on the instances that took the new one), a wait until Ready again,
    /// and the failing verdict.
    pub(super) fn abort_red_update(
        &self,
        name: &str,
        label: &str,
        old: &str,
        on: Option<(usize, usize)>,
        errors: &[String],
    ) -> anyhow::Error {
        let reached = on.map(|(n, of)| format!(" ({label} had reached {n} of {of} instance(s))")).unwrap_or_default();
        let grace = humantime::format_duration(self.cfg.health_grace.0);
        if let Err(e) = self.abort(name) {
            return crate::error::Error::could_not_act(format!(
                "{name}'s health stayed Red for {grace} while EB deployed {label}{reached}, and aborting the update failed: {e:#}"
            ))
            .with_hint("abort it with `aws elasticbeanstalk abort-environment-update`, then roll back")
            .into();
        }
        self.fx.ui.status(format!("{name}: health Red for {grace} during the update{reached}; update aborted"));
        let back = match self.ready_again(name, "rolling back the aborted update") {
            Ok(Some(d)) => format!("EB put {} back (health {})", d.label(), d.health()),
            Ok(None) => "EB was still rolling back when safedeploy stopped waiting".to_string(),
            Err(e) => return e,
        };
        verdict!(
            "{name}'s health stayed Red for {grace} while Elastic Beanstalk deployed {label}{reached}: the update was aborted and {back} (it was {old}){}",
            first_error(errors)
        )
    }

    /// After an abort: polls `name` until it is Ready again (said), for up to `deploy_timeout`;
    /// `None` when it is not by then. `doing` says what EB is left doing if a signal comes.
    pub(super) fn ready_again(&self, name: &str, doing: &str) -> Result<Option<EnvDesc>> {
        let mut pause = self.cfg.poll.0;
        let until = Instant::now() + self.cfg.deploy_timeout.0;
        while Instant::now() < until {
            let d = self.describe_one(name)?;
            if d.status == "Ready" {
                self.fx.ui.status(format!("{name}: Ready on {} again (health {})", d.label(), d.health()));
                return Ok(Some(d));
            }
            self.pause(&mut pause, || format!("{name} is left {doing}"))?;
        }
        Ok(None)
    }

    /// `abort-environment-update`: during traffic splitting, EB sends every request back to the
    /// old instances and terminates the new ones; during a deploy, it puts the old version back
    /// on the instances that took the new one.
    pub(super) fn abort(&self, name: &str) -> Result<()> {
        self.aws.change("elasticbeanstalk", "abort-environment-update", &["--environment-name", name])?;
        Ok(())
    }
}

/// One poll of an update: the environment, its instances (`None` without enhanced health), the
/// error events so far, and whether its health is one the config accepts.
pub(super) struct UpdatePoll<'p> {
    pub(super) d: &'p EnvDesc,
    pub(super) instances: Option<&'p [InstanceHealth]>,
    pub(super) errors: &'p [String],
    pub(super) accepted: bool,
}

/// What to do after a poll.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum UpdateStep {
    Wait,
    /// Ready on the version on every instance, its health accepted.
    Deployed,
    /// Failed: the text follows the environment's name.
    Verdict(String),
    /// Ready on the version, its health Red or still not accepted after the grace.
    NotAccepted,
    /// EB is terminating the environment: no verdict on the version.
    Terminating,
    /// Red for the grace while EB still deploys: the update is to be aborted.
    AbortRed,
}

/// The update's verdict over its polls, one at a time (pure: the time of each poll is given,
/// so its sequences are tested without a clock or EB). It remembers since when EB has been
/// Ready and since when it has been Red while updating.
#[derive(Debug, Default)]
pub(super) struct UpdateWatch {
    pub(super) grace: Duration,
    ready_since: Option<Instant>,
    red_since: Option<Instant>,
}

impl UpdateWatch {
    pub(super) fn judge(&mut self, now: Instant, label: &str, p: &UpdatePoll<'_>) -> UpdateStep {
        let d = p.d;
        if d.status == "Ready" {
            if d.version_label.as_deref() != Some(label) {
                return UpdateStep::Verdict(format!(
                    "went back to Ready on {}, not {label}: Elastic Beanstalk did not deploy it{}",
                    d.label(),
                    first_error(p.errors)
                ));
            }
            if !p.errors.is_empty() {
                return UpdateStep::Verdict(format!(
                    "runs {label} but Elastic Beanstalk reported {} error event(s) during the deploy{}",
                    p.errors.len(),
                    first_error(p.errors)
                ));
            }
            let late = now.saturating_duration_since(*self.ready_since.get_or_insert(now)) >= self.grace;
            let all = p.instances.unwrap_or_default();
            let behind: Vec<&InstanceHealth> = all.iter().filter(|i| !i.runs(label)).collect();
            if !behind.is_empty() {
                if !(late || d.health() == "Red") {
                    return UpdateStep::Wait;
                }
                let named: Vec<String> = behind
                    .iter()
                    .take(5)
                    .map(|i| format!("{} runs {} ({})", i.instance_id, i.label(), i.deployment_status()))
                    .collect();
                return UpdateStep::Verdict(format!(
                    "is Ready on {label}, but {} of {} instance(s) do not run it: {}{}",
                    behind.len(),
                    all.len(),
                    named.join(", "),
                    if behind.len() > named.len() { ", ..." } else { "" }
                ));
            }
            if p.accepted {
                return UpdateStep::Deployed;
            }
            if d.health() == "Red" || late {
                return UpdateStep::NotAccepted;
            }
            return UpdateStep::Wait;
        }
        if d.status.starts_with("Terminat") {
            return UpdateStep::Terminating;
        }
        if d.health() != "Red" {
            self.red_since = None;
            return UpdateStep::Wait;
        }
        // Users reach what EB has deployed so far; EB itself may wait on a failing batch for its
        // rolling timeout (30 minutes by default).
        let red = *self.red_since.get_or_insert(now);
        if now.saturating_duration_since(red) >= self.grace { UpdateStep::AbortRed } else { UpdateStep::Wait }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(status: &str, label: &str, health: &str) -> EnvDesc {
        serde_json::from_value(serde_json::json!({
            "EnvironmentName": "production", "VersionLabel": label, "Status": status, "Health": health,
        }))
        .expect("env")
    }
    fn instance(id: &str, label: &str, status: &str) -> InstanceHealth {
        serde_json::from_value(serde_json::json!({
            "InstanceId": id, "Deployment": {"VersionLabel": label, "Status": status},
        }))
        .expect("instance")
    }

    /// A poll: (seconds, status, label, health, the instances' labels, accepted).
    type Poll<'a> = (u64, &'a str, &'a str, &'a str, &'a [&'a str], bool);

    /// Runs polls with a 10 s grace; returns the first step that is not `Wait`, with its second.
    fn run(polls: &[Poll<'_>], errors: &[String]) -> Option<(u64, UpdateStep)> {
        let t0 = Instant::now();
        let mut w = UpdateWatch { grace: Duration::from_secs(10), ..Default::default() };
        polls.iter().find_map(|&(at, status, label, health, on, accepted)| {
            let d = env(status, label, health);
            let all: Vec<InstanceHealth> =
                on.iter().enumerate().map(|(n, l)| instance(&format!("i-{n}"), l, "Deployed")).collect();
            let p = UpdatePoll { d: &d, instances: Some(&all), errors, accepted };
            match w.judge(t0 + Duration::from_secs(at), "v2", &p) {
                UpdateStep::Wait => None,
                step => Some((at, step)),
            }
        })
    }

    #[test]
    fn an_updates_polls_end_in_one_verdict_at_the_right_moment() {
        use UpdateStep::*;
        let none: &[String] = &[];
        let on_v2: &[&str] = &["v2", "v2"];
        let half: &[&str] = &["v2", "v1"];
        // Updating, then Ready on v2 everywhere and Green: deployed.
        assert_eq!(
            run(&[(0, "Updating", "v2", "Green", half, true), (5, "Ready", "v2", "Green", on_v2, true)], none),
            Some((5, Deployed))
        );
        // Ready on v2 but an instance behind: waited on for the grace, then a verdict naming it.
        let behind = run(
            &[
                (0, "Ready", "v2", "Green", half, true),
                (9, "Ready", "v2", "Green", half, true),
                (10, "Ready", "v2", "Green", half, true),
            ],
            none,
        );
        assert!(
            matches!(&behind, Some((10, Verdict(t))) if t.contains("1 of 2 instance(s) do not run it: i-1 runs v1")),
            "{behind:?}"
        );
        // ... at once when Red.
        assert!(matches!(run(&[(0, "Ready", "v2", "Red", half, false)], none), Some((0, Verdict(_)))));
        // Back to Ready on the old version: EB did not deploy it.
        let back = run(&[(0, "Ready", "v1", "Green", &["v1"], true)], none);
        assert!(
            matches!(&back, Some((0, Verdict(t))) if t.starts_with("went back to Ready on v1, not v2")),
            "{back:?}"
        );
        // Error events during the deploy fail it even when Ready and Green.
        let errors = vec!["Failed to deploy application.".to_string()];
        let failed = run(&[(0, "Ready", "v2", "Green", on_v2, true)], &errors);
        assert!(
            matches!(&failed, Some((0, Verdict(t))) if t.contains("1 error event(s)") && t.contains("Failed to deploy")),
            "{failed:?}"
        );
        // Ready on v2, health not accepted: waited on for the grace (Yellow), at once when Red.
        assert_eq!(
            run(&[(0, "Ready", "v2", "Yellow", on_v2, false), (9, "Ready", "v2", "Yellow", on_v2, false)], none),
            None
        );
        assert_eq!(
            run(&[(0, "Ready", "v2", "Yellow", on_v2, false), (10, "Ready", "v2", "Yellow", on_v2, false)], none),
            Some((10, NotAccepted))
        );
        assert_eq!(run(&[(0, "Ready", "v2", "Red", on_v2, false)], none), Some((0, NotAccepted)));
        // Red while updating: aborted once Red for the grace; a poll out of Red starts it again.
        let red = |at| (at, "Updating", "v2", "Red", half, false);
        let yellow = |at| (at, "Updating", "v2", "Yellow", half, false);
        assert_eq!(run(&[red(0), red(9), red(10)], none), Some((10, AbortRed)));
        assert_eq!(run(&[red(0), yellow(5), red(9), red(18)], none), None);
        assert_eq!(run(&[red(0), yellow(5), red(9), red(19)], none), Some((19, AbortRed)));
        // Terminating: no verdict on the version.
        assert_eq!(run(&[(0, "Terminating", "v2", "Grey", half, false)], none), Some((0, Terminating)));
    }
}
