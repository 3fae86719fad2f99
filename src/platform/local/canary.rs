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
        let end = || self.end_canary(name, nginx, listen, old, slot);
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
        let mut judge = RoundsJudge::default();
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
            let at = Round { number: round, elapsed: started.elapsed(), log: &log };
            match self.canary_round(name, slot, &old.label, c, &mut judge, &at, &mut read_from) {
                Ok(RoundEnd::Again) => {}
                Ok(RoundEnd::Passed) => break None,
                Ok(RoundEnd::Failed(why)) => break Some(why),
                Ok(RoundEnd::Inconclusive(said)) => {
                    end()?;
                    return Err(crate::inconclusive!("{said}"));
                }
                Err(e) => {
                    end()?;
                    return Err(e);
                }
            }
        };
        let Some(why) = failed else {
            // A pass on too few requests says nothing of a small lift: said, never silent.
            if let Some(said) = judge.thin_pass(label, c) {
                self.fx.ui.warn(format!("{name}: {said}"));
            }
            return Ok(Ok(took));
        };
        let failed_at = crate::clock::now_ms();
        let stopped_at = end()?;
        // Said once, by the promote that reads these times (with what users met and was charged).
        Ok(Err(crate::platform::CanaryAborted {
            percent: c.percent,
            took_traffic_at: took,
            failed_at,
            stopped_at,
            why,
        }))
    }
}

/// Where a canary round stands: its number, how long into the canary, the split log.
struct Round<'r> {
    number: u32,
    elapsed: Duration,
    log: &'r Path,
}

/// How a canary round ended.
enum RoundEnd {
    Again,
    Passed,
    Failed(String),
    Inconclusive(String),
}

impl Local<'_> {
    /// One canary round: the candidate still runs, passes the checks at its own port, and what
    /// it answered users since the last round (the split log from `read_from`) is judged.
    #[allow(clippy::too_many_arguments)]
    fn canary_round(
        &self,
        name: &str,
        slot: &EnvState,
        old: &str,
        c: &crate::platform::Canary<'_>,
        judge: &mut RoundsJudge,
        at: &Round<'_>,
        read_from: &mut u64,
    ) -> Result<RoundEnd> {
        let (label, round) = (slot.label.as_str(), at.number);
        if !self.group_alive(slot.pid) {
            return Ok(RoundEnd::Failed(format!("{label} exited during its canary (round {round})")));
        }
        if let Err(e) = (c.round)(&format!("http://127.0.0.1:{}", slot.port)) {
            if crate::error::kind_of(&e) == crate::error::Kind::Verdict {
                return Ok(RoundEnd::Failed(format!("{e:#}")));
            }
            return Err(e);
        }
        let mut window = nginx::SplitCounts::default();
        *read_from = nginx::split_counts(at.log, *read_from, slot.port, &mut window);
        let failing = match judge.window(window, label, old, c) {
            Ok(failing) => failing,
            Err(why) => return Ok(RoundEnd::Failed(why)),
        };
        let counts = judge.counts();
        self.fx.ui.status(format!(
            "{name}: canary round {round} {} ({}s of {}s; {label} answered {} user request(s), {} failed{})",
            if failing { "failed on users' requests" } else { "passed" },
            at.elapsed.as_secs(),
            c.bake.as_secs(),
            counts.candidate,
            counts.candidate_errors,
            if failing { "; one more such round fails it" } else { "" }
        ));
        // A bake never ends on a failing window: the next round settles it.
        if failing {
            return Ok(RoundEnd::Again);
        }
        Ok(match judge.bake_end(at.elapsed, round, label, old, c) {
            BakeEnd::Baking => RoundEnd::Again,
            BakeEnd::Extended(said) => {
                if let Some(said) = said {
                    self.fx.ui.status(format!("{name}: {said}"));
                }
                RoundEnd::Again
            }
            BakeEnd::Passed => RoundEnd::Passed,
            BakeEnd::Failed(why) => RoundEnd::Failed(why),
            BakeEnd::Inconclusive(said) => RoundEnd::Inconclusive(said),
        })
    }

    /// Ends a canary: every request back to `old`, the candidate (`slot`) stopped and its
    /// records forgotten. Returns when its share was 0.
    ///
    /// The candidate's share is 0 once nothing can forward a request to it: the new
    /// configuration sends it none, and an old nginx worker still accepting (under load, for a
    /// couple of hundred milliseconds after it is told to stop) forwards to a candidate that no
    /// longer listens, which nginx takes as an error and passes to the stable version
    /// (`proxy_next_upstream`'s default). So the candidate is told to stop at once (TERM: it
    /// closes its listener and finishes what it carries) instead of after the old workers;
    /// whichever comes first ends its share.
    fn end_canary(
        &self,
        name: &str,
        nginx: &Nginx<'_>,
        listen: &str,
        old: &EnvState,
        slot: &EnvState,
    ) -> Result<crate::clock::Millis> {
        let label = slot.label.as_str();
        let mut r = nginx.reload_to(listen, &[nginx::Backend { port: old.port, label: &old.label, weight: 100 }])?;
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
    }
}

/// What the canary's rounds of users' answers say, one window at a time. Pure: the windows are
/// given, so its sequences are tested without nginx or a clock.
///
/// - One window with more failures than the stable version's is a blip until the next window
///   says the same: a healthy version may fail a handful of requests in a fraction of a second
///   (the corpus's 503 blip did, 18 times in 200).
/// - A steady failure too thin for one round to show (a share of a route no check visits) is
///   caught on the rounds' counts together by the judge, the worst round left out.
/// - Slower by the latency margin, on every answer so far (a rank test): fails.
#[derive(Debug, Default)]
pub(super) struct RoundsJudge {
    counts: nginx::SplitCounts,
    /// The round with the most candidate errors: left out of the judge's counts, so a blip
    /// alone never convicts (see `judge`).
    worst: nginx::SplitCounts,
    judged: Option<crate::judge::Evidence>,
    /// The first error of the last window, when that window failed.
    failing_before: Option<String>,
}

/// Where the bake stands after a passing round.
#[derive(Debug, PartialEq)]
pub(super) enum BakeEnd {
    Baking,
    /// Past the bake on too few requests, extended (`deploy.canary_not_enough = "extend"`);
    /// what to say, on the first extended round and every tenth.
    Extended(Option<String>),
    Passed,
    Failed(String),
    Inconclusive(String),
}

impl RoundsJudge {
    pub(super) fn counts(&self) -> &nginx::SplitCounts {
        &self.counts
    }

    /// Takes a round's window: `Err(why)` when the candidate has failed, else whether this
    /// window failed on its own (one more such window fails it).
    pub(super) fn window(
        &mut self,
        window: nginx::SplitCounts,
        label: &str,
        old: &str,
        c: &crate::platform::Canary<'_>,
    ) -> std::result::Result<bool, String> {
        self.counts.add(&window);
        if window.candidate_errors > self.worst.candidate_errors {
            self.worst = window.clone();
        }
        let failing = window.fails(c.error_margin);
        if failing && self.failing_before.is_some() {
            let (rate, stable) = window.rates();
            return Err(format!(
                "{label} answered users with server errors in two rounds running: {} of {} in the last ({rate:.1}%, against {stable:.1}% for {old}); first: {}",
                window.candidate_errors,
                window.candidate,
                self.failing_before.as_deref().or(window.first_error.as_deref()).unwrap_or("-")
            ));
        }
        let (counts, worst) = (&self.counts, &self.worst);
        let evidence = crate::judge::errors(
            crate::judge::Stream {
                requests: counts.candidate - worst.candidate,
                errors: counts.candidate_errors - worst.candidate_errors,
            },
            crate::judge::Stream { requests: counts.stable, errors: counts.stable_errors },
            c.error_margin / 100.0,
        );
        if evidence.failed {
            return Err(format!(
                "{label} answers users with server errors more often than {old} by over {} point(s): {} (its worst round, {} error(s), left out as a possible blip); first: {}",
                c.error_margin,
                evidence.describe(),
                worst.candidate_errors,
                counts.first_error.as_deref().unwrap_or("-")
            ));
        }
        self.judged = Some(evidence);
        let floor = c.latency_margin.as_millis().min(u32::MAX as u128) as u32;
        if let Some(l) = crate::judge::latency(&counts.candidate_ms, &counts.stable_ms, floor).filter(|l| l.failed) {
            return Err(format!("{label} answers users more slowly than {old} by over {floor} ms: {}", l.describe()));
        }
        self.failing_before = if failing { window.first_error.clone().or(Some("-".into())) } else { None };
        Ok(failing)
    }

    /// After a passing round, `elapsed` into the canary: a bake that ends on too few requests
    /// to judge follows `deploy.canary_not_enough`.
    pub(super) fn bake_end(
        &self,
        elapsed: Duration,
        round: u32,
        label: &str,
        old: &str,
        c: &crate::platform::Canary<'_>,
    ) -> BakeEnd {
        use settings::NotEnough;
        if elapsed < c.bake {
            return BakeEnd::Baking;
        }
        let Some(e) = self.judged.as_ref().filter(|e| !e.enough()) else { return BakeEnd::Passed };
        match c.not_enough {
            NotEnough::Pass => BakeEnd::Passed,
            NotEnough::Fail => BakeEnd::Failed(format!(
                "not enough evidence: {label} answered {} user request(s) in its bake, and ruling out a lift of {} point(s) takes about {} (deploy.canary_not_enough = \"fail\"); {}",
                e.candidate.requests,
                c.error_margin,
                e.needed,
                e.describe()
            )),
            NotEnough::Extend if elapsed >= c.max_bake => BakeEnd::Inconclusive(format!(
                "not enough evidence to judge {label} after {} (deploy.canary_max_bake): {} user request(s) of the about {} needed to rule out a lift of {} point(s); {old} serves every request again and {label} was stopped, not marked bad",
                crate::clock::human(c.max_bake.as_millis() as i64),
                e.candidate.requests,
                e.needed,
                c.error_margin,
            )),
            NotEnough::Extend => BakeEnd::Extended((round % 10 == 1 || elapsed < c.bake + c.interval).then(|| {
                format!(
                    "canary bake extended: {} of about {} user requests needed to judge {label} (until {} at most)",
                    e.candidate.requests,
                    e.needed,
                    crate::clock::human(c.max_bake.as_millis() as i64)
                )
            })),
        }
    }

    /// What a pass on too few requests cannot rule out, to be said.
    pub(super) fn thin_pass(&self, label: &str, c: &crate::platform::Canary<'_>) -> Option<String> {
        let e = self.judged.as_ref().filter(|e| !e.enough())?;
        Some(format!(
            "canary of {label} passed on {} user request(s); a lift of {} point(s) in its 5xx share shows after about {}, so this canary cannot rule one out ({})",
            e.candidate.requests,
            c.error_margin,
            e.needed,
            e.describe()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use settings::NotEnough;

    fn canary<'p>(not_enough: NotEnough, round: &'p crate::platform::PreTraffic<'p>) -> crate::platform::Canary<'p> {
        crate::platform::Canary {
            percent: 10,
            bake: Duration::from_secs(60),
            interval: Duration::from_secs(10),
            error_margin: 1.0,
            not_enough,
            max_bake: Duration::from_secs(300),
            latency_margin: Duration::from_millis(200),
            round,
        }
    }
    /// A window: the candidate's requests and errors, the stable side's, every answer in `ms`.
    fn w(candidate: u64, errors: u64, stable: u64, ms: u32) -> nginx::SplitCounts {
        nginx::SplitCounts {
            candidate,
            candidate_errors: errors,
            stable,
            stable_errors: 0,
            first_error: (errors > 0).then(|| "GET /r 500".to_string()),
            candidate_ms: vec![ms; candidate as usize],
            stable_ms: vec![20; stable as usize],
        }
    }
    /// The windows in order; the round that failed (from 1) and why, if one did.
    fn run(windows: Vec<nginx::SplitCounts>) -> Option<(usize, String)> {
        let check = |_: &str| Ok(());
        let c = canary(NotEnough::Pass, &check);
        let mut j = RoundsJudge::default();
        windows.into_iter().enumerate().find_map(|(n, win)| j.window(win, "v2", "v1", &c).err().map(|e| (n + 1, e)))
    }

    #[test]
    fn a_blip_is_one_failing_window_and_a_failure_is_two_running_or_the_counts_together() {
        let ok = || w(100, 0, 900, 20);
        assert_eq!(run(vec![ok(), ok(), ok()]), None);
        // One round's blip (5 of 100), passing rounds around it: never a verdict.
        assert_eq!(run(vec![ok(), w(100, 5, 900, 20), ok(), ok(), ok()]), None);
        // Two failing rounds running: failed on the second, naming the first round's error.
        let two = run(vec![ok(), w(100, 5, 900, 20), w(100, 5, 900, 20)]).expect("failed");
        assert_eq!(two.0, 3);
        assert!(two.1.starts_with("v2 answered users with server errors in two rounds running: 5 of 100"), "{}", two.1);
        // A thin steady failure (2 of 100 a round, under the per-round floor of errors) is
        // caught by the counts together, its worst round left out.
        let steady = run((0..30).map(|_| w(100, 2, 900, 20)).collect()).expect("failed");
        assert!(steady.1.contains("more often than v1 by over 1 point(s)"), "{}", steady.1);
        assert!(steady.1.contains("its worst round, 2 error(s), left out"), "{}", steady.1);
        // Slower by far more than the margin on every answer: failed on latency.
        let slow = run(vec![w(100, 0, 900, 900), w(100, 0, 900, 900)]).expect("failed");
        assert!(slow.1.starts_with("v2 answers users more slowly than v1 by over 200 ms"), "{}", slow.1);
        assert_eq!(run(vec![w(100, 0, 900, 100), w(100, 0, 900, 100)]), None, "slower by less than the margin");
    }

    #[test]
    fn a_bake_ends_as_its_not_enough_rule_says() {
        let check = |_: &str| Ok(());
        let thin = || w(5, 0, 45, 20);
        let judged = |not_enough| {
            let mut j = RoundsJudge::default();
            j.window(thin(), "v2", "v1", &canary(not_enough, &check)).expect("passes");
            j
        };
        let s = Duration::from_secs;
        for (not_enough, elapsed, round, want) in [
            (NotEnough::Pass, s(59), 6, "Baking"),
            (NotEnough::Pass, s(60), 6, "Passed"),
            (NotEnough::Fail, s(60), 6, "Failed"),
            (NotEnough::Extend, s(60), 6, "Extended(said)"),
            (NotEnough::Extend, s(75), 8, "Extended"),
            (NotEnough::Extend, s(200), 21, "Extended(said)"),
            (NotEnough::Extend, s(300), 30, "Inconclusive"),
        ] {
            let c = canary(not_enough, &check);
            let got = match judged(not_enough).bake_end(elapsed, round, "v2", "v1", &c) {
                BakeEnd::Baking => "Baking",
                BakeEnd::Passed => "Passed",
                BakeEnd::Failed(t) => {
                    assert!(t.starts_with("not enough evidence: v2 answered 5 user request(s)"), "{t}");
                    "Failed"
                }
                BakeEnd::Extended(Some(_)) => "Extended(said)",
                BakeEnd::Extended(None) => "Extended",
                BakeEnd::Inconclusive(t) => {
                    assert!(t.contains("v1 serves every request again and v2 was stopped, not marked bad"), "{t}");
                    "Inconclusive"
                }
            };
            assert_eq!(got, want, "{not_enough:?} at {elapsed:?}, round {round}");
        }
        // Enough requests: the bake passes whatever the rule, and nothing is said of a thin pass.
        let mut j = RoundsJudge::default();
        let c = canary(NotEnough::Fail, &check);
        for _ in 0..10 {
            j.window(w(1000, 0, 9000, 20), "v2", "v1", &c).expect("passes");
        }
        assert_eq!(j.bake_end(s(60), 6, "v2", "v1", &c), BakeEnd::Passed);
        assert_eq!(j.thin_pass("v2", &c), None);
        assert!(judged(NotEnough::Pass).thin_pass("v2", &c).is_some_and(|t| t.contains("passed on 5 user request(s)")));
    }
}
