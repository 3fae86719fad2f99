//! The canary judge on simulated request streams: how often it fails a healthy version (false
//! failures) and how often it catches a lift of each size, with the requests it took. Each
//! stream is one canary as the local platform runs it: rounds of users' requests, a share of
//! them to the candidate, both rules applied each round (the two-rounds window rule and the
//! judge on the rounds together, the worst round left out).
//!
//! `scripts/judge-sim [STREAMS]` (default 10000 per row). Healthy streams get a blip now and
//! then: a worker restart failing a burst of the candidate's requests in one round.

use safedeploy::judge::{self, Stream};

const ROUNDS: u32 = 60;
const PER_ROUND: u32 = 100;
const SHARE: f64 = 0.10;
const STABLE_RATE: f64 = 0.005;
const MARGIN_POINTS: f64 = 1.0;
/// A healthy stream's chance of one blip, and its size.
const BLIP_CHANCE: f64 = 0.2;
const BLIP_ERRORS: u64 = 6;

#[derive(Default, Clone, Copy)]
struct Round {
    candidate: u64,
    candidate_errors: u64,
    stable: u64,
    stable_errors: u64,
}

impl Round {
    fn fails(&self) -> bool {
        let rate = |e: u64, n: u64| if n == 0 { 0.0 } else { e as f64 * 100.0 / n as f64 };
        self.candidate_errors >= 3
            && rate(self.candidate_errors, self.candidate) > rate(self.stable_errors, self.stable) + MARGIN_POINTS
    }
}

/// One canary: the candidate's requests when it was failed, or `None` when it passed.
fn canary(rng: &mut fastrand::Rng, lift: f64, blip: bool, with_judge: bool) -> Option<u64> {
    let p = (STABLE_RATE + lift).min(1.0);
    let blip_round = if blip { Some(rng.u32(0..ROUNDS)) } else { None };
    let (mut total, mut worst) = (Round::default(), Round::default());
    let mut failing_before = false;
    for r in 0..ROUNDS {
        let mut w = Round::default();
        for _ in 0..PER_ROUND {
            if rng.f64() < SHARE {
                w.candidate += 1;
                w.candidate_errors += u64::from(rng.f64() < p);
            } else {
                w.stable += 1;
                w.stable_errors += u64::from(rng.f64() < STABLE_RATE);
            }
        }
        if blip_round == Some(r) {
            w.candidate += BLIP_ERRORS;
            w.candidate_errors += BLIP_ERRORS;
        }
        total.candidate += w.candidate;
        total.candidate_errors += w.candidate_errors;
        total.stable += w.stable;
        total.stable_errors += w.stable_errors;
        if w.candidate_errors > worst.candidate_errors {
            worst = w;
        }
        let failing = w.fails();
        if failing && failing_before {
            return Some(total.candidate);
        }
        failing_before = failing;
        let e = judge::errors(
            Stream {
                requests: total.candidate - worst.candidate,
                errors: total.candidate_errors - worst.candidate_errors,
            },
            Stream { requests: total.stable, errors: total.stable_errors },
            MARGIN_POINTS / 100.0,
        );
        if with_judge && e.failed {
            return Some(total.candidate);
        }
    }
    None
}

fn main() {
    let streams: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    println!(
        "{streams} canaries per row: {ROUNDS} rounds of {PER_ROUND} users' requests, {:.0}% to the candidate; stable 5xx rate {:.1}%; minimum effect {MARGIN_POINTS} point(s); α = {}",
        SHARE * 100.0,
        STABLE_RATE * 100.0,
        judge::ALPHA
    );
    println!(
        "| candidate's lift (points) | healthy blips | failed, two-rounds rule alone | failed, with the judge | median candidate requests to decide |"
    );
    println!("|---|---|---|---|---|");
    let rows = [
        (0.0, false),
        (0.0, true),
        (0.5, false),
        (1.0, false),
        (2.0, false),
        (3.0, false),
        (5.0, false),
        (10.0, false),
        (33.0, false),
    ];
    for (lift, blips) in rows {
        let mut runs = [vec![], vec![]];
        for (i, with_judge) in [false, true].into_iter().enumerate() {
            // The same streams for both rules: the same seed per row.
            let mut rng = fastrand::Rng::with_seed(20261206 + (lift * 100.0) as u64 + u64::from(blips));
            for _ in 0..streams {
                let blip = blips && rng.f64() < BLIP_CHANCE;
                if let Some(n) = canary(&mut rng, lift / 100.0, blip, with_judge) {
                    runs[i].push(n);
                }
            }
        }
        let [alone, judged] = runs;
        let mut decided = judged.clone();
        decided.sort_unstable();
        let median = decided.get(decided.len() / 2).map(|n| n.to_string()).unwrap_or_else(|| "-".into());
        let share = |n: usize| format!("{n} of {streams} ({:.2}%)", n as f64 * 100.0 / streams as f64);
        println!(
            "| {lift} | {} | {} | {} | {median} |",
            if blips {
                format!("{:.0}% of streams, {BLIP_ERRORS} errors in one round", BLIP_CHANCE * 100.0)
            } else {
                "none".into()
            },
            share(alone.len()),
            share(judged.len()),
        );
    }
}
