//! Time as an input: the server reads the system clock, tests and the simulator their own.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The first instant of `day` in `tz`, as epoch milliseconds. A day whose midnight a DST change
/// skips starts at the first instant that exists.
pub fn day_start_ms(tz: &chrono_tz::Tz, day: chrono::NaiveDate) -> i64 {
    use chrono::TimeZone;
    let midnight = day.and_hms_opt(0, 0, 0).expect("midnight exists");
    tz.from_local_datetime(&midnight)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(midnight + chrono::Duration::hours(1)))
                .earliest()
        })
        .map_or(0, |start| start.timestamp_millis())
}

pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(now_ms: i64) -> ManualClock {
        ManualClock(AtomicI64::new(now_ms))
    }

    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_starts_at_local_midnight() {
        let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        assert_eq!(day_start_ms(&chrono_tz::UTC, day), 1_795_392_000_000);
        // New York is UTC-5 in November.
        assert_eq!(
            day_start_ms(&chrono_tz::America::New_York, day),
            1_795_392_000_000 + 5 * 3_600_000
        );
    }

    #[test]
    fn a_day_whose_midnight_is_skipped_starts_an_hour_later() {
        // Santiago skipped 2026-09-06 00:00 (clocks went to 01:00, UTC-3).
        let day = chrono::NaiveDate::from_ymd_opt(2026, 9, 6).unwrap();
        let start = day_start_ms(&chrono_tz::America::Santiago, day);
        let expected = chrono::DateTime::parse_from_rfc3339("2026-09-06T01:00:00-03:00").unwrap();
        assert_eq!(start, expected.timestamp_millis());
    }
}
