//! The decisions that change production, as pure functions over the ledger's facts, so each can
//! be tested in a table, one row per scenario: who caused an incident, when users were exposed
//! and what is charged, whether an alert is evidence, whether a replaced version is kept warm.
//!
//! The ledger supplies the facts (verdicts in its own order, when a version took traffic); the
//! callers act on the answers. Every row of the tables below is a scenario that once changed
//! production wrongly, or its neighbour.

use crate::clock::Millis;

/// What caused an incident: the layer that stopped the bad version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A canary round failed.
    Canary,
    /// The promoted version did not become healthy.
    Health,
    /// A smoke check of production failed.
    Smoke,
    /// A Datadog alert triggered the rollback.
    Alert,
    /// Someone rolled back a version that had no verdict there, on their own word (recorded
    /// as the reason): it is marked bad and charged.
    ByHand,
    /// Someone replaced a version known good there (its newest verdict a pass, no alert): a
    /// planned rollback; nothing is charged and nothing condemned.
    Planned,
    /// A candidate's release or start changed the shared data, and the version users were
    /// served failed its checks before the candidate took any traffic.
    Release,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Canary => "canary",
            Cause::Health => "health",
            Cause::Smoke => "smoke",
            Cause::Alert => "alert",
            Cause::ByHand => "by_hand",
            Cause::Planned => "planned",
            Cause::Release => "release",
        }
    }

    /// A cause as the ledger keeps it.
    pub fn parse(s: &str) -> Option<Cause> {
        [Cause::Canary, Cause::Health, Cause::Smoke, Cause::Alert, Cause::ByHand, Cause::Planned, Cause::Release]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

/// The last known good among `verdicts` (label, passed), given in the ledger's order: the
/// newest version whose newest verdict is a pass, not marked bad (`bad`) and not in `except`.
pub fn last_known_good<'a>(verdicts: &[(&'a str, bool)], bad: &[&str], except: &[&str]) -> Option<&'a str> {
    let mut seen: Vec<&str> = vec![];
    for (label, passed) in verdicts.iter().rev() {
        if seen.contains(label) {
            continue; // an older verdict of a version already judged by its newest
        }
        seen.push(label);
        if *passed && !bad.contains(label) && !except.contains(label) {
            return Some(label);
        }
    }
    None
}

/// What the ledger says of the version a rollback replaces.
#[derive(Debug, Clone, Copy)]
pub struct Replaced {
    /// Its newest verdict in the environment is a failure.
    pub failing: bool,
    /// Its newest verdict there is a pass and it is not marked bad.
    pub known_good: bool,
}

/// Who caused a restore: an alert; a failing check of the replaced version; a person replacing
/// a version known good (planned) or one with no verdict, on their own word (by hand); or a
/// live version that did not answer (restarted: nothing replaced).
pub fn cause(alerted: bool, replaced: Option<Replaced>) -> Cause {
    match (alerted, replaced) {
        (true, _) => Cause::Alert,
        (false, Some(r)) if r.failing => Cause::Smoke,
        (false, Some(r)) if r.known_good => Cause::Planned,
        (false, Some(_)) => Cause::ByHand,
        (false, None) => Cause::Health,
    }
}

/// Whether a restore marks the replaced version bad: always, but for a planned one.
pub fn condemns(cause: Cause) -> bool {
    cause != Cause::Planned
}

/// When the failure was detected: the alert's time (never later than `now`), else the first
/// failing verdict; never before the version took traffic.
pub fn detected(alert_at: Option<Millis>, first_failure: Millis, took_traffic: Option<Millis>, now: Millis) -> Millis {
    let at = alert_at.unwrap_or(first_failure).min(now);
    took_traffic.map_or(at, |t| at.max(t).min(now))
}

/// Where the charge starts: when the version took traffic, unless it passed a check after that
/// (then its detection); never before it took traffic.
pub fn charged_from(took_traffic: Option<Millis>, passed_since_it_took: bool, detected: Millis) -> Millis {
    match took_traffic {
        Some(t) if !passed_since_it_took => t,
        Some(t) => detected.max(t),
        None => detected,
    }
}

/// The downtime charged: from the charge's start to the restore, never negative, nothing for a
/// planned rollback, times the users' share (percent) when not all met the version.
pub fn downtime(cause: Cause, charged_from: Millis, restored: Millis, share_percent: Option<i64>) -> Millis {
    if cause == Cause::Planned {
        return 0;
    }
    (restored - charged_from).max(0) * share_percent.unwrap_or(100) / 100
}

/// Why an alert is no evidence against the live version, if it is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoEvidence {
    /// The same alert already caused an incident (a webhook delivered again).
    AlreadyActed,
    /// It fired before the live version took traffic (about the version before, or a bad date).
    BeforeTraffic,
}

pub fn alert_evidence(
    already_acted: bool,
    alert_at: Millis,
    took_traffic: Option<Millis>,
    now: Millis,
) -> Option<NoEvidence> {
    if already_acted {
        return Some(NoEvidence::AlreadyActed);
    }
    match took_traffic {
        Some(t) if alert_at < t && alert_at <= now => Some(NoEvidence::BeforeTraffic),
        _ => None,
    }
}

/// Whether the version a deployment replaces is kept warm: not by a rollback or a restore
/// (`replacing_bad`: it replaces the bad one), and never a version that failed in that
/// environment.
pub fn keep_warm(replacing_bad: bool, previous_failed: bool) -> bool {
    !replacing_bad && !previous_failed
}

/// Why promote refuses a version (empty: it may go): it has not passed the smoke checks in the
/// environment it comes from, it is marked bad, or the SLA budget is spent. `--force --reason`
/// overrides them all, and the reasons are said and recorded then.
pub fn promote_refusals(
    label: &str,
    from: &str,
    verified_in_from: bool,
    bad_reason: Option<&str>,
    budget_spent: Option<&str>,
) -> Vec<String> {
    let mut refusals = vec![];
    if !verified_in_from {
        refusals.push(format!("{label} has not passed the smoke checks in {from}"));
    }
    if let Some(why) = bad_reason {
        refusals.push(format!("{label} is marked bad ({why})"));
    }
    if let Some(line) = budget_spent {
        refusals.push(format!("the SLA budget is spent ({line})"));
    }
    refusals
}

/// What a rollback does, from what serves and what the ledger knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// The live version is the target, healthy, and nothing speaks against it.
    Nothing(&'a str),
    /// The live version is the target but does not answer: restart it.
    Restart(&'a str),
    /// Put `target` in front of users in place of `bad`.
    Replace { target: &'a str, bad: &'a str },
    /// Nothing serves: start `target`.
    Start(&'a str),
    /// The live version is the last known good but suspect, and nothing known good came before
    /// it: it stays, not marked bad.
    NoEarlier(&'a str),
    /// No version is known good here.
    NoneKnown,
}

/// The rollback's target. `live`: what serves (label, healthy); `suspect`: a failed check of
/// the live version since it last passed, or an alert that is evidence; `to`: a version named
/// by `--to` (already allowed); `good`: the last known good; `good_before`: the last known good
/// other than `good`.
pub fn rollback_target<'a>(
    live: Option<(&'a str, bool)>,
    suspect: bool,
    to: Option<&'a str>,
    good: Option<&'a str>,
    good_before: Option<&'a str>,
) -> Target<'a> {
    let target = match (to, live, good) {
        (Some(t), _, _) => t,
        // The live version is the last known good, but the evidence is against it now.
        (None, Some((l, _)), Some(g)) if l == g && suspect => match good_before {
            Some(p) => p,
            None => return Target::NoEarlier(g),
        },
        (None, _, Some(g)) => g,
        (None, _, None) => return Target::NoneKnown,
    };
    match live {
        // Named by --to, the live version stays when it answers: the person chose it.
        Some((l, true)) if l == target && (!suspect || to.is_some()) => Target::Nothing(target),
        Some((l, _)) if l == target => Target::Restart(target),
        Some((l, _)) => Target::Replace { target, bad: l },
        None => Target::Start(target),
    }
}

/// The layer that stopped a bad version, as the report counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Layer {
    StagingSmoke,
    PreTraffic,
    Canary,
    /// A production smoke check, or a promoted version that did not become healthy.
    ProductionSmoke,
    Alert,
    ByHand,
}

/// A verdict as the report reads it, in the ledger's order.
#[derive(Debug, Clone, Copy)]
pub struct VerdictFact<'a> {
    pub label: &'a str,
    pub production: bool,
    pub passed: bool,
    pub detail: &'a str,
}

/// An incident in production as the report reads it.
#[derive(Debug, Clone, Copy)]
pub struct IncidentFact<'a> {
    pub bad: &'a str,
    /// The recorded cause; `None` for incidents from before causes were recorded.
    pub cause: Option<Cause>,
    /// A canary's incident (only a share of the users met it).
    pub shared: bool,
    pub reason: &'a str,
}

/// The bad versions each layer stopped, by the verdict that caused each stop: a version that
/// failed staging counts there only if it never passed staging afterwards (a flaky check is no
/// stop); one stopped before traffic or in its canary counts at that layer; an incident counts
/// at its cause (a rollback by hand is its own row, a planned rollback stopped nothing bad, a
/// canary's own incident is counted from its verdict). A version forced past a layer that
/// stopped it counts there, and at the next that stops it.
pub fn stopped_by_layer<'a>(
    verdicts: &[VerdictFact<'a>],
    incidents: &[IncidentFact<'a>],
) -> std::collections::BTreeMap<Layer, std::collections::BTreeSet<&'a str>> {
    let mut by: std::collections::BTreeMap<Layer, std::collections::BTreeSet<&'a str>> = Default::default();
    let mut staging: Vec<&str> = vec![];
    for v in verdicts {
        match (v.production, v.passed) {
            (false, false) if !staging.contains(&v.label) => staging.push(v.label),
            (false, true) => staging.retain(|l| *l != v.label),
            (true, false) if v.detail.starts_with("stopped before traffic") => {
                by.entry(Layer::PreTraffic).or_default().insert(v.label);
            }
            (true, false) if v.detail.starts_with("canary at") => {
                by.entry(Layer::Canary).or_default().insert(v.label);
            }
            _ => {}
        }
    }
    if !staging.is_empty() {
        by.entry(Layer::StagingSmoke).or_default().extend(staging);
    }
    for i in incidents.iter().filter(|i| !i.shared) {
        // Incidents from before causes were recorded, by their reason.
        let cause = i.cause.unwrap_or(if i.reason.contains("Datadog alert") { Cause::Alert } else { Cause::Smoke });
        let layer = match cause {
            Cause::Alert => Layer::Alert,
            Cause::ByHand => Layer::ByHand,
            Cause::Smoke | Cause::Health | Cause::Release => Layer::ProductionSmoke,
            Cause::Canary | Cause::Planned => continue,
        };
        by.entry(layer).or_default().insert(i.bad);
    }
    by
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_known_good_is_the_newest_version_whose_newest_verdict_passed() {
        // scenario; verdicts oldest first ("v1+" passed, "v1-" failed); marked bad; except; expected
        type Row = (&'static str, &'static str, &'static [&'static str], &'static [&'static str], Option<&'static str>);
        let rows: [Row; 10] = [
            ("none recorded", "", &[], &[], None),
            ("one pass", "v1+", &[], &[], Some("v1")),
            ("the newer pass", "v1+ v2+", &[], &[], Some("v2")),
            ("v1 failed after it passed (restored by post-failure later)", "v1+ v2+ v1-", &[], &[], Some("v2")),
            ("a later failure takes it away", "v1+ v2+ v2-", &[], &[], Some("v1")),
            ("a pass after a failure gives it back", "v1+ v2- v2+", &[], &[], Some("v2")),
            ("marked bad, then passing a check (not forced): not good", "v1+ v4+", &["v4"], &[], Some("v1")),
            ("except the one found bad", "v1+ v2+", &[], &["v2"], Some("v1")),
            ("a failed verification after a restore", "v1+ v2+ v3+ v3-", &[], &[], Some("v2")),
            ("every one failed", "v1- v2-", &[], &[], None),
        ];
        for (scenario, verdicts, bad, except, want) in rows {
            let verdicts: Vec<(&str, bool)> =
                verdicts.split_whitespace().map(|v| (&v[..v.len() - 1], v.ends_with('+'))).collect();
            assert_eq!(last_known_good(&verdicts, bad, except), want, "{scenario}");
        }
    }

    #[test]
    fn the_cause_of_a_restore_and_whether_it_condemns() {
        let r = |failing, known_good| Some(Replaced { failing, known_good });
        let rows = [
            ("an alert, whatever the reason text", true, r(false, true), Cause::Alert, true),
            ("a failed check of the live version", false, r(true, false), Cause::Smoke, true),
            ("a planned rollback of a version known good", false, r(false, true), Cause::Planned, false),
            ("by hand, an unverified version", false, r(false, false), Cause::ByHand, true),
            ("a hung live version restarted", false, None, Cause::Health, true),
        ];
        for (scenario, alerted, replaced, want, condemned) in rows {
            let c = cause(alerted, replaced);
            assert_eq!(c, want, "{scenario}");
            assert_eq!(condemns(c), condemned, "{scenario}");
        }
    }

    /// One scenario of the exposure clock: its facts and what must follow.
    struct Clock {
        scenario: &'static str,
        alert: Option<Millis>,
        first_failure: Millis,
        took: Option<Millis>,
        passed_since: bool,
        restored: Millis,
        share: Option<i64>,
        cause: Cause,
        /// detected, charged from, downtime
        want: (Millis, Millis, Millis),
    }

    #[test]
    fn the_exposure_clock() {
        const NOW: Millis = 9_000;
        let row = |scenario, alert, first_failure, took, passed_since, restored, share, cause, want| Clock {
            scenario,
            alert,
            first_failure,
            took,
            passed_since,
            restored,
            share,
            cause,
            want,
        };
        let rows = [
            row(
                "charged from the switch",
                None,
                5_000,
                Some(4_000),
                false,
                10_000,
                None,
                Cause::Smoke,
                (5_000, 4_000, 6_000),
            ),
            row(
                "passed after the switch: from its failure",
                None,
                7_000,
                Some(4_000),
                true,
                10_000,
                None,
                Cause::Smoke,
                (7_000, 7_000, 3_000),
            ),
            row(
                "an alert dated before it took traffic is clamped",
                Some(1),
                1,
                Some(4_000),
                false,
                10_000,
                None,
                Cause::Alert,
                (4_000, 4_000, 6_000),
            ),
            row(
                "an alert from the future is now",
                Some(99_000),
                NOW,
                Some(4_000),
                true,
                10_000,
                None,
                Cause::Alert,
                (NOW, NOW, 1_000),
            ),
            row(
                "a planned rollback charges nothing",
                None,
                NOW,
                Some(4_000),
                false,
                10_000,
                None,
                Cause::Planned,
                (NOW, 4_000, 0),
            ),
            row(
                "a canary's share",
                None,
                5_000,
                Some(4_000),
                false,
                10_000,
                Some(20),
                Cause::Canary,
                (5_000, 4_000, 1_200),
            ),
            row(
                "restored before the charge's start: nothing, never a credit",
                None,
                NOW,
                None,
                false,
                8_000,
                None,
                Cause::Health,
                (NOW, NOW, 0),
            ),
        ];
        for c in rows {
            let d = detected(c.alert, c.first_failure, c.took, NOW);
            assert!(c.took.is_none_or(|t| d >= t), "{}: detected before it took traffic", c.scenario);
            let from = charged_from(c.took, c.passed_since, d);
            assert_eq!((d, from, downtime(c.cause, from, c.restored, c.share)), c.want, "{}", c.scenario);
        }
    }

    #[test]
    fn an_alert_is_evidence_once_and_only_against_what_was_live() {
        let rows = [
            ("a fresh alert on the live version", false, 5_000, Some(4_000), None),
            ("delivered again", true, 5_000, Some(4_000), Some(NoEvidence::AlreadyActed)),
            ("dated before the switch", false, 3_000, Some(4_000), Some(NoEvidence::BeforeTraffic)),
            ("a date of \"1\"", false, 1, Some(4_000), Some(NoEvidence::BeforeTraffic)),
            ("no switch recorded (adopted)", false, 1, None, None),
        ];
        for (scenario, acted, at, took, want) in rows {
            assert_eq!(alert_evidence(acted, at, took, 10_000), want, "{scenario}");
        }
    }

    #[test]
    fn only_a_version_that_did_not_fail_is_kept_warm() {
        let rows = [
            ("a promote or deploy keeps a good previous", false, false, true),
            ("a previous that failed here is never warm", false, true, false),
            ("a rollback or a failed promote's restore replaces the bad one", true, false, false),
        ];
        for (scenario, replacing_bad, failed, want) in rows {
            assert_eq!(keep_warm(replacing_bad, failed), want, "{scenario}");
        }
    }
    #[test]
    fn promote_refuses_what_did_not_pass_what_is_bad_and_a_spent_budget() {
        // scenario; passed in staging; marked bad; budget spent; how many refusals
        type Row = (&'static str, bool, Option<&'static str>, Option<&'static str>, usize);
        let rows: [Row; 5] = [
            ("passed staging, not bad, budget left", true, None, None, 0),
            ("never passed staging", false, None, None, 1),
            (
                "marked bad earlier, then passed staging (forced promote needed)",
                true,
                Some("failed its canary"),
                None,
                1,
            ),
            ("the budget spent by an hour charged", true, None, Some("0 s left"), 1),
            ("all three", false, Some("x"), Some("0 s left"), 3),
        ];
        for (scenario, verified, bad, spent, want) in rows {
            let r = promote_refusals("v4", "staging", verified, bad, spent);
            assert_eq!(r.len(), want, "{scenario}: {r:?}");
            assert!(r.iter().all(|line| line.contains("v4") || line.contains("budget")), "{scenario}: {r:?}");
        }
    }

    #[test]
    fn the_rollback_target() {
        use Target::*;
        // scenario; live (label, healthy); suspect; --to; last known good; known good before it
        type Row = (
            &'static str,
            Option<(&'static str, bool)>,
            bool,
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
            Target<'static>,
        );
        let rows: [Row; 10] = [
            (
                "bad v2 live, v1 known good",
                Some(("v2", true)),
                true,
                None,
                Some("v1"),
                None,
                Replace { target: "v1", bad: "v2" },
            ),
            (
                "v2 live, no verdict, rolled back by hand",
                Some(("v2", true)),
                false,
                None,
                Some("v1"),
                None,
                Replace { target: "v1", bad: "v2" },
            ),
            ("the last known good live and healthy", Some(("v1", true)), false, None, Some("v1"), None, Nothing("v1")),
            ("the last known good live but hung", Some(("v1", false)), false, None, Some("v1"), None, Restart("v1")),
            (
                "the last known good failing now: the one before",
                Some(("v3", true)),
                true,
                None,
                Some("v3"),
                Some("v2"),
                Replace { target: "v2", bad: "v3" },
            ),
            (
                "the last known good failing, none before",
                Some(("v1", true)),
                true,
                None,
                Some("v1"),
                None,
                NoEarlier("v1"),
            ),
            (
                "--to names the live one, suspect: stays",
                Some(("v1", true)),
                true,
                Some("v1"),
                Some("v1"),
                None,
                Nothing("v1"),
            ),
            (
                "--to an older version",
                Some(("v3", true)),
                false,
                Some("v1"),
                Some("v3"),
                None,
                Replace { target: "v1", bad: "v3" },
            ),
            ("nothing serves", None, false, None, Some("v1"), None, Start("v1")),
            ("nothing known good", Some(("v1", true)), true, None, None, None, NoneKnown),
        ];
        for (scenario, live, suspect, to, good, before, want) in rows {
            assert_eq!(rollback_target(live, suspect, to, good, before), want, "{scenario}");
        }
    }

    #[test]
    fn each_stop_is_counted_at_the_layer_whose_verdict_caused_it() {
        let v = |label, production, passed, detail| VerdictFact { label, production, passed, detail };
        let i = |bad, cause, shared| IncidentFact { bad, cause, shared, reason: "" };
        let verdicts = [
            v("v2", false, false, "500 on /"),
            v("v2", false, true, "all checks passed"), // a flaky staging check: no stop
            v("v3", false, false, "500 on /"),
            v("v4", true, false, "stopped before traffic: 500"),
            v("v5", true, false, "canary at 20%: 500"),
            v("v6", false, true, "all checks passed"),
            v("v6", false, false, "500"), // failed staging after passing, never again passed
            v("v7", true, false, "failed after a restore: 500"),
        ];
        let incidents = [
            i("v5", Some(Cause::Canary), true),
            i("v8", Some(Cause::ByHand), false),
            i("v9", Some(Cause::ByHand), false),
            i("v10", Some(Cause::Planned), false),
            i("v11", Some(Cause::Alert), false),
            i("v12", Some(Cause::Smoke), false),
            i("v13", Some(Cause::Health), false),
            i("v5", Some(Cause::Smoke), false), // forced past its canary, then rolled back
        ];
        let by = stopped_by_layer(&verdicts, &incidents);
        let got = |l: Layer| by.get(&l).map(|s| s.iter().copied().collect::<Vec<_>>()).unwrap_or_default();
        assert_eq!(got(Layer::StagingSmoke), ["v3", "v6"], "a staging failure counts only if never passed afterwards");
        assert_eq!(got(Layer::PreTraffic), ["v4"]);
        assert_eq!(got(Layer::Canary), ["v5"]);
        assert_eq!(got(Layer::ByHand), ["v8", "v9"], "two manual rollbacks are not the production smoke check");
        assert_eq!(got(Layer::Alert), ["v11"]);
        assert_eq!(got(Layer::ProductionSmoke), ["v12", "v13", "v5"]);
    }

    #[test]
    fn a_canarys_charge_is_its_share_of_its_span_and_never_negative() {
        let rows = [
            ("20% for 10 s", 1_000, 11_000, 20, 2_000),
            ("100% is the whole span", 1_000, 11_000, 100, 10_000),
            ("1% of 1 s", 0, 1_000, 1, 10),
            ("a clock step back: nothing, never a credit", 11_000, 1_000, 50, 0),
        ];
        for (scenario, took, stopped, percent, want) in rows {
            assert_eq!(downtime(Cause::Canary, took, stopped, Some(percent)), want, "{scenario}");
        }
    }
}
