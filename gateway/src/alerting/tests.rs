use super::*;
use crate::clock::Clock;

/// 2026-12-07 03:00 JST (2026-12-06 18:00 UTC).
const NIGHT: Millis = 1_796_580_000_000;

fn staffed(on_duty: u32, longest_wait_ms: u64) -> Observation {
    Observation {
        store_reachable: true,
        staffing: Some(Staffing {
            on_duty,
            waiting: u32::from(longest_wait_ms > 0),
            longest_wait_ms,
            overloaded: false,
        }),
        failing_deliveries: 0,
        live_nodes: None,
    }
}

fn raised(t: &[Transition]) -> Vec<AlertKind> {
    t.iter()
        .filter_map(|t| match t {
            Transition::Raised(a) => Some(a.kind),
            _ => None,
        })
        .collect()
}

fn cleared(t: &[Transition]) -> Vec<AlertKind> {
    t.iter()
        .filter_map(|t| match t {
            Transition::Cleared { kind, .. } => Some(*kind),
            _ => None,
        })
        .collect()
}

#[test]
fn the_night_hour_is_read_in_japan_time() {
    let cfg = AlertSettings::default();
    assert!(cfg.is_open(NIGHT));
    let evenings = AlertSettings {
        open_from_hour: 18,
        open_until_hour: 2,
        ..AlertSettings::default()
    };
    assert!(!evenings.is_open(NIGHT), "03:00 JST is after 02:00");
    assert!(evenings.is_open(NIGHT - 2 * 3_600_000), "01:00 JST");
    assert!(evenings.is_open(NIGHT + 15 * 3_600_000), "18:00 JST");
    assert!(!evenings.is_open(NIGHT + 14 * 3_600_000), "17:00 JST");
}

#[test]
fn an_empty_night_is_raised_once_per_episode_and_cleared_when_someone_comes_on_duty() {
    let cfg = AlertSettings::default();
    let clock = Clock::manual(NIGHT);
    let mut c = Conditions::default();
    let t = c.evaluate(&cfg, &staffed(0, 0), clock.now_ms());
    assert_eq!(raised(&t), vec![AlertKind::NobodyOnDuty]);
    let since = clock.now_ms();
    for _ in 0..100 {
        clock.advance(2_000);
        assert!(
            c.evaluate(&cfg, &staffed(0, 0), clock.now_ms()).is_empty(),
            "no storm"
        );
    }
    assert_eq!(c.active()[0].since, since, "the episode keeps its start");
    assert_eq!(c.active()[0].severity, Severity::Critical);

    // One comes on duty: the empty night ends, a thin one begins.
    clock.advance(2_000);
    let t = c.evaluate(&cfg, &staffed(1, 0), clock.now_ms());
    assert_eq!(cleared(&t), vec![AlertKind::NobodyOnDuty]);
    assert_eq!(raised(&t), vec![AlertKind::FewOnDuty]);
    let few = &c.active()[0];
    assert_eq!((few.value, few.threshold), (1, Some(2)));

    clock.advance(2_000);
    let t = c.evaluate(&cfg, &staffed(2, 0), clock.now_ms());
    assert_eq!(cleared(&t), vec![AlertKind::FewOnDuty]);
    assert!(c.active().is_empty());

    // A new episode is a new alert.
    clock.advance(2_000);
    let t = c.evaluate(&cfg, &staffed(0, 0), clock.now_ms());
    assert_eq!(raised(&t), vec![AlertKind::NobodyOnDuty]);
    assert_eq!(c.active()[0].since, clock.now_ms());
}

#[test]
fn staffing_is_not_alerted_while_the_service_is_closed() {
    let cfg = AlertSettings {
        open_from_hour: 18,
        open_until_hour: 2,
        ..AlertSettings::default()
    };
    let mut c = Conditions::default();
    assert!(c.evaluate(&cfg, &staffed(0, 0), NIGHT).is_empty());
    // Open again at 18:00: raised then.
    let t = c.evaluate(&cfg, &staffed(0, 0), NIGHT + 15 * 3_600_000);
    assert_eq!(raised(&t), vec![AlertKind::NobodyOnDuty]);
    // Closing time clears it.
    let t = c.evaluate(&cfg, &staffed(0, 0), NIGHT + 24 * 3_600_000);
    assert_eq!(cleared(&t), vec![AlertKind::NobodyOnDuty]);
}

#[test]
fn a_long_wait_is_raised_past_the_threshold_with_counts_only_and_cleared_when_answered() {
    let cfg = AlertSettings {
        long_wait_ms: 60_000,
        ..AlertSettings::default()
    };
    let mut c = Conditions::default();
    assert!(c.evaluate(&cfg, &staffed(3, 60_000), NIGHT).is_empty());
    let t = c.evaluate(&cfg, &staffed(3, 61_000), NIGHT + 1_000);
    assert_eq!(raised(&t), vec![AlertKind::LongWait]);
    assert!(c
        .evaluate(&cfg, &staffed(3, 90_000), NIGHT + 30_000)
        .is_empty());
    let a = &c.active()[0];
    assert_eq!(
        (a.value, a.threshold),
        (90, Some(60)),
        "refreshed, not raised again"
    );
    let json = serde_json::to_value(a).unwrap();
    assert_eq!(
        json.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["kind", "severity", "since", "threshold", "value"],
        "nothing but kind, severity, start and counts"
    );
    let t = c.evaluate(&cfg, &staffed(3, 0), NIGHT + 31_000);
    assert_eq!(cleared(&t), vec![AlertKind::LongWait]);
}

#[test]
fn an_unreadable_store_keeps_staffing_as_it_was_and_raises_its_own_alert() {
    let cfg = AlertSettings::default();
    let mut c = Conditions::default();
    c.evaluate(&cfg, &staffed(1, 0), NIGHT);
    let down = Observation {
        store_reachable: false,
        staffing: None,
        failing_deliveries: 2,
        live_nodes: None,
    };
    let t = c.evaluate(&cfg, &down, NIGHT + 2_000);
    assert_eq!(
        raised(&t),
        vec![AlertKind::StoreUnreachable, AlertKind::DeliveryFailing]
    );
    assert!(
        cleared(&t).is_empty(),
        "few_on_duty not cleared by not knowing"
    );
    let kinds: Vec<_> = c.active().iter().map(|a| a.kind).collect();
    assert_eq!(kinds[0], AlertKind::StoreUnreachable, "most severe first");
    let t = c.evaluate(&cfg, &staffed(1, 0), NIGHT + 4_000);
    assert_eq!(
        cleared(&t),
        vec![AlertKind::StoreUnreachable, AlertKind::DeliveryFailing]
    );
}

fn with_nodes(live: Option<u32>) -> Observation {
    Observation {
        live_nodes: live,
        ..staffed(2, 0)
    }
}

#[test]
fn a_node_missing_is_an_alert_only_after_the_grace_and_clears_when_one_is_back() {
    let cfg = AlertSettings {
        expected_nodes: 3,
        node_down_after_ms: 20_000,
        ..AlertSettings::default()
    };
    let mut c = Conditions::default();
    assert!(raised(&c.evaluate(&cfg, &with_nodes(Some(3)), NIGHT)).is_empty());
    // One node stops: not yet (a rolling restart's node comes back within the grace).
    assert!(raised(&c.evaluate(&cfg, &with_nodes(Some(2)), NIGHT + 2_000)).is_empty());
    assert!(raised(&c.evaluate(&cfg, &with_nodes(Some(2)), NIGHT + 21_000)).is_empty());
    let t = c.evaluate(&cfg, &with_nodes(Some(2)), NIGHT + 22_000);
    assert_eq!(raised(&t), vec![AlertKind::NodeDown]);
    let a = c
        .active()
        .into_iter()
        .find(|a| a.kind == AlertKind::NodeDown)
        .unwrap();
    assert_eq!((a.value, a.threshold), (2, Some(3)));
    assert_eq!(a.severity, Severity::Warning);
    // An unreadable store says nothing of the nodes: the alert stays.
    assert!(cleared(&c.evaluate(&cfg, &with_nodes(None), NIGHT + 24_000)).is_empty());
    let t = c.evaluate(&cfg, &with_nodes(Some(3)), NIGHT + 26_000);
    assert_eq!(cleared(&t), vec![AlertKind::NodeDown]);
}

#[test]
fn a_node_back_within_the_grace_raises_nothing_and_starts_the_grace_again() {
    let cfg = AlertSettings {
        expected_nodes: 3,
        node_down_after_ms: 20_000,
        ..AlertSettings::default()
    };
    let mut c = Conditions::default();
    c.evaluate(&cfg, &with_nodes(Some(2)), NIGHT);
    c.evaluate(&cfg, &with_nodes(Some(3)), NIGHT + 15_000);
    assert!(raised(&c.evaluate(&cfg, &with_nodes(Some(2)), NIGHT + 16_000)).is_empty());
    assert!(raised(&c.evaluate(&cfg, &with_nodes(Some(2)), NIGHT + 30_000)).is_empty());
    assert_eq!(
        raised(&c.evaluate(&cfg, &with_nodes(Some(2)), NIGHT + 36_000)),
        vec![AlertKind::NodeDown]
    );
}

#[test]
fn nodes_are_not_counted_when_no_number_is_expected() {
    let cfg = AlertSettings::default();
    let mut c = Conditions::default();
    c.evaluate(&cfg, &with_nodes(Some(1)), NIGHT);
    assert!(raised(&c.evaluate(&cfg, &with_nodes(Some(1)), NIGHT + 3_600_000)).is_empty());
}
