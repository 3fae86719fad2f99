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
        let mut ready_at: Option<Instant> = None;
        let mut red_since: Option<Instant> = None;
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
            if d.status == "Ready" {
                if d.version_label.as_deref() != Some(label) {
                    return Err(verdict!(
                        "{name} went back to Ready on {}, not {label}: Elastic Beanstalk did not deploy it{}",
                        d.label(),
                        first_error(&errors)
                    ));
                }
                if !errors.is_empty() {
                    return Err(verdict!(
                        "{name} runs {label} but Elastic Beanstalk reported {} error event(s) during the deploy{}",
                        errors.len(),
                        first_error(&errors)
                    ));
                }
                let since_ready = *ready_at.get_or_insert_with(Instant::now);
                let late = since_ready.elapsed() >= self.cfg.health_grace.0;
                let behind: Vec<&InstanceHealth> = instances.iter().flatten().filter(|i| !i.runs(label)).collect();
                if !behind.is_empty() {
                    if late || d.health() == "Red" {
                        let named: Vec<String> = behind
                            .iter()
                            .take(5)
                            .map(|i| format!("{} runs {} ({})", i.instance_id, i.label(), i.deployment_status()))
                            .collect();
                        return Err(verdict!(
                            "{name} is Ready on {label}, but {} of {} instance(s) do not run it: {}{}",
                            behind.len(),
                            instances.as_ref().map_or(0, Vec::len),
                            named.join(", "),
                            if behind.len() > named.len() { ", ..." } else { "" }
                        ));
                    }
                } else if self.accepted(&d) {
                    self.fx.ui.status(format!("{name}: Ready on {label}, health {}", d.health()));
                    return Ok(());
                } else if d.health() == "Red" || late {
                    return Err(verdict!(
                        "{name} runs {label} but its health is {} (accepted: {})",
                        d.health(),
                        self.cfg.accepted_health.iter().map(|h| h.as_str()).collect::<Vec<_>>().join(", ")
                    ));
                }
            } else if d.status.starts_with("Terminat") {
                return Err(could_not_act!("{name} is {} while deploying {label}", d.status));
            } else if d.health() == "Red" {
                // Users reach what EB has deployed so far; EB itself may wait on a failing batch
                // for its rolling timeout (30 minutes by default).
                let red = *red_since.get_or_insert_with(Instant::now);
                if red.elapsed() >= self.cfg.health_grace.0 {
                    return Err(self.abort_red_update(name, label, old, on, &errors));
                }
            } else {
                red_since = None;
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
