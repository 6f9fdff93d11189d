//! Who is on call at a time (pure): the people of overrides in force, earliest first, then the
//! people of the weekly ranges in force in Japan time, in rota order; each person once.

use ulid::Ulid;

use crate::clock::Millis;
use crate::db::{OverrideRow, ScheduleRow};

/// Japan's offset from UTC (no daylight saving).
const JST_OFFSET_MS: u64 = 9 * 60 * 60_000;

/// The weekday (0 = Monday … 6 = Sunday) and minute of the day at `now` in Japan time.
pub fn jst_week_minute(now: Millis) -> (u8, u16) {
    let local = now.saturating_add(JST_OFFSET_MS);
    let days = local / 86_400_000;
    // 1970-01-01 was a Thursday (3 when Monday is 0).
    let weekday = ((days + 3) % 7) as u8;
    let minute = ((local % 86_400_000) / 60_000) as u16;
    (weekday, minute)
}

/// Whether a weekly range is well formed: a weekday 0–6 and `0 <= start < end <= 1440`.
pub fn valid_range(weekday: u8, start: u16, end: u16) -> bool {
    weekday < 7 && start < end && end <= 1440
}

/// The people on call at `now`, in the order they are paged.
pub fn on_call(schedule: &[ScheduleRow], overrides: &[OverrideRow], now: Millis) -> Vec<Ulid> {
    let mut out: Vec<Ulid> = Vec::new();
    let mut ovr: Vec<&OverrideRow> = overrides
        .iter()
        .filter(|o| o.starts_at <= now && now < o.ends_at)
        .collect();
    ovr.sort_by_key(|o| (o.starts_at, o.id));
    for o in ovr {
        if !out.contains(&o.account_id) {
            out.push(o.account_id);
        }
    }
    let (day, minute) = jst_week_minute(now);
    let mut ranges: Vec<&ScheduleRow> = schedule
        .iter()
        .filter(|r| r.weekday == day && r.start_minute <= minute && minute < r.end_minute)
        .collect();
    ranges.sort_by_key(|r| (r.position, r.id));
    for r in ranges {
        if !out.contains(&r.account_id) {
            out.push(r.account_id);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-07 00:00 JST, a Monday.
    const MONDAY_MIDNIGHT_JST: Millis = 1_796_569_200_000;

    fn range(account: Ulid, weekday: u8, start: u16, end: u16, position: i64) -> ScheduleRow {
        ScheduleRow {
            id: Ulid::new(),
            account_id: account,
            weekday,
            start_minute: start,
            end_minute: end,
            position,
        }
    }

    #[test]
    fn the_week_and_minute_are_read_in_japan_time() {
        assert_eq!(jst_week_minute(MONDAY_MIDNIGHT_JST), (0, 0));
        assert_eq!(
            jst_week_minute(MONDAY_MIDNIGHT_JST - 60_000),
            (6, 1439),
            "a minute before is Sunday night"
        );
        assert_eq!(
            jst_week_minute(MONDAY_MIDNIGHT_JST + 2 * 86_400_000 + 22 * 3_600_000),
            (2, 22 * 60)
        );
    }

    #[test]
    fn the_schedule_in_force_gives_people_in_rota_order() {
        let (a, b, c) = (Ulid::new(), Ulid::new(), Ulid::new());
        let schedule = vec![
            range(a, 0, 0, 9 * 60, 2),
            range(b, 0, 0, 6 * 60, 1),
            range(c, 1, 0, 1440, 0),
        ];
        let at = MONDAY_MIDNIGHT_JST + 3 * 3_600_000;
        assert_eq!(on_call(&schedule, &[], at), vec![b, a]);
        assert_eq!(on_call(&schedule, &[], at + 4 * 3_600_000), vec![a]);
        assert_eq!(on_call(&schedule, &[], at + 86_400_000), vec![c]);
    }

    #[test]
    fn an_override_in_force_comes_first_and_nobody_is_paged_twice() {
        let (a, b) = (Ulid::new(), Ulid::new());
        let schedule = vec![range(a, 0, 0, 1440, 0), range(b, 0, 0, 1440, 1)];
        let at = MONDAY_MIDNIGHT_JST + 60_000;
        let o = OverrideRow {
            id: Ulid::new(),
            account_id: b,
            starts_at: at - 1,
            ends_at: at + 1,
            created_at: 0,
        };
        assert_eq!(on_call(&schedule, std::slice::from_ref(&o), at), vec![b, a]);
        assert_eq!(on_call(&schedule, &[o], at + 1), vec![a, b], "ended");
    }

    #[test]
    fn ranges_must_lie_within_a_day() {
        assert!(valid_range(6, 0, 1440));
        assert!(!valid_range(7, 0, 10));
        assert!(!valid_range(0, 10, 10));
        assert!(!valid_range(0, 10, 1441));
    }
}
