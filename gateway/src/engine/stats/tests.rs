//! The statistics' rules: the day rolls over at midnight in Japan, handle time is a moving
//! average, the wait estimate follows closed conversations, and an alert is acknowledged once.

use super::*;

#[test]
fn the_day_rolls_over_at_midnight_in_japan() {
    let mut s = StatsState::default();
    // 2026-11-23 14:59:59 UTC is 23:59:59 JST.
    let before = 1_795_445_999_000;
    s.roll_day(before);
    s.today.started = 5;
    s.roll_day(before + 500);
    assert_eq!(s.today.started, 5);
    s.roll_day(before + 1_000);
    assert_eq!(s.today.started, 0, "a new day in Japan starts from zero");
}

#[test]
fn handle_time_is_a_moving_average() {
    let mut s = StatsState::default();
    assert_eq!(s.handle_ms(), None);
    s.observe_handle_time(10_000);
    assert_eq!(s.handle_ms(), Some(10_000.0));
    s.observe_handle_time(20_000);
    assert_eq!(s.handle_ms(), Some(11_000.0));
}

#[test]
fn with_no_conversation_closed_yet_no_wait_is_estimated_even_with_someone_free() {
    let s = StatsState::default();
    // An operator on duty with room: no history, so no number (it used to be 15 minutes).
    assert_eq!(s.estimate_wait(1, 2), None);
    assert_eq!(s.estimate_wait(5, 2), None);
}

#[test]
fn the_wait_estimate_follows_how_long_conversations_have_taken() {
    let mut s = StatsState::default();
    s.observe_handle_time(6 * 60_000);
    assert_eq!(s.estimate_wait(1, 0), None, "nobody on duty");
    assert_eq!(s.estimate_wait(1, 2), Some(6));
    assert_eq!(
        s.estimate_wait(3, 2),
        Some(12),
        "two rounds of conversations ahead"
    );
}

#[test]
fn alerts_are_acknowledged_once_by_the_first_coordinator() {
    let mut s = StatsState::default();
    s.raise_help("Sakura", Ulid::new(), 1);
    let id = s.alerts[0].id;
    assert!(s.ack_alert(id, "Coordinator A", 2).is_some());
    assert!(s.ack_alert(id, "Coordinator B", 3).is_some());
    assert_eq!(
        s.alerts[0].acknowledged_by.as_deref(),
        Some("Coordinator A")
    );
    assert!(s.ack_alert(Ulid::new(), "x", 4).is_none());
}
