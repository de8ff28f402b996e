//! Dates as the tools take and show them: `YYYY-MM-DD` in UTC.

const DAY_MS: u64 = 86_400_000;

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The first millisecond of `text` (`YYYY-MM-DD`), or why it is not a date.
pub fn parse_day(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a date: write YYYY-MM-DD, e.g. 2026-03-01");
    let mut parts = text.trim().splitn(3, '-');
    let mut next = || parts.next().ok_or_else(bad);
    let year: i64 = next()?.parse().map_err(|_| bad())?;
    let month: u32 = next()?.parse().map_err(|_| bad())?;
    let day: u32 = next()?.parse().map_err(|_| bad())?;
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return Err(bad());
    }
    let at_ms = days_from_civil(year, month, day) as u64 * DAY_MS;
    // A day that does not exist (Feb 30) comes back as another date.
    if day_of(at_ms) != format!("{year:04}-{month:02}-{day:02}") {
        return Err(bad());
    }
    Ok(at_ms)
}

/// `YYYY-MM-DD` of a Unix millisecond (the calendar the rest of Valor uses).
pub fn day_of(at_ms: u64) -> String {
    valor_protocol::time::civil_date(at_ms)
}

/// One day after `at_ms` (an `until` date includes its whole day).
pub fn next_day(at_ms: u64) -> u64 {
    at_ms.saturating_add(DAY_MS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn dates_round_trip_and_nonsense_is_refused() {
        let ms = parse_day("2026-12-04").unwrap();
        assert_eq!(ms, 1_796_342_400_000);
        assert_eq!(day_of(ms + 5_000), "2026-12-04");
        assert_eq!(day_of(parse_day("2024-02-29").unwrap()), "2024-02-29");
        for bad in [
            "2025-02-29",
            "yesterday",
            "2026-13-01",
            "2026-1",
            "",
            "1969-12-31",
        ] {
            assert!(parse_day(bad).is_err(), "{bad}");
        }
    }
}
