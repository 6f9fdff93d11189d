//! When a referral entry answers: weekly ranges in Japan time (UTC+9, no daylight saving), in a
//! compact text an admin can write in a form or a CSV cell:
//!
//! - `24h`: always;
//! - `mon-fri 09:00-17:00; sat 10:00-12:00`: days (`mon`…`sun`, ranges `fri-mon` wrap, lists
//!   `mon,wed`, `daily`) and a time range; an end at or before the start runs past midnight
//!   into the next day (`daily 22:00-06:00`), `24:00` is the end of the day;
//! - empty: unknown (no "open now" is claimed).
//!
//! [`Hours::open_at`] answers "available now" for a time read from the injected clock.

use std::fmt;

use crate::clock::Millis;

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const JST_OFFSET_MS: u64 = 9 * 3600 * 1000;
const DAY_MS: u64 = 24 * 3600 * 1000;

/// One weekly range: on `days` (bit 0 Monday … bit 6 Sunday), from `from` to `until`, in minutes
/// of the day; `until <= from` ends the next day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    days: u8,
    from: u16,
    until: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hours {
    always: bool,
    spans: Vec<Span>,
}

/// Why a text is not hours (shown to the admin).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("hours: {0} (examples: \"24h\", \"mon-fri 09:00-17:00; sat 10:00-12:00\")")]
pub struct HoursError(String);

fn day(word: &str) -> Result<u8, HoursError> {
    DAYS.iter()
        .position(|d| *d == word)
        .map(|i| i as u8)
        .ok_or_else(|| HoursError(format!("unknown day {word:?}")))
}

fn days(text: &str) -> Result<u8, HoursError> {
    if text == "daily" {
        return Ok(0x7f);
    }
    let mut mask = 0u8;
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (mut d, end) = (day(a)?, day(b)?);
                loop {
                    mask |= 1 << d;
                    if d == end {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => mask |= 1 << day(part)?,
        }
    }
    Ok(mask)
}

fn minute(text: &str) -> Result<u16, HoursError> {
    let bad = || HoursError(format!("{text:?} is not a time (HH:MM)"));
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

impl Hours {
    /// Parses the compact form (case and surrounding spaces do not matter).
    pub fn parse(text: &str) -> Result<Hours, HoursError> {
        let text = text.trim().to_ascii_lowercase();
        if text.is_empty() {
            return Ok(Hours::default());
        }
        if text == "24h" {
            return Ok(Hours {
                always: true,
                spans: Vec::new(),
            });
        }
        let mut spans = Vec::new();
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (d, t) = part
                .split_once(' ')
                .ok_or_else(|| HoursError(format!("{part:?} needs days and a time range")))?;
            let (from, until) = t
                .trim()
                .split_once('-')
                .ok_or_else(|| HoursError(format!("{t:?} is not a time range (HH:MM-HH:MM)")))?;
            spans.push(Span {
                days: days(d.trim())?,
                from: minute(from.trim())?,
                until: minute(until.trim())?,
            });
            if spans.len() > 14 {
                return Err(HoursError("at most 14 ranges".into()));
            }
        }
        Ok(Hours {
            always: false,
            spans,
        })
    }

    /// Whether any hours are known.
    pub fn is_known(&self) -> bool {
        self.always || !self.spans.is_empty()
    }

    /// Open at `now` (Japan time)? `None` when the hours are unknown.
    pub fn open_at(&self, now: Millis) -> Option<bool> {
        if self.always {
            return Some(true);
        }
        if self.spans.is_empty() {
            return None;
        }
        let local = now + JST_OFFSET_MS;
        // 1970-01-01 was a Thursday (index 3 from Monday).
        let today = ((local / DAY_MS + 3) % 7) as u8;
        let yesterday = (today + 6) % 7;
        let min = ((local % DAY_MS) / 60_000) as u16;
        Some(self.spans.iter().any(|s| {
            let on = |d: u8| s.days & (1 << d) != 0;
            if s.from < s.until {
                on(today) && (s.from..s.until).contains(&min)
            } else {
                // Past midnight: from `from` to the end of the day, and the next day until `until`.
                (on(today) && min >= s.from) || (on(yesterday) && min < s.until)
            }
        }))
    }
}

/// The canonical compact form (what [`Hours::parse`] reads back the same).
impl fmt::Display for Hours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.always {
            return f.write_str("24h");
        }
        for (i, s) in self.spans.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            if s.days == 0x7f {
                f.write_str("daily")?;
            } else {
                let listed: Vec<&str> = (0..7)
                    .filter(|d| s.days & (1 << d) != 0)
                    .map(|d| DAYS[d as usize])
                    .collect();
                f.write_str(&listed.join(","))?;
            }
            write!(
                f,
                " {:02}:{:02}-{:02}:{:02}",
                s.from / 60,
                s.from % 60,
                s.until / 60,
                s.until % 60
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix milliseconds of a Japan-time wall clock reading in the week of Monday 2026-12-07.
    fn jst(weekday: u64, h: u64, m: u64) -> Millis {
        // 2026-12-07 00:00 JST = 2026-12-06 15:00 UTC.
        let monday = 1_796_569_200_000u64;
        monday + weekday * DAY_MS + (h * 60 + m) * 60_000
    }

    #[test]
    fn the_reference_monday_is_a_monday_in_japan() {
        let h = Hours::parse("mon 00:00-00:01").unwrap();
        assert_eq!(h.open_at(jst(0, 0, 0)), Some(true));
        assert_eq!(h.open_at(jst(0, 0, 1)), Some(false));
        assert_eq!(h.open_at(jst(1, 0, 0)), Some(false));
    }

    #[test]
    fn always_is_open_and_unknown_claims_nothing() {
        assert_eq!(
            Hours::parse("24H").unwrap().open_at(jst(3, 3, 3)),
            Some(true)
        );
        assert_eq!(Hours::parse("  ").unwrap().open_at(jst(3, 3, 3)), None);
    }

    #[test]
    fn a_range_opens_at_its_start_and_closes_at_its_end() {
        let h = Hours::parse("daily 16:00-21:00").unwrap();
        assert_eq!(h.open_at(jst(2, 15, 59)), Some(false));
        assert_eq!(h.open_at(jst(2, 16, 0)), Some(true));
        assert_eq!(h.open_at(jst(2, 20, 59)), Some(true));
        assert_eq!(h.open_at(jst(2, 21, 0)), Some(false));
    }

    #[test]
    fn a_night_range_runs_past_midnight_into_the_next_day_only() {
        let h = Hours::parse("fri 22:00-06:00").unwrap();
        assert_eq!(h.open_at(jst(4, 21, 59)), Some(false));
        assert_eq!(h.open_at(jst(4, 23, 59)), Some(true));
        // Saturday early morning belongs to Friday night.
        assert_eq!(h.open_at(jst(5, 0, 0)), Some(true));
        assert_eq!(h.open_at(jst(5, 5, 59)), Some(true));
        assert_eq!(h.open_at(jst(5, 6, 0)), Some(false));
        // Friday early morning does not (Thursday night is not listed).
        assert_eq!(h.open_at(jst(4, 1, 0)), Some(false));
        // Saturday night is not listed either.
        assert_eq!(h.open_at(jst(5, 23, 0)), Some(false));
    }

    #[test]
    fn weekdays_use_japan_time_not_utc() {
        // Monday 08:00 JST is still Sunday 23:00 UTC.
        let h = Hours::parse("mon-fri 08:00-09:00").unwrap();
        assert_eq!(h.open_at(jst(0, 8, 30)), Some(true));
        // Saturday 08:30 JST is Friday in UTC: closed.
        assert_eq!(h.open_at(jst(5, 8, 30)), Some(false));
    }

    #[test]
    fn a_day_range_wraps_over_the_week_and_midnight_to_the_end_of_sunday_closes() {
        let h = Hours::parse("sat-mon 00:00-24:00").unwrap();
        for d in [5, 6, 0] {
            assert_eq!(h.open_at(jst(d, 23, 59)), Some(true), "day {d}");
        }
        assert_eq!(h.open_at(jst(1, 0, 0)), Some(false));
        assert_eq!(h.open_at(jst(4, 12, 0)), Some(false));
    }

    #[test]
    fn the_canonical_form_reads_back_the_same() {
        for text in [
            "24h",
            "mon-fri 09:00-17:00; sat 10:00-12:00",
            "daily 22:00-06:00",
        ] {
            let h = Hours::parse(text).unwrap();
            assert_eq!(Hours::parse(&h.to_string()).unwrap(), h);
        }
        assert_eq!(
            Hours::parse("Mon-Fri 09:00-17:00").unwrap().to_string(),
            "mon,tue,wed,thu,fri 09:00-17:00"
        );
    }

    #[test]
    fn bad_hours_say_what_is_wrong() {
        for bad in [
            "mon",
            "someday 09:00-10:00",
            "mon 9:00-10:00",
            "mon 09:00-25:00",
            "mon 09:60-10:00",
        ] {
            let e = Hours::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("hours: "), "{bad}: {e}");
        }
    }
}
