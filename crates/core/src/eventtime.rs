//! Event time: RFC 3339 timestamps to and from milliseconds since the Unix epoch.
//!
//! Every window in the system (fraud rules, analytics activity, state rebuild)
//! runs on the time written *in the event*, never on the wall clock, so that a
//! replay of the same events gives the same results. This module is the one
//! place that turns the wire form (`2024-01-15T10:30:45.123Z`,
//! `2024-01-15T10:30:45.123456+00:00`) into an `i64` of milliseconds and back.
//!
//! It is hand-written rather than pulled from a date crate because it sits on
//! the hot path of every decoded event, it needs exactly one format, and its
//! rules are small enough to state here:
//! - date and time are required, separated by `T`, `t` or a space;
//! - a fraction of any length (1..=9 digits) is accepted and truncated to ms;
//! - the offset is `Z`, `z` or `±HH:MM`; a timestamp with **no offset is read
//!   as UTC** (Python's `datetime.utcnow().isoformat()` writes that form);
//! - a leap second (`:60`) is read as the last millisecond of that minute;
//! - years 0000–9999 only.

/// The default ALLOWED_LATENESS: how far behind its partition's event time
/// an event may arrive and still count in windows.
pub const DEFAULT_ALLOWED_LATENESS: std::time::Duration = std::time::Duration::from_secs(60);

const MS_PER_SECOND: i64 = 1_000;
const MS_PER_MINUTE: i64 = 60 * MS_PER_SECOND;
const MS_PER_HOUR: i64 = 60 * MS_PER_MINUTE;
const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;

/// Parses an RFC 3339 timestamp into milliseconds since the Unix epoch.
///
/// Returns `None` for anything that is not a valid date-time of the form
/// described in the module documentation.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let year = digits(b, 0, 4)?;
    expect(b, 4, b'-')?;
    let month = digits(b, 5, 2)?;
    expect(b, 7, b'-')?;
    let day = digits(b, 8, 2)?;
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let hour = digits(b, 11, 2)?;
    expect(b, 13, b':')?;
    let minute = digits(b, 14, 2)?;
    expect(b, 16, b':')?;
    let mut second = digits(b, 17, 2)?;

    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut millis = 0;
    if second == 60 {
        second = 59;
        millis = 999;
    }

    let mut i = 19;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let start = i;
        let mut frac_ms = 0i64;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                frac_ms = frac_ms * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 || n > 9 {
            return None;
        }
        for _ in n..3 {
            frac_ms *= 10;
        }
        if millis == 0 {
            millis = frac_ms;
        }
    }

    let offset_ms = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() => {
            let oh = digits(b, i + 1, 2)?;
            expect(b, i + 3, b':')?;
            let om = digits(b, i + 4, 2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * MS_PER_HOUR + om * MS_PER_MINUTE;
            if sign == b'+' { off } else { -off }
        }
        _ => return None,
    };

    let days = days_from_civil(year, month, day);
    Some(days * MS_PER_DAY + hour * MS_PER_HOUR + minute * MS_PER_MINUTE + second * MS_PER_SECOND + millis - offset_ms)
}

/// Formats milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_rfc3339_ms(ms: i64) -> String {
    Rfc3339(ms).to_string()
}

/// Displays milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`
/// without allocating: the producer and the JSON encoder write one per event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rfc3339(pub i64);

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let buf = rfc3339_bytes(self.0);
        // Every byte of the buffer is an ASCII digit or separator.
        f.write_str(std::str::from_utf8(&buf).map_err(|_| std::fmt::Error)?)
    }
}

fn rfc3339_bytes(ms: i64) -> [u8; 24] {
    let days = ms.div_euclid(MS_PER_DAY);
    let rem = ms.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let mut buf = [0u8; 24];
    put(&mut buf[0..4], year.clamp(0, 9999));
    buf[4] = b'-';
    put(&mut buf[5..7], month);
    buf[7] = b'-';
    put(&mut buf[8..10], day);
    buf[10] = b'T';
    put(&mut buf[11..13], rem / MS_PER_HOUR);
    buf[13] = b':';
    put(&mut buf[14..16], (rem / MS_PER_MINUTE) % 60);
    buf[16] = b':';
    put(&mut buf[17..19], (rem / MS_PER_SECOND) % 60);
    buf[19] = b'.';
    put(&mut buf[20..23], rem % MS_PER_SECOND);
    buf[23] = b'Z';
    buf
}

/// The UTC hour of day (0–23) of an event time, for "revenue by hour".
pub fn hour_of_day(ms: i64) -> u8 {
    (ms.rem_euclid(MS_PER_DAY) / MS_PER_HOUR) as u8
}

/// Milliseconds since the epoch, now. Only the runtime edges (producer clock,
/// `detected_at`, latency measurement) call this; processors never do.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// How many distinct users must have reached a time before a partition's
/// event time moves to it.
pub const CLOCK_QUORUM: usize = 3;

/// A partition's event time, robust to forged outliers.
///
/// Event time is the [`CLOCK_QUORUM`]-th largest of the per-user latest
/// timestamps: it moves to `t` once three distinct users have events at or
/// after `t`, so one user (one forged event, or many from one forged user
/// id) cannot drag it ahead and make everybody else's events look late.
/// Until three users have been seen it is the smallest of their latest
/// timestamps. It is kept exactly with three (user, latest) pairs: a user
/// outside the top three has a latest time below all three, so a later event
/// of theirs can only enter with its own time.
///
/// It is a function of the events processed, and a rebuild that replays
/// every event at or after `time() − window` ends with the same clock (each
/// of the three pairs is such an event), which is what lets a new owner
/// continue a partition exactly.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EventClock {
    /// (user key, latest time), largest time first.
    top: [(u64, i64); CLOCK_QUORUM],
    #[serde(deserialize_with = "quorum_len")]
    len: usize,
}

/// The number of users a snapshot's clock holds: at most [`CLOCK_QUORUM`].
fn quorum_len<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let len = <usize as serde::Deserialize>::deserialize(d)?;
    crate::snapshot::require(len <= CLOCK_QUORUM, "an event clock of more than three users")?;
    Ok(len)
}

impl EventClock {
    /// Notes an event of `user` at `time_ms`.
    pub fn observe(&mut self, user: u64, time_ms: i64) {
        let top = &mut self.top[..self.len];
        if let Some(i) = top.iter().position(|&(u, _)| u == user) {
            if time_ms <= top[i].1 {
                return;
            }
            top[i].1 = time_ms;
        } else if self.len < CLOCK_QUORUM {
            self.top[self.len] = (user, time_ms);
            self.len += 1;
        } else if time_ms > self.top[CLOCK_QUORUM - 1].1 {
            self.top[CLOCK_QUORUM - 1] = (user, time_ms);
        } else {
            return;
        }
        // Keep largest first (insertion sort of at most three).
        let top = &mut self.top[..self.len];
        let mut i = top.iter().position(|&(u, _)| u == user).unwrap_or(0);
        while i > 0 && top[i].1 > top[i - 1].1 {
            top.swap(i, i - 1);
            i -= 1;
        }
        while i + 1 < top.len() && top[i].1 < top[i + 1].1 {
            top.swap(i, i + 1);
            i += 1;
        }
    }

    /// The partition's event time; `i64::MIN` before any event.
    pub fn time(&self) -> i64 {
        match self.len {
            0 => i64::MIN,
            n => self.top[n - 1].1,
        }
    }

    /// Event time minus the allowed lateness: events before it are late.
    pub fn watermark(&self, lateness_ms: i64) -> i64 {
        self.time().saturating_sub(lateness_ms)
    }
}

fn put(dst: &mut [u8], mut value: i64) {
    for slot in dst.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<i64> {
    let mut v = 0i64;
    for &c in b.get(at..at + n)? {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

fn expect(b: &[u8], at: usize, c: u8) -> Option<()> {
    (b.get(at) == Some(&c)).then_some(())
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date. Counts in 400-year
/// eras (146,097 days each) with March as the first month, so that the leap
/// day is the last day of the shifted year.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let shifted_month = (month + 9) % 12; // March = 0
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_seed_forms() {
        let z = parse_rfc3339_ms("2024-01-15T10:30:45.123Z").unwrap();
        assert_eq!(z, 1_705_314_645_123);
        assert_eq!(parse_rfc3339_ms("2024-01-15T10:30:45.123+00:00"), Some(z));
        assert_eq!(parse_rfc3339_ms("2024-01-15T10:30:45.123456+00:00"), Some(z));
        assert_eq!(parse_rfc3339_ms("2024-01-15T10:30:45.123456"), Some(z));
        assert_eq!(parse_rfc3339_ms("2024-01-15 10:30:45.1234Z"), Some(z));
        assert_eq!(parse_rfc3339_ms("2024-01-15T12:30:45.123+02:00"), Some(z));
        assert_eq!(parse_rfc3339_ms("2024-01-15T05:30:45.123-05:00"), Some(z));
        assert_eq!(parse_rfc3339_ms("2024-01-15T10:30:45Z"), Some(z - 123));
        assert_eq!(parse_rfc3339_ms("2024-01-15T10:30:45.1Z"), Some(z - 23));
    }

    #[test]
    fn rejects_malformed_and_impossible_dates() {
        for bad in [
            "",
            "2024-01-15",
            "2024-01-15T10:30",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-01-15T24:00:00Z",
            "2024-01-15T10:60:00Z",
            "2024-01-15T10:30:45.Z",
            "2024-01-15T10:30:45.1234567890Z",
            "2024-01-15T10:30:45+0000",
            "2024-01-15T10:30:45Zjunk",
            "2024-01-15T10:30:45+24:00",
            "２０２４-01-15T10:30:45Z",
            "yesterday at noon, roughly",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad:?} must be rejected");
        }
        assert!(parse_rfc3339_ms("2024-02-29T00:00:00Z").is_some());
        assert!(parse_rfc3339_ms("2000-02-29T00:00:00Z").is_some());
        assert!(parse_rfc3339_ms("1900-02-29T00:00:00Z").is_none());
    }

    #[test]
    fn leap_second_is_the_last_millisecond_of_its_minute() {
        let leap = parse_rfc3339_ms("2016-12-31T23:59:60Z").unwrap();
        assert_eq!(leap, parse_rfc3339_ms("2016-12-31T23:59:59.999Z").unwrap());
    }

    #[test]
    fn format_and_parse_round_trip_across_eras() {
        for ms in [
            0,
            1,
            951_782_400_000,     // 2000-02-29
            1_705_314_645_123,   // 2024-01-15T10:30:45.123Z
            4_102_444_800_000,   // 2100-01-01
            -62_135_596_800_000, // 0001-01-01
            253_402_300_799_999, // 9999-12-31T23:59:59.999Z
        ] {
            let text = format_rfc3339_ms(ms);
            assert_eq!(parse_rfc3339_ms(&text), Some(ms), "{text}");
        }
        assert_eq!(format_rfc3339_ms(1_705_314_645_123), "2024-01-15T10:30:45.123Z");
        assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        let start = days_from_civil(1900, 1, 1);
        let end = days_from_civil(2300, 1, 1);
        let mut expected = (1900, 1, 1);
        for days in start..end {
            assert_eq!(civil_from_days(days), expected);
            assert_eq!(days_from_civil(expected.0, expected.1, expected.2), days);
            let (y, m, d) = expected;
            expected = if d < days_in_month(y, m) {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
        }
    }

    #[test]
    fn one_user_cannot_move_event_time_ahead() {
        let mut c = EventClock::default();
        assert_eq!(c.time(), i64::MIN);
        c.observe(1, 1_000);
        assert_eq!(c.time(), 1_000, "one user: their latest");
        c.observe(2, 900);
        assert_eq!(c.time(), 900, "until three users: the smallest latest");
        c.observe(3, 1_100);
        assert_eq!(c.time(), 900);
        // A forged far-future event, repeated from one user id.
        for _ in 0..5 {
            c.observe(3, 10_000_000);
        }
        assert_eq!(c.time(), 900, "third largest of (10M, 1000, 900)");
        c.observe(2, 2_000);
        assert_eq!(c.time(), 1_000);
        c.observe(4, 3_000);
        assert_eq!(c.time(), 2_000, "a fourth user pushes the smallest out");
        c.observe(5, 1_500);
        assert_eq!(c.time(), 2_000, "an older user does not move it back");
        assert_eq!(c.watermark(60_000), 2_000 - 60_000);
    }

    #[test]
    fn event_clock_is_the_third_largest_latest_time_of_any_order() {
        // Against a direct computation over every user's latest time.
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _ in 0..200 {
            let mut c = EventClock::default();
            let mut latest = std::collections::HashMap::<u64, i64>::new();
            for _ in 0..60 {
                let (user, t) = (next() % 8, (next() % 1000) as i64);
                c.observe(user, t);
                let e = latest.entry(user).or_insert(t);
                *e = (*e).max(t);
                let mut times: Vec<i64> = latest.values().copied().collect();
                times.sort_unstable_by(|a, b| b.cmp(a));
                let expected = times[times.len().min(CLOCK_QUORUM) - 1];
                assert_eq!(c.time(), expected);
            }
        }
    }

    #[test]
    fn a_snapshot_clock_of_more_than_three_users_is_an_error() {
        use crate::snapshot::{decode, encode};
        let top = [(1u64, 30i64), (2, 20), (3, 10)];
        assert_eq!(decode::<EventClock>(&encode(&(top, 3usize))).map(|c| c.time()), Ok(10));
        assert!(decode::<EventClock>(&encode(&(top, 4usize))).is_err());
    }

    #[test]
    fn hour_of_day_is_utc() {
        assert_eq!(hour_of_day(parse_rfc3339_ms("2024-01-15T23:59:59Z").unwrap()), 23);
        assert_eq!(hour_of_day(parse_rfc3339_ms("2024-01-15T00:30:00+01:00").unwrap()), 23);
    }
}
