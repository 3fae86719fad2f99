//! Wall-clock times as the ledger stores them (milliseconds since the Unix epoch, UTC) and as
//! people read them (RFC 3339).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub type Millis = i64;

pub fn now_ms() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub fn to_system(ms: Millis) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// `2026-11-23T22:40:01.123Z`
pub fn rfc3339(ms: Millis) -> String {
    humantime::format_rfc3339_millis(to_system(ms)).to_string()
}

/// Parses an RFC 3339 timestamp (`Z` or no zone means UTC) into milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<Millis> {
    let t = humantime::parse_rfc3339_weak(s.trim_end_matches('Z')).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_millis() as i64)
}

/// A command-line moment: a duration back from `now` (`30m`, `2d`) or an RFC 3339 time.
pub fn parse_when(s: &str, now: Millis) -> Option<Millis> {
    match humantime::parse_duration(s) {
        Ok(d) => Some(now - d.as_millis() as i64),
        Err(_) => parse_rfc3339(s),
    }
}

/// `1.234s`, `12m 3s`: a duration for people.
pub fn human(ms: Millis) -> String {
    let ms = ms.max(0);
    if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        humantime::format_duration(Duration::from_secs((ms / 1000) as u64)).to_string()
    }
}

/// The start of the calendar year (UTC) that `ms` falls in.
pub fn year_start(ms: Millis) -> Millis {
    let stamp = rfc3339(ms);
    parse_rfc3339(&format!("{}-01-01T00:00:00Z", &stamp[..4])).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_year() {
        let ms = parse_rfc3339("2026-11-23T22:40:01.123Z").expect("parses");
        assert_eq!(rfc3339(ms), "2026-11-23T22:40:01.123Z");
        assert_eq!(rfc3339(year_start(ms)), "2026-01-01T00:00:00.000Z");
        assert_eq!(human(1234), "1.2s");
        assert_eq!(human(125_000), "2m 5s");
    }
}
