//! Moving users between versions: a traffic-splitting canary judged every round, and
//! blue/green (the standby deployed and checked, then the CNAMEs swapped).

use super::*;

impl ElasticBeanstalk<'_> {
    /// A canary through EB's traffic splitting: `update-environment` with the TrafficSplitting
    /// deployment policy (NewVersionPercent = the share, EvaluationTime = the bake in whole
    /// minutes). While EB evaluates, each round runs the checks against the environment's
    /// address (users' traffic: both versions answer it) and reads EB's health and events; a
    /// failed round, or health Red, aborts the update (`abort-environment-update`), which sends
    /// every request back to the old instances. EB ending the evaluation decides success.
    pub(super) fn deploy_split(
        &self,
        env: &Environment,
        name: &str,
        label: &str,
        c: &crate::platform::Canary<'_>,
    ) -> Result<crate::platform::Deployed> {
        self.can_canary(env, c.bake)?;
        let d = self.ready(name)?;
        let old = d.label().to_string();
        let Some((took, since)) = self.start_split(name, label, &old, c)? else {
            return Ok(crate::platform::Deployed::Live(Switched::at(crate::clock::now_ms())));
        };
        let deadline = Instant::now() + self.cfg.deploy_timeout.0 + c.bake;
        let (mut seen, mut errors) = (HashSet::new(), vec![]);
        let mut round = 0u32;
        // Each version's answers to users, from enhanced health's application metrics: one
        // report per window it covers, so no request is counted twice.
        let mut reports = ReportsJudge::default();
        let mut next_sample = Instant::now();
        let failed: String = loop {
            // Interrupted (a Jenkins abort): the split is aborted, so the old version serves all.
            if let Err(e) = self.fx.nap(c.interval, || {
                format!("the traffic split of {label} was aborted: {old}'s instances take every request again")
            }) {
                self.abort(name)?;
                return Err(e);
            }
            round += 1;
            let d = self.describe_one(name)?;
            self.stream_events(name, &since, &mut seen, &mut errors)?;
            if d.status == "Ready" {
                return Ok(self.split_ended(&d, label, took, c.percent, &errors));
            }
            if d.health() == "Red" {
                break format!("{name}'s health is Red during the traffic split");
            }
            match (c.round)(&env.url.base()) {
                Ok(()) => self.fx.ui.status(format!(
                    "{name}: canary round {round} passed (EB: {}, health {})",
                    d.status,
                    d.health()
                )),
                Err(e) if crate::error::kind_of(&e) == crate::error::Kind::Verdict => break format!("{e:#}"),
                Err(e) => {
                    self.abort(name)?;
                    return Err(e);
                }
            }
            if Instant::now() >= next_sample
                && let Some(list) = self.instances(name)?
            {
                let (by_version, window) = answered_by_version(&list);
                next_sample = Instant::now() + Duration::from_secs(window.max(1));
                if let Some(why) = reports.report(&by_version, window, label, &old, c) {
                    break why;
                }
            }
            if Instant::now() > deadline {
                return Err(could_not_act!(
                    "{name} is still {} after {}: EB did not end the traffic split of {label}; it was not aborted",
                    d.status,
                    humantime::format_duration(self.cfg.deploy_timeout.0 + c.bake)
                ));
            }
        };
        let failed_at = crate::clock::now_ms();
        self.abort(name)?;
        let stopped_at = crate::clock::now_ms();
        self.fx.ui.status(format!(
            "{name}: canary aborted {} after the failing verdict: EB sends every request back to {old}'s instances",
            crate::clock::human(stopped_at - failed_at)
        ));
        // Until EB is Ready on the old version again, nothing more can be deployed there.
        self.ready_again(name, "ending the aborted traffic split")?;
        Ok(crate::platform::Deployed::CanaryAborted(crate::platform::CanaryAborted {
            percent: c.percent,
            took_traffic_at: took,
            failed_at,
            stopped_at,
            why: failed,
        }))
    }

    /// `update-environment` with the TrafficSplitting policy; when it took traffic, and since
    /// when EB's events belong to it (`None` in a dry run, the plan said).
    fn start_split(
        &self,
        name: &str,
        label: &str,
        old: &str,
        c: &crate::platform::Canary<'_>,
    ) -> Result<Option<(crate::clock::Millis, String)>> {
        let (percent, minutes) = (c.percent.to_string(), split_minutes(c.bake).to_string());
        let settings = [
            "Namespace=aws:elasticbeanstalk:command,OptionName=DeploymentPolicy,Value=TrafficSplitting".to_string(),
            format!("Namespace=aws:elasticbeanstalk:trafficsplitting,OptionName=NewVersionPercent,Value={percent}"),
            format!("Namespace=aws:elasticbeanstalk:trafficsplitting,OptionName=EvaluationTime,Value={minutes}"),
        ];
        let mut args = vec!["--application-name", self.app(), "--environment-name", name, "--version-label", label];
        args.push("--option-settings");
        args.extend(settings.iter().map(String::as_str));
        self.fx.ui.status(format!(
            "{name}: runs {old}; traffic splitting: {label} gets {percent}% of the requests for {minutes} min"
        ));
        let Some(updated) = self.aws.change("elasticbeanstalk", "update-environment", &args)? else {
            self.fx.ui.plan(format!(
                "# would run the smoke chains and read {name}'s health every round while EB evaluates {label}; a failed round: aws elasticbeanstalk abort-environment-update --environment-name {name}"
            ));
            return Ok(None);
        };
        let took = crate::clock::now_ms();
        let since =
            updated["DateUpdated"].as_str().map(str::to_string).unwrap_or_else(|| crate::clock::rfc3339(took - 1000));
        Ok(Some((took, since)))
    }

    /// EB ended the traffic split (Ready again): on `label` with an accepted health it takes
    /// every request; otherwise EB's own health evaluation failed it and sent the traffic back.
    fn split_ended(
        &self,
        d: &EnvDesc,
        label: &str,
        took: crate::clock::Millis,
        percent: u8,
        errors: &[String],
    ) -> crate::platform::Deployed {
        let name = &d.environment_name;
        if d.version_label.as_deref() == Some(label) && self.accepted(d) {
            self.fx.ui.status(format!(
                "{name}: EB ended the evaluation: {label} takes every request (health {})",
                d.health()
            ));
            return crate::platform::Deployed::Live(Switched { at: crate::clock::now_ms(), canary_from: Some(took) });
        }
        let why = format!(
            "Elastic Beanstalk ended the traffic split on {} (health {}){}",
            d.label(),
            d.health(),
            first_error(errors)
        );
        let at = crate::clock::now_ms();
        crate::platform::Deployed::CanaryAborted(crate::platform::CanaryAborted {
            percent,
            took_traffic_at: took,
            failed_at: at,
            stopped_at: at,
            why,
        })
    }

    /// The standby's own address: `preview_url` with `{cname}` its CNAME (default
    /// `http://{cname}`), checked to be a URL.
    pub(super) fn standby_url(&self, e: &EbEnvironment, standby: &str) -> Result<String> {
        let desc = self.describe(&[standby])?;
        let cname = desc.first().and_then(|d| d.cname.clone()).unwrap_or_default();
        if cname.is_empty() && !self.fx.dry_run {
            return Err(could_not_act!("{standby} has no CNAME to check it at"));
        }
        let url = e.preview_url.as_deref().unwrap_or("http://{cname}").replace("{cname}", &cname);
        reqwest::Url::parse(&url).map_err(|err| crate::usage!("preview_url: {url:?} is not a URL: {err}"))?;
        Ok(url.trim_end_matches('/').to_string())
    }

    /// A deploy by the kind of environment: a traffic split (canary), a blue/green swap, or in
    /// place. Verdict errors are classed by [`ElasticBeanstalk::deploy`]'s caller.
    pub(super) fn deploy_classed(
        &self,
        env: &Environment,
        label: &str,
        how: &crate::platform::DeployOptions<'_>,
    ) -> Result<crate::platform::Deployed> {
        let pre = how.pre;
        let e = self.eb_env(env)?;
        if let Some(c) = how.canary.filter(|_| e.standby.is_none()) {
            return self.deploy_split(env, &e.environment, label, c);
        }
        if e.standby.is_some() {
            if let Some(stopped) = self.deploy_swap(env, e, label, pre, how.watch)? {
                return Ok(stopped);
            }
        } else {
            if pre.is_some() {
                self.fx.ui.warn(format!(
                    "{}: an in-place deploy puts {label} in front of users as it rolls out, so it cannot be checked before traffic; configure a blue/green standby (environments.{}.elasticbeanstalk.standby) or EB traffic splitting",
                    env.name, env.name
                ));
            }
            self.update_and_wait(&e.environment, label)?
        }
        // Ready with an accepted health on the label (in place), or the CNAME seen on the
        // environment that runs it (blue/green): users reach it from here on.
        Ok(crate::platform::Deployed::Live(Switched::at(crate::clock::now_ms())))
    }

    /// A blue/green deploy: the standby gets the version, is checked at its own CNAME, then the
    /// CNAMEs swap. `Some` when it stopped before traffic.
    pub(super) fn deploy_swap(
        &self,
        env: &Environment,
        e: &EbEnvironment,
        label: &str,
        pre: Option<&crate::platform::PreTraffic<'_>>,
        watch: Option<&crate::platform::Watch<'_>>,
    ) -> Result<Option<crate::platform::Deployed>> {
        let cname = e.cname.as_deref().unwrap_or_default();
        let (active, standby) = self.active(e)?;
        let standby = standby.ok_or_else(|| could_not_act!("{}: no standby environment", env.name))?;
        if active.version_label.as_deref() == Some(label) && active.status == "Ready" && self.accepted(&active) {
            self.fx.ui.status(format!("{}: {} already serves {label}", env.name, active.environment_name));
            return Ok(None);
        }
        let (from, to) = (&active.environment_name, &standby.environment_name);
        if standby.version_label.as_deref() == Some(label) && standby.status == "Ready" && self.accepted(&standby) {
            self.fx.ui.status(format!(
                "{}: {to} already runs {label} and is {}; swapping only",
                env.name,
                standby.health()
            ));
        } else {
            self.fx.ui.status(format!(
                "{}: {from} serves {}; deploying {label} to the standby {to}",
                env.name,
                active.label()
            ));
            let started = crate::clock::now_ms();
            self.update_and_wait(to, label)?;
            // The standby shares the active environment's database: what its deploy changed
            // there (container_commands, predeploy hooks), the active one meets now.
            if let Some(w) = watch {
                w(started)?;
            }
        }
        if let Some(check) = pre {
            // The standby runs the candidate at its own CNAME; users are on the active one.
            let url = self.standby_url(e, to)?;
            self.fx.ui.status(format!("{}: checking {label} on {to} ({url}) before the swap", env.name));
            match check(&url) {
                Err(e) if crate::error::kind_of(&e) == crate::error::Kind::Verdict => {
                    return Ok(Some(crate::platform::Deployed::StoppedBeforeTraffic(e)));
                }
                other => other?,
            }
        }
        self.fx.ui.status(format!("{}: swapping CNAMEs: {cname} moves from {from} to {to}", env.name));
        let swap = ["--source-environment-name", to.as_str(), "--destination-environment-name", from.as_str()];
        if self.aws.change("elasticbeanstalk", "swap-environment-cnames", &swap)?.is_none() {
            self.fx.ui.plan(format!("# would poll describe-environments until {to} owns {cname} and both are Ready"));
            return Ok(None);
        }
        let deadline = Instant::now() + self.cfg.deploy_timeout.0;
        let mut pause = self.cfg.poll.0;
        loop {
            let both = self.describe(&[to, from])?;
            if both[0].owns(cname) && both.iter().all(|d| d.status == "Ready") {
                self.fx.ui.status(format!("{}: {to} owns {cname}; {label} serves users", env.name));
                return Ok(None);
            }
            if Instant::now() + pause > deadline {
                return Err(could_not_act!(
                    "the CNAME swap of {from} and {to} did not complete within {}: {cname} is on {}",
                    self.timeout(),
                    if both[0].owns(cname) { to } else { from }
                ));
            }
            self.pause(&mut pause, || format!("the CNAME swap of {from} and {to} is left to EB"))?;
        }
    }
}

/// What EB's reports of each version's answers to users say, one report at a time (pure, so
/// its sequences are tested without EB): every report's 5xx counts summed per version and
/// judged together; latency by [`LatencyWatch`].
#[derive(Debug, Default)]
pub(super) struct ReportsJudge {
    candidate: crate::judge::Stream,
    stable: crate::judge::Stream,
    latency: LatencyWatch,
}

impl ReportsJudge {
    /// Takes one report (`window` seconds of each version's answers); `Some(why)` once the
    /// candidate has failed.
    pub(super) fn report(
        &mut self,
        by_version: &std::collections::BTreeMap<String, Answered>,
        window: u64,
        label: &str,
        old: &str,
        c: &crate::platform::Canary<'_>,
    ) -> Option<String> {
        let none = Answered::default();
        let (c_now, s_now) = (by_version.get(label).unwrap_or(&none), by_version.get(old).unwrap_or(&none));
        for (into, s) in [(&mut self.candidate, c_now), (&mut self.stable, s_now)] {
            into.requests += s.stream.requests;
            into.errors += s.stream.errors;
        }
        let margin = c.latency_margin.as_millis() as f64;
        if self.latency.report(c_now, s_now, margin) {
            return Some(format!(
                "{label} answers users more slowly than {old} by over {margin} ms, by EB's application metrics in two reports running: p95 {:.0} ms vs {:.0} ms, p50 {:.0} ms vs {:.0} ms (each the request-weighted mean of its instances' percentiles over the last {window}s; {} and {} requests)",
                c_now.p95_ms(),
                s_now.p95_ms(),
                c_now.p50_ms(),
                s_now.p50_ms(),
                c_now.timed,
                s_now.timed
            ));
        }
        let e = crate::judge::errors(self.candidate, self.stable, c.error_margin / 100.0);
        e.failed.then(|| {
            format!(
                "{label} answers users with server errors more often than {old} by over {} point(s), by EB's application metrics: {}",
                c.error_margin,
                e.describe()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One report: each version's requests, 5xx and p95 (seconds), as EB's instances say them.
    fn report(versions: &[(&str, u64, u64, f64)]) -> std::collections::BTreeMap<String, Answered> {
        let list: Vec<InstanceHealth> = versions
            .iter()
            .map(|(label, requests, errors, p95)| {
                serde_json::from_value(serde_json::json!({
                    "InstanceId": format!("i-{label}"),
                    "Deployment": {"VersionLabel": label, "Status": "Deployed"},
                    "ApplicationMetrics": {"Duration": 10, "RequestCount": requests,
                        "StatusCodes": {"Status5xx": errors}, "Latency": {"P50": p95 / 2.0, "P95": p95}}
                }))
                .expect("an instance")
            })
            .collect();
        answered_by_version(&list).0
    }

    /// The reports in order; the one that failed the candidate (from 1) and why.
    fn run(reports: &[&[(&str, u64, u64, f64)]]) -> Option<(usize, String)> {
        let check = |_: &str| Ok(());
        let c = crate::platform::Canary {
            percent: 10,
            bake: Duration::from_secs(300),
            interval: Duration::from_secs(10),
            error_margin: 1.0,
            not_enough: Default::default(),
            max_bake: Duration::from_secs(900),
            latency_margin: Duration::from_millis(100),
            round: &check,
        };
        let mut j = ReportsJudge::default();
        reports.iter().enumerate().find_map(|(n, r)| j.report(&report(r), 10, "v2", "v1", &c).map(|why| (n + 1, why)))
    }

    #[test]
    fn ebs_reports_fail_a_canary_on_its_counts_together_or_on_latency_after_its_warm_up() {
        let healthy: &[(&str, u64, u64, f64)] = &[("v2", 50, 0, 0.05), ("v1", 450, 1, 0.05)];
        assert_eq!(run(&[healthy; 20]), None, "a healthy candidate, twenty reports");
        // 6% of the candidate's answers fail, against 0.2%: failed once the counts show it.
        let failing: &[(&str, u64, u64, f64)] = &[("v2", 50, 3, 0.05), ("v1", 450, 1, 0.05)];
        let (at, why) = run(&[failing; 20]).expect("failed");
        assert!(at > 1, "one report of 50 requests is not enough evidence: failed at {at}");
        assert!(why.starts_with("v2 answers users with server errors more often than v1 by over 1 point(s)"), "{why}");
        // Slower by 300 ms: not in the warm-up report, then two reports running.
        let slow: &[(&str, u64, u64, f64)] = &[("v2", 50, 0, 0.35), ("v1", 450, 0, 0.05)];
        let (at, why) = run(&[slow, slow, slow]).expect("failed");
        assert_eq!(at, 3);
        assert!(why.starts_with("v2 answers users more slowly than v1 by over 100 ms"), "{why}");
        assert_eq!(run(&[slow, healthy, slow, healthy, slow]), None, "never two running");
    }
}
