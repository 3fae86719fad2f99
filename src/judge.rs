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
