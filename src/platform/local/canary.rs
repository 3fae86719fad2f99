//! A canary behind the proxy: nginx shares the requests by weight, each round's checks and
//! users' answers (the split log) are judged, and a failed round takes the candidate's share to
//! 0 at once.

use super::*;

impl Local<'_> {
    /// The canary phase: nginx sends `c.percent` % of the requests to `slot` and the rest to
    /// `old`; each round runs the checks against the candidate's own port and reads what the
    /// candidate answered users (`split.log`). Returns when its share first took traffic once
    /// the bake passed. A failed round takes the share to 0 at once (the reload is waited on,
    /// then the candidate is stopped): the inner `Err`. An interruption or another error ends
    /// the canary the same way, without a verdict.
    pub(super) fn canary(
        &self,
        env: &Environment,
        nginx: &Nginx<'_>,
        listen: &str,
        old: &EnvState,
        slot: &EnvState,
        c: &crate::platform::Canary<'_>,
    ) -> Result<std::result::Result<crate::clock::Millis, crate::platform::CanaryAborted>> {
        let name = env.name.as_str();
        let label = slot.label.as_str();
        // Recorded first: a run killed during the canary leaves it for the next run to undo.
        self.record(name, Record::Canary(Some(slot)))?;
        // Looked up now, so the abort does not wait on it.
        nginx.prime(listen);
        let log = nginx.split_log();
        let mut read_from = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let backends = [
            nginx::Backend { port: old.port, label: &old.label, weight: 100 - c.percent },
            nginx::Backend { port: slot.port, label, weight: c.percent },
        ];
        // The candidate's share is 0 once nothing can forward a request to it: the new
        // configuration sends it none, and an old nginx worker still accepting (under load, for
        // a couple of hundred milliseconds after it is told to stop) forwards to a candidate
        // that no longer listens, which nginx takes as an error and passes to the stable
        // version (`proxy_next_upstream`'s default). So the candidate is told to stop at once
        // (TERM: it closes its listener and finishes what it carries) instead of after the
        // old workers; whichever comes first ends its share.
        let end = || -> Result<crate::clock::Millis> {
            let mut r =
                nginx.reload_to(listen, &[nginx::Backend { port: old.port, label: &old.label, weight: 100 }])?;
            self.fx.exec.effect(
                || format!("tell {label} (group {}) to stop taking requests: kill -TERM -- -{}", slot.pid, slot.pid),
                || {
                    if self.owns_group(slot.pid) {
                        let _ = nix::sys::signal::killpg(
                            nix::unistd::Pid::from_raw(slot.pid),
                            nix::sys::signal::Signal::SIGTERM,
                        );
                    }
                    Ok(())
                },
            )?;
            r.steps.mark("candidate told to stop");
            let until = Instant::now() + Duration::from_secs(10);
            while nginx.old_accepting(&r) && ports::accepts(slot.port) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(1));
            }
            let at = crate::clock::now_ms();
            r.steps.mark("nothing forwards to the candidate");
            nginx.until_old_stop_accepting(&mut r);
            self.fx.ui.detail(format!("{name}: the switch back to {}: {}", old.label, r.steps));
            nginx.drain(r);
            self.stop_group(name, slot)?;
            self.record(name, Record::Starting(None))?;
            self.record(name, Record::Canary(None))?;
            Ok(at)
        };
        let took = match nginx.switch_to(listen, &backends) {
            Ok(_) => crate::clock::now_ms(),
            Err(e) => {
                end()?;
                return Err(e);
            }
        };
        self.fx.ui.status(format!(
            "{name}: canary: {label} takes {}% of the requests, {} the rest; a round every {} for {}",
            c.percent,
            old.label,
            crate::clock::human(c.interval.as_millis() as i64),
            crate::clock::human(c.bake.as_millis() as i64)
        ));
        let started = Instant::now();
        let mut counts = nginx::SplitCounts::default();
        // The round with the most candidate errors: left out of the judge's counts, so a blip
        // alone never convicts (see `judge`).
        let mut worst = nginx::SplitCounts::default();
        let mut judged = None;
        let mut failing_before: Option<String> = None;
        let mut round = 0u32;
        let failed: Option<String> = loop {
            // Interrupted (a Jenkins abort): the canary ends, no verdict.
            if self.fx.nap(c.interval, String::new).is_err() {
                end()?;
                return Err(crate::error::Error::interrupted(format!(
                    "interrupted during the canary of {label} in {name}; {} serves every request again and {label} was stopped",
                    old.label
                ))
                .into());
            }
            round += 1;
            if !self.group_alive(slot.pid) {
                break Some(format!("{label} exited during its canary (round {round})"));
            }
            if let Err(e) = (c.round)(&format!("http://127.0.0.1:{}", slot.port)) {
                if crate::error::kind_of(&e) == crate::error::Kind::Verdict {
                    break Some(format!("{e:#}"));
                }
                end()?;
                return Err(e);
            }
            // What users got since the last round. One window with more failures than the
            // stable version's is a blip until the next window says the same: a verdict marks
            // the version bad, and a healthy version may fail a handful of requests in a
            // fraction of a second (the corpus's 503 blip did, 18 times in 200).
            let mut window = nginx::SplitCounts::default();
            read_from = nginx::split_counts(&log, read_from, slot.port, &mut window);
            counts.add(&window);
            if window.candidate_errors > worst.candidate_errors {
                worst = window.clone();
            }
            let failing = window.fails(c.error_margin);
            if failing && failing_before.is_some() {
                let (rate, stable) = window.rates();
                break Some(format!(
                    "{label} answered users with server errors in two rounds running: {} of {} in the last ({rate:.1}%, against {stable:.1}% for {}); first: {}",
                    window.candidate_errors,
                    window.candidate,
                    old.label,
                    failing_before.as_deref().or(window.first_error.as_deref()).unwrap_or("-")
                ));
            }
            // A steady failure too thin for one round to show (a share of a route no check
            // visits) is caught on the rounds' counts together, by the judge.
            let evidence = crate::judge::errors(
                crate::judge::Stream {
                    requests: counts.candidate - worst.candidate,
                    errors: counts.candidate_errors - worst.candidate_errors,
                },
                crate::judge::Stream { requests: counts.stable, errors: counts.stable_errors },
                c.error_margin / 100.0,
            );
            if evidence.failed {
                break Some(format!(
                    "{label} answers users with server errors more often than {} by over {} point(s): {} (its worst round, {} error(s), left out as a possible blip); first: {}",
                    old.label,
                    c.error_margin,
                    evidence.describe(),
                    worst.candidate_errors,
                    counts.first_error.as_deref().unwrap_or("-")
                ));
            }
            judged = Some(evidence);
            let floor = c.latency_margin.as_millis().min(u32::MAX as u128) as u32;
            if let Some(l) = crate::judge::latency(&counts.candidate_ms, &counts.stable_ms, floor).filter(|l| l.failed)
            {
                break Some(format!(
                    "{label} answers users more slowly than {} by over {} ms: {}",
                    old.label,
                    floor,
                    l.describe()
                ));
            }
            failing_before = if failing { window.first_error.clone().or(Some("-".into())) } else { None };
            self.fx.ui.status(format!(
                "{name}: canary round {round} {} ({}s of {}s; {label} answered {} user request(s), {} failed{})",
                if failing { "failed on users' requests" } else { "passed" },
                started.elapsed().as_secs(),
                c.bake.as_secs(),
                counts.candidate,
                counts.candidate_errors,
                if failing { "; one more such round fails it" } else { "" }
            ));
            // A bake never ends on a failing window: the next round settles it. One that ends
            // on too few requests to judge follows `deploy.canary_not_enough`.
            if started.elapsed() >= c.bake && !failing {
                use settings::NotEnough;
                let short = judged.as_ref().filter(|e| !e.enough());
                match (short, c.not_enough) {
                    (None, _) | (Some(_), NotEnough::Pass) => break None,
                    (Some(e), NotEnough::Fail) => {
                        break Some(format!(
                            "not enough evidence: {label} answered {} user request(s) in its bake, and ruling out a lift of {} point(s) takes about {} (deploy.canary_not_enough = \"fail\"); {}",
                            e.candidate.requests,
                            c.error_margin,
                            e.needed,
                            e.describe()
                        ));
                    }
                    (Some(e), NotEnough::Extend) if started.elapsed() >= c.max_bake => {
                        let said = format!(
                            "not enough evidence to judge {label} after {} (deploy.canary_max_bake): {} user request(s) of the about {} needed to rule out a lift of {} point(s); {} serves every request again and {label} was stopped, not marked bad",
                            crate::clock::human(c.max_bake.as_millis() as i64),
                            e.candidate.requests,
                            e.needed,
                            c.error_margin,
                            old.label
                        );
                        end()?;
                        return Err(crate::inconclusive!("{said}"));
                    }
                    (Some(e), NotEnough::Extend) => {
                        if round % 10 == 1 || started.elapsed() < c.bake + c.interval {
                            self.fx.ui.status(format!(
                                "{name}: canary bake extended: {} of about {} user requests needed to judge {label} (until {} at most)",
                                e.candidate.requests,
                                e.needed,
                                crate::clock::human(c.max_bake.as_millis() as i64)
                            ));
                        }
                    }
                }
            }
        };
        let Some(why) = failed else {
            // A pass on too few requests says nothing of a small lift: said, never silent.
            if let Some(e) = judged.filter(|e| !e.enough()) {
                self.fx.ui.warn(format!(
                    "{name}: canary of {label} passed on {} user request(s); a lift of {} point(s) in its 5xx share shows after about {}, so this canary cannot rule one out ({})",
                    e.candidate.requests,
                    c.error_margin,
                    e.needed,
                    e.describe()
                ));
            }
            return Ok(Ok(took));
        };
        let failed_at = crate::clock::now_ms();
        let stopped_at = end()?;
        self.fx.ui.status(format!(
            "{name}: canary aborted: {label}'s share was 0 {} ms after the failing verdict; {} serves every request",
            stopped_at - failed_at,
            old.label
        ));
        Ok(Err(crate::platform::CanaryAborted {
            percent: c.percent,
            took_traffic_at: took,
            failed_at,
            stopped_at,
            why,
        }))
    }
}
