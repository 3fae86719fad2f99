//! The judge of a request stream: does the candidate answer users with server errors more
//! often than the stable version, by more than the team's minimum effect? Pure: counts in,
//! a decision and its evidence out.
//!
//! **The test.** Each candidate request is a trial that fails with an unknown rate `p`. The
//! null is `p ≤ p0`, where `p0` is the stable version's rate (estimated from its far larger
//! share, `(e + ½) / (n + 1)`, so no traffic means no baseline and no verdict) plus the minimum
//! effect. The evidence against it is a mixture likelihood ratio: the likelihood of the
//! candidate's counts averaged over every `p` in `[p0, 1]` (uniformly), over their likelihood
//! at `p0`. Under any `p ≤ p0` that ratio is a nonnegative supermartingale (the likelihood
//! ratio of each `p' > p0` is one, by monotone likelihood), so by Ville's inequality it ever
//! reaches `1/α` with probability at most `α`: the verdict stays valid however often it is
//! looked at — every canary round — which a fixed-sample test is not.
//!
//! **Blips.** A healthy version may fail a handful of requests in one second (a worker
//! restarting); requests in a blip are not independent trials. The caller judges the counts
//! with the worst window (the second with the most candidate errors) left out, so one blip
//! alone never convicts, however large.
//!
//! **Not enough data.** A candidate whose rate is `p0 + effect` is typically caught after about
//! `ln(1/α) / KL(p0 + effect ‖ p0)` requests; fewer than that, and a pass says nothing of a
//! lift of the minimum effect. [`Evidence::enough`] says which.

use serde::Serialize;
use statrs::function::beta::{beta_reg, ln_beta};

/// The chance that a version whose rate is within the minimum effect of the stable one is
/// failed, at worst, over a whole canary.
pub const ALPHA: f64 = 0.01;

/// One side's answers to users.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stream {
    pub requests: u64,
    pub errors: u64,
}

impl Stream {
    pub fn rate(&self) -> f64 {
        if self.requests == 0 { 0.0 } else { self.errors as f64 / self.requests as f64 }
    }
}

/// What the counts say, with what the verdict rests on.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    pub candidate: Stream,
    pub stable: Stream,
    /// The rate the candidate must be shown to exceed: the stable rate plus the minimum effect.
    pub threshold: f64,
    /// The log of the mixture likelihood ratio; a verdict at `ln(1/α)`.
    pub log_ratio: f64,
    /// About how many candidate requests show a lift of the minimum effect.
    pub needed: u64,
    pub failed: bool,
}

impl Evidence {
    /// Whether the candidate answered enough requests for a pass to rule out the minimum effect.
    pub fn enough(&self) -> bool {
        self.candidate.requests >= self.needed
    }

    /// The evidence as the console and the ledger say it.
    pub fn describe(&self) -> String {
        format!(
            "candidate {}/{} 5xx ({:.1}%) vs stable {}/{} ({:.1}%); threshold {:.1}%; {} after {} candidate request(s)",
            self.candidate.errors,
            self.candidate.requests,
            self.candidate.rate() * 100.0,
            self.stable.errors,
            self.stable.requests,
            self.stable.rate() * 100.0,
            self.threshold * 100.0,
            if self.failed { "decided" } else { "not decided" },
            self.candidate.requests
        )
    }
}

/// Kullback–Leibler divergence of Bernoulli(`p`) from Bernoulli(`q`).
fn kl(p: f64, q: f64) -> f64 {
    let term = |a: f64, b: f64| if a <= 0.0 { 0.0 } else { a * (a / b).ln() };
    term(p, q) + term(1.0 - p, 1.0 - q)
}

/// The log of the mixture likelihood ratio of `k` failures in `n` trials against `p0`, the
/// mixture uniform over `[p0, 1]`.
fn log_ratio(n: u64, k: u64, p0: f64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let (a, b) = (k as f64 + 1.0, (n - k) as f64 + 1.0);
    // ∫_{p0}^1 p^k (1-p)^(n-k) dp = B(a, b) · (1 − I_{p0}(a, b)) = B(a, b) · I_{1−p0}(b, a)
    let upper = beta_reg(b, a, 1.0 - p0);
    if upper <= 0.0 {
        return f64::NEG_INFINITY;
    }
    ln_beta(a, b) + upper.ln() - (1.0 - p0).ln() - (k as f64 * p0.ln() + (n - k) as f64 * (1.0 - p0).ln())
}

/// Judges the candidate's counts against the stable version's; `min_effect` as a fraction
/// (0.01: one percentage point).
pub fn errors(candidate: Stream, stable: Stream, min_effect: f64) -> Evidence {
    let baseline = (stable.errors as f64 + 0.5) / (stable.requests as f64 + 1.0);
    let threshold = (baseline + min_effect.max(0.0)).min(0.999);
    let lr = log_ratio(candidate.requests, candidate.errors.min(candidate.requests), threshold);
    let lift = (threshold + min_effect.max(0.001)).min(0.9999);
    let needed = ((1.0 / ALPHA).ln() / kl(lift, threshold)).ceil() as u64;
    Evidence { candidate, stable, threshold, log_ratio: lr, needed, failed: lr >= (1.0 / ALPHA).ln() }
}

/// The one-sided z a latency comparison must reach: about 3·10⁻⁵ per look, so the canary's
/// looks (a round a second) together stay near the error judge's bound.
pub const LATENCY_Z: f64 = 4.0;
/// The fewest answered requests per side before latency is judged at all.
pub const LATENCY_MIN: usize = 30;

/// What the latencies say: rank-based (Mann–Whitney), so one slow outlier weighs as one rank,
/// with an effect-size floor, so "significant but 3 ms" never fails a version.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub candidate_p50: u32,
    pub stable_p50: u32,
    pub candidate_p95: u32,
    pub stable_p95: u32,
    /// The chance a candidate request is slower than a stable one (ties half).
    pub slower: f64,
    pub z: f64,
    pub failed: bool,
}

impl Latency {
    pub fn describe(&self) -> String {
        format!(
            "candidate p50 {} ms, p95 {} ms vs stable p50 {} ms, p95 {} ms; a candidate request is slower {:.0}% of the time (z {:.1})",
            self.candidate_p50,
            self.candidate_p95,
            self.stable_p50,
            self.stable_p95,
            self.slower * 100.0,
            self.z
        )
    }
}

fn quantile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64) * q).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Judges the candidate's response times against the stable version's: failed when the
/// candidate is slower by rank (z ≥ [`LATENCY_Z`]) *and* its median or p95 is at least
/// `floor_ms` above the stable one's. `floor_ms` 0 turns the rule off.
pub fn latency(candidate: &[u32], stable: &[u32], floor_ms: u32) -> Option<Latency> {
    if floor_ms == 0 || candidate.len() < LATENCY_MIN || stable.len() < LATENCY_MIN {
        return None;
    }
    let (mut c, mut s) = (candidate.to_vec(), stable.to_vec());
    c.sort_unstable();
    s.sort_unstable();
    // U: pairs where the candidate is slower, ties counted half, by a merge over both sorted.
    let (n1, n2) = (c.len() as f64, s.len() as f64);
    let mut u = 0.0;
    let (mut lo, mut hi) = (0usize, 0usize);
    for x in &c {
        while lo < s.len() && s[lo] < *x {
            lo += 1;
        }
        hi = hi.max(lo);
        while hi < s.len() && s[hi] <= *x {
            hi += 1;
        }
        u += lo as f64 + (hi - lo) as f64 / 2.0;
    }
    let mean = n1 * n2 / 2.0;
    let sd = (n1 * n2 * (n1 + n2 + 1.0) / 12.0).sqrt();
    let z = (u - mean) / sd;
    let (cp50, sp50, cp95, sp95) = (quantile(&c, 0.5), quantile(&s, 0.5), quantile(&c, 0.95), quantile(&s, 0.95));
    let big = cp50.saturating_sub(sp50) >= floor_ms || cp95.saturating_sub(sp95) >= floor_ms;
    Some(Latency {
        candidate_p50: cp50,
        stable_p50: sp50,
        candidate_p95: cp95,
        stable_p95: sp95,
        slower: u / (n1 * n2),
        z,
        failed: z >= LATENCY_Z && big,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(requests: u64, errors: u64) -> Stream {
        Stream { requests, errors }
    }

    #[test]
    fn a_clear_lift_fails_and_noise_within_the_effect_does_not() {
        // (candidate, stable, minimum effect) → failed
        let cases = [
            // The hostile version: a third of its users fail; caught on a few dozen requests.
            (s(92, 31), s(1000, 2), 0.01, true),
            (s(30, 10), s(300, 0), 0.01, true),
            // Everything fails: a handful of requests is enough.
            (s(8, 8), s(100, 0), 0.01, true),
            // Healthy: the same rate as stable, or a little more, within the effect.
            (s(500, 3), s(5000, 25), 0.01, false),
            (s(500, 8), s(5000, 25), 0.01, false),
            (s(92, 2), s(1000, 2), 0.01, false),
            // No requests, no verdict; no baseline, no verdict on a few errors.
            (s(0, 0), s(1000, 10), 0.01, false),
            (s(3, 1), s(0, 0), 0.01, false),
            // A lift of 2 points on a 1-point effect needs its requests.
            (s(200, 6), s(5000, 25), 0.01, false),
            (s(3000, 90), s(30000, 150), 0.01, true),
        ];
        for (c, st, effect, want) in cases {
            let e = errors(c, st, effect);
            assert_eq!(e.failed, want, "{}: log ratio {:.2}", e.describe(), e.log_ratio);
        }
    }

    #[test]
    fn the_requests_needed_grow_as_the_effect_shrinks_and_the_evidence_is_said() {
        let small = errors(s(100, 1), s(10_000, 50), 0.005);
        let large = errors(s(100, 1), s(10_000, 50), 0.05);
        assert!(small.needed > large.needed * 5, "{} vs {}", small.needed, large.needed);
        assert!(!small.enough() && large.enough() == (100 >= large.needed));
        assert_eq!(
            errors(s(212, 12), s(840, 1), 0.01).describe(),
            "candidate 12/212 5xx (5.7%) vs stable 1/840 (0.1%); threshold 1.2%; decided after 212 candidate request(s)"
        );
    }

    #[test]
    fn latency_fails_only_when_slower_by_rank_and_by_the_floor() {
        let around = |base: u32, n: usize| -> Vec<u32> { (0..n).map(|i| base + (i as u32 * 7) % 20).collect() };
        // +200 ms on every request: fails.
        let l = latency(&around(240, 60), &around(40, 600), 100).expect("judged");
        assert!(l.failed && l.slower > 0.99, "{}", l.describe());
        // Consistently 3 ms slower: significant by rank, but under the floor.
        let l = latency(&around(43, 600), &around(40, 600), 100).expect("judged");
        assert!(!l.failed && l.z > LATENCY_Z, "{}", l.describe());
        // The same distribution: no.
        let l = latency(&around(40, 100), &around(40, 900), 100).expect("judged");
        assert!(!l.failed && l.z.abs() < 2.0, "{}", l.describe());
        // One huge outlier is one rank.
        let mut c = around(40, 100);
        c[0] = 30_000;
        assert!(!latency(&c, &around(40, 900), 100).expect("judged").failed);
        // A slow tail: a tenth of the requests +300 ms moves the p95 past the floor; enough of
        // them makes the ranks say so.
        let tail: Vec<u32> = (0..400).map(|i| if i % 10 == 0 { 340 } else { 40 + (i as u32 * 7) % 20 }).collect();
        let l = latency(&tail, &around(40, 4000), 100).expect("judged");
        assert!(l.candidate_p95 >= 340 && l.failed, "{}", l.describe());
        // Too few requests, or the rule off: nothing judged.
        assert!(latency(&around(240, 10), &around(40, 600), 100).is_none());
        assert!(latency(&around(240, 60), &around(40, 600), 0).is_none());
    }

    #[test]
    fn the_ratio_is_finite_and_monotone_in_the_errors() {
        let mut last = f64::NEG_INFINITY;
        for k in 0..=200 {
            let r = log_ratio(200, k, 0.02);
            assert!(!r.is_nan(), "k={k}");
            assert!(r >= last - 1e-9, "k={k}: {r} < {last}");
            last = r;
        }
        assert!(log_ratio(1_000_000, 0, 0.5) < 0.0);
        assert!(log_ratio(1_000_000, 1_000_000, 0.01).is_finite());
    }
}
