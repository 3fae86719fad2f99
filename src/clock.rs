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
///
/// The time is UTC (`Z`, or none) or carries its offset (`+01:00`, `-0530`), which is taken
/// off: `2026-01-01T01:00:00+01:00` is midnight UTC.
pub fn parse_rfc3339(s: &str) -> Option<Millis> {
    let s = s.trim();
    let (local, offset_ms) = split_offset(s)?;
    let t = humantime::parse_rfc3339_weak(local).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_millis() as i64 - offset_ms)
}

/// A time's text without its zone, and the zone's offset east of UTC in ms.
fn split_offset(s: &str) -> Option<(&str, Millis)> {
    if let Some(local) = s.strip_suffix(['Z', 'z']) {
        return Some((local, 0));
    }
    // An offset only follows a time of day: `T12:00:00+01:00`, not the date's own `-`.
    let Some(t) = s.find(['T', 't', ' ']) else { return Some((s, 0)) };
    let Some(at) = s[t..].rfind(['+', '-']).map(|i| t + i) else { return Some((s, 0)) };
    let (local, zone) = s.split_at(at);
    let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) || zone[1..].len() > 5 {
        return None;
    }
    let (h, m): (i64, i64) = (digits[..2].parse().ok()?, digits[2..].parse().ok()?);
    if h > 23 || m > 59 {
        return None;
    }
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    Some((local, sign * (h * 3_600_000 + m * 60_000)))
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

    #[test]
    fn offsets_are_taken_off_and_bad_ones_refused() {
        let utc = parse_rfc3339("2026-03-01T00:00:00Z").expect("utc");
        for s in [
            "2026-03-01T01:00:00+01:00",
            "2026-02-28T19:00:00-05:00",
            "2026-03-01T05:30:00+0530",
            "2026-03-01T00:00:00",
        ] {
            assert_eq!(parse_rfc3339(s), Some(utc), "{s}");
        }
        assert_eq!(parse_rfc3339("2026-03-01T01:00:00.250+01:00"), Some(utc + 250));
        for bad in [
            "2026-03-01T00:00:00+25:00",
            "2026-03-01T00:00:00+1:00",
            "2026-03-01T00:00:00+01:60",
            "2026-03-01T00:00:00+aa:bb",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
