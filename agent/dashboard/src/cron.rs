//! A job's schedule in words for the Jobs page ("every 6 hours, on the hour"), from the
//! six-field cron or interval text the scheduler reads. Forms it does not know are shown as
//! they are.

/// `schedule` in words, or the schedule itself when it is not a common form.
pub fn describe(schedule: &str) -> String {
    if let Some(every) = schedule.strip_prefix("every ") {
        return format!("every {}", interval(every.trim()));
    }
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    let [sec, min, hour, dom, month, dow] = fields.as_slice() else {
        return schedule.to_owned();
    };
    if *dom != "*" || *month != "*" {
        return schedule.to_owned();
    }
    let (Ok(sec), Some(days)) = (sec.parse::<u32>(), weekdays(dow)) else {
        return schedule.to_owned();
    };
    let at_sec = if sec == 0 {
        String::new()
    } else {
        format!(":{sec:02}")
    };
    let words = match (*min, *hour) {
        (m, "*") => match m.strip_prefix("*/") {
            Some(n) => format!("every {n} minutes"),
            None => match m.parse::<u32>() {
                Ok(m) => format!("every hour at minute {m}{at_sec}"),
                Err(_) => return schedule.to_owned(),
            },
        },
        (m, h) => {
            let Ok(m) = m.parse::<u32>() else {
                return schedule.to_owned();
            };
            match h.strip_prefix("*/") {
                Some(n) if m == 0 => format!("every {n} hours, on the hour"),
                Some(n) => format!("every {n} hours at minute {m}"),
                None => match h.parse::<u32>() {
                    Ok(h) => format!("at {h:02}:{m:02}{at_sec} UTC"),
                    Err(_) => return schedule.to_owned(),
                },
            }
        }
    };
    format!("{words}{days}")
}

fn interval(text: &str) -> String {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (count, unit) = text.split_at(split);
    let unit = match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        other => return format!("{count}{other}"),
    };
    if count == "1" {
        unit.to_owned()
    } else {
        format!("{count} {unit}s")
    }
}

/// The day-of-week field as words ("" for every day).
fn weekdays(field: &str) -> Option<String> {
    const NAMES: [&str; 7] = [
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
    ];
    match field {
        "*" | "?" => Some(String::new()),
        "1-5" | "MON-FRI" => Some(", Monday to Friday".to_owned()),
        day => day
            .parse::<usize>()
            .ok()
            .and_then(|d| NAMES.get(d % 7))
            .map(|name| format!(", on {name}s")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_schedules_read_as_words() {
        for (schedule, words) in [
            ("0 0 */6 * * *", "every 6 hours, on the hour"),
            ("0 30 3 * * *", "at 03:30 UTC"),
            ("0 */15 * * * *", "every 15 minutes"),
            ("0 5 * * * *", "every hour at minute 5"),
            ("0 0 9 * * 1-5", "at 09:00 UTC, Monday to Friday"),
            ("0 0 9 * * 0", "at 09:00 UTC, on Sundays"),
            ("every 30s", "every 30 seconds"),
            ("every 1h", "every hour"),
            ("0 0 0 1 * *", "0 0 0 1 * *"),
        ] {
            assert_eq!(describe(schedule), words, "{schedule}");
        }
    }
}
