//! What a starting version's health path answered, said the way a person reads it
//! (`302 → /login`, `no answer: connection refused`), and when an answer is steady enough to
//! stop waiting: the same redirect or client error poll after poll will not turn 2xx by
//! itself, so the wait ends early instead of taking the whole health timeout.

use crate::http::Response;
use anyhow::Result;
use std::time::{Duration, Instant};

/// How many polls, and for how long at least, one answer must repeat to count as steady.
pub const STEADY_POLLS: u32 = 3;
pub const STEADY_FOR: Duration = Duration::from_secs(2);

/// One answer, as the console says it.
pub fn describe(a: &Result<Response>) -> String {
    match a {
        Ok(r) => match r.header("location").filter(|_| (300..400).contains(&r.status)) {
            Some(to) => format!("{} → {to}", r.status),
            None => r.status.to_string(),
        },
        Err(e) => match e.downcast_ref::<crate::http::TransportError>() {
            Some(t) => format!("no answer: {}", t.reason),
            None => format!("no answer: {e}"),
        },
    }
}

/// Whether an answer can settle the wait without a 2xx: a redirect or a client error that is
/// not a "not yet" (408 timeout, 425 too early, 429 too many requests).
fn settles(a: &Result<Response>) -> bool {
    matches!(a, Ok(r) if (300..500).contains(&r.status) && !matches!(r.status, 304 | 408 | 425 | 429))
}

/// The run of identical answers seen so far.
#[derive(Debug, Default)]
pub struct Steady {
    answer: Option<String>,
    since: Option<Instant>,
    polls: u32,
}

impl Steady {
    /// Takes one answer at `now`; the answer and how long it held, once it is steady.
    pub fn see(&mut self, a: &Result<Response>, now: Instant) -> Option<(String, u32, Duration)> {
        let said = describe(a);
        if !settles(a) {
            *self = Steady::default();
            return None;
        }
        if self.answer.as_deref() != Some(&said) {
            *self = Steady { answer: Some(said), since: Some(now), polls: 1 };
            return None;
        }
        self.polls += 1;
        let held = now.duration_since(self.since.unwrap_or(now));
        (self.polls >= STEADY_POLLS && held >= STEADY_FOR).then_some((said, self.polls, held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, location: Option<&str>) -> Result<Response> {
        Ok(Response {
            status,
            headers: location.map(|l| vec![("Location".to_string(), l.to_string())]).unwrap_or_default(),
            body: String::new(),
            truncated: false,
            elapsed: Duration::ZERO,
        })
    }

    #[test]
    fn only_the_same_redirect_or_client_error_held_for_polls_and_time_is_steady() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Three polls inside 2 s are not enough; the fourth, 2 s after the first, is.
        let mut s = Steady::default();
        assert_eq!(s.see(&answer(302, Some("/login")), at(0)), None);
        assert_eq!(s.see(&answer(302, Some("/login")), at(100)), None);
        assert_eq!(s.see(&answer(302, Some("/login")), at(200)), None);
        assert_eq!(
            s.see(&answer(302, Some("/login")), at(2000)),
            Some(("302 → /login".into(), 4, Duration::from_secs(2)))
        );
        // A change of answer starts the count again.
        let mut s = Steady::default();
        for (i, (status, loc)) in
            [(404, None), (404, None), (302, Some("/a")), (302, Some("/b")), (404, None)].into_iter().enumerate()
        {
            assert_eq!(s.see(&answer(status, loc), at(i as u64 * 1000)), None, "poll {i}");
        }
        // What is still starting (5xx, no answer) or says "not yet" never settles the wait.
        for status in [500, 502, 503, 408, 425, 429, 304] {
            let mut s = Steady::default();
            for i in 0..10 {
                assert_eq!(s.see(&answer(status, None), at(i * 1000)), None, "{status}");
            }
        }
        let mut s = Steady::default();
        for i in 0..10 {
            assert_eq!(s.see(&Err(anyhow::anyhow!("connection refused")), at(i * 1000)), None);
        }
        // A 2xx in between resets the run.
        let mut s = Steady::default();
        assert_eq!(s.see(&answer(404, None), at(0)), None);
        assert_eq!(s.see(&answer(404, None), at(1000)), None);
        assert_eq!(s.see(&answer(200, None), at(1500)), None);
        assert_eq!(s.see(&answer(404, None), at(2500)), None);
    }

    #[test]
    fn answers_are_said_as_a_person_reads_them() {
        assert_eq!(describe(&answer(302, Some("/login?next=%2F"))), "302 → /login?next=%2F");
        assert_eq!(describe(&answer(404, Some("/ignored"))), "404");
        assert_eq!(describe(&answer(200, None)), "200");
    }
}
