//! Calendar dates for humans, from Unix milliseconds (UTC), without a date library.

/// The wall clock in Unix milliseconds (0 before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `YYYY-MM-DD` (UTC) of a Unix time in milliseconds.
pub fn civil_date(ms: u64) -> String {
    // Howard Hinnant's days-to-civil algorithm.
    let z = (ms / 86_400_000) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Unix milliseconds of a UTC date and time; `None` for a date that is not one.
pub fn unix_ms(year: i64, month: u32, day: u32, hour: u32, minute: u32) -> Option<u64> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    // Howard Hinnant's days-from-civil algorithm.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let ms = (days * 86_400 + i64::from(hour) * 3_600 + i64::from(minute) * 60) * 1000;
    u64::try_from(ms).ok()
}

/// `HH:MM UTC` of a Unix time in milliseconds, with the date when it is not `now_ms`'s day.
pub fn clock_time(ms: u64, now_ms: u64) -> String {
    let minutes = ms / 60_000 % (24 * 60);
    let time = format!("{:02}:{:02} UTC", minutes / 60, minutes % 60);
    if civil_date(ms) == civil_date(now_ms) {
        time
    } else {
        format!("{} {time}", civil_date(ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(951_782_400_000), "2000-02-29");
        assert_eq!(civil_date(1_795_330_000_000), "2026-11-22");
    }

    #[test]
    fn unix_times_round_trip_and_nonsense_is_none() {
        let ms = unix_ms(2000, 2, 29, 13, 5).unwrap();
        assert_eq!(civil_date(ms), "2000-02-29");
        assert_eq!(ms % 86_400_000, (13 * 60 + 5) * 60_000);
        assert_eq!(unix_ms(1970, 1, 1, 0, 0), Some(0));
        assert_eq!(unix_ms(2026, 13, 1, 0, 0), None);
        assert_eq!(unix_ms(1969, 12, 31, 0, 0), None);
        assert_eq!(clock_time(ms, ms), "13:05 UTC");
        assert_eq!(clock_time(ms, 0), "2000-02-29 13:05 UTC");
    }
}
