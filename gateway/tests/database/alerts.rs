//! The conformance checks of the on-call and alert tables (migrations 0005 and 0006): what several nodes
//! must do once (claim a delivery, take an escalation step, acknowledge, use a link) is done
//! once by one of two handles, on both engines.

use tsunagu::db::{
    AckTokenRow, AlertAuditRow, AlertRow, ChannelsRow, Db, DeliveryRow, LineLinkRow, OverrideRow,
    ScheduleRow,
};
use ulid::Ulid;

use super::second_handle;

fn alert(started_at: u64, next: Option<u64>) -> AlertRow {
    AlertRow {
        id: Ulid::new(),
        kind: "emergency".into(),
        severity: "critical".into(),
        category: Some("self_harm".into()),
        value: 1,
        waiting: 4,
        started_at,
        acknowledged_at: None,
        acknowledged_by: None,
        acknowledged_name: None,
        acknowledged_channel: None,
        level: 0,
        next_escalation_at: next,
    }
}

fn delivery(alert: Ulid, account: Ulid, channel: &str, at: u64) -> DeliveryRow {
    DeliveryRow {
        id: Ulid::new(),
        alert_id: alert,
        account_id: account,
        channel: channel.into(),
        status: "pending".into(),
        attempts: 0,
        next_at: at,
        sent_at: None,
    }
}

pub async fn an_alert_is_delivered_escalated_and_acknowledged_once_across_two_handles(db: Db) {
    let other = second_handle(&db).await;
    let now = 1_700_000_000_000;
    let a = alert(now, Some(now + 60_000));
    let (first, second) = (Ulid::new(), Ulid::new());
    let d = delivery(a.id, first, "email", now);
    let raised = AlertAuditRow::system(now, "alert_raised", Some(a.id));
    db.insert_alert(&a, std::slice::from_ref(&d), &[raised])
        .await
        .unwrap();
    assert_eq!(db.alert(a.id).await.unwrap().unwrap(), a);
    assert_eq!(
        db.due_alert_deliveries(now, 10).await.unwrap(),
        vec![d.clone()]
    );
    let (x, y) = tokio::join!(
        db.claim_alert_delivery(d.id, now, 1_000),
        other.claim_alert_delivery(d.id, now, 1_000)
    );
    assert_eq!(u8::from(x.unwrap()) + u8::from(y.unwrap()), 1, "one claim");
    assert!(
        db.due_alert_deliveries(now, 10).await.unwrap().is_empty(),
        "claimed"
    );
    // Failed: due again after the backoff, then sent.
    let attempt = AlertAuditRow::system(now, "delivery_attempt", Some(a.id));
    db.finish_alert_delivery(d.id, now, false, Some(now + 500), &attempt)
        .await
        .unwrap();
    assert!(!other
        .claim_alert_delivery(d.id, now + 100, 1_000)
        .await
        .unwrap());
    assert!(other
        .claim_alert_delivery(d.id, now + 500, 1_000)
        .await
        .unwrap());
    db.finish_alert_delivery(d.id, now + 600, true, None, &attempt)
        .await
        .unwrap();
    let rows = db.alert_deliveries(a.id).await.unwrap();
    assert_eq!((rows[0].status.as_str(), rows[0].attempts), ("sent", 2));
    // The escalation step: not before it is due; then one handle takes it.
    assert!(db
        .due_escalations(now + 59_999, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(db.due_escalations(now + 60_000, 10).await.unwrap().len(), 1);
    let step = |h: &Db| {
        let d = delivery(a.id, second, "webhook", now + 60_000);
        let audit = AlertAuditRow::system(now + 60_000, "alert_escalated", Some(a.id));
        let h = h.clone();
        async move {
            h.escalate_alert(a.id, 0, now + 60_000, Some(now + 120_000), &[d], &[audit])
                .await
                .unwrap()
        }
    };
    let (x, y) = tokio::join!(step(&db), step(&other));
    assert_eq!(u8::from(x) + u8::from(y), 1, "one step");
    assert_eq!(db.alert(a.id).await.unwrap().unwrap().level, 1);
    assert_eq!(
        db.alert_deliveries(a.id).await.unwrap().len(),
        2,
        "one new delivery"
    );
    // The first acknowledgement sticks and cancels what is pending.
    let (x, y) = tokio::join!(
        db.acknowledge_alert(a.id, now + 70_000, Some(first), "A", "console"),
        other.acknowledge_alert(a.id, now + 70_001, Some(second), "B", "email_link")
    );
    assert_eq!(
        u8::from(x.unwrap()) + u8::from(y.unwrap()),
        1,
        "one acknowledgement"
    );
    let acked = db.alert(a.id).await.unwrap().unwrap();
    assert!(acked.acknowledged_at.is_some() && acked.next_escalation_at.is_none());
    let statuses: Vec<String> = db
        .alert_deliveries(a.id)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.status)
        .collect();
    assert_eq!(statuses, ["sent", "cancelled"]);
    assert!(db
        .due_escalations(now + 999_999, 10)
        .await
        .unwrap()
        .is_empty());
    let trail = db.alert_audit(Some(a.id), 100).await.unwrap();
    assert_eq!(
        trail
            .iter()
            .filter(|e| e.action == "alert_acknowledged")
            .count(),
        1
    );
    other.close().await;
}

pub async fn an_acknowledgement_link_is_used_once_and_not_after_it_expires(db: Db) {
    let other = second_handle(&db).await;
    let row = AckTokenRow {
        alert_id: Ulid::new(),
        account_id: Ulid::new(),
        channel: "email".into(),
        expires_at: 2_000,
        used_at: None,
    };
    db.insert_ack_token("hash-a", &row).await.unwrap();
    db.insert_ack_token("hash-b", &row).await.unwrap();
    assert_eq!(db.ack_token("hash-a").await.unwrap(), Some(row.clone()));
    let (x, y) = tokio::join!(
        db.use_ack_token("hash-a", 1_000),
        other.use_ack_token("hash-a", 1_000)
    );
    let used: Vec<AckTokenRow> = [x.unwrap(), y.unwrap()].into_iter().flatten().collect();
    assert_eq!(used.len(), 1, "used once");
    assert_eq!(used[0].used_at, Some(1_000));
    assert_eq!(
        db.use_ack_token("hash-b", 2_000).await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(db.use_ack_token("unknown", 0).await.unwrap(), None);
    other.close().await;
}

pub async fn the_rota_reads_back_and_the_alert_audit_is_append_only(db: Db) {
    let (a, b) = (Ulid::new(), Ulid::new());
    let ranges = vec![
        ScheduleRow {
            id: Ulid::new(),
            account_id: a,
            weekday: 0,
            start_minute: 0,
            end_minute: 1440,
            position: 1,
        },
        ScheduleRow {
            id: Ulid::new(),
            account_id: b,
            weekday: 6,
            start_minute: 1320,
            end_minute: 1440,
            position: 0,
        },
    ];
    let audit = AlertAuditRow::system(1, "rota_schedule_set", None);
    db.replace_oncall_schedule(&ranges, &audit).await.unwrap();
    let read = db.oncall_schedule().await.unwrap();
    assert_eq!(
        read,
        vec![ranges[1].clone(), ranges[0].clone()],
        "in rota order"
    );
    db.replace_oncall_schedule(&ranges[..1], &audit)
        .await
        .unwrap();
    assert_eq!(
        db.oncall_schedule().await.unwrap(),
        vec![ranges[0].clone()],
        "replaced"
    );
    let o = OverrideRow {
        id: Ulid::new(),
        account_id: b,
        starts_at: 100,
        ends_at: 200,
        created_at: 50,
    };
    db.insert_oncall_override(&o, &audit).await.unwrap();
    assert_eq!(db.oncall_overrides(150).await.unwrap(), vec![o.clone()]);
    assert!(db.oncall_overrides(200).await.unwrap().is_empty(), "ended");
    assert!(db.delete_oncall_override(o.id, &audit).await.unwrap());
    assert!(!db.delete_oncall_override(o.id, &audit).await.unwrap());
    let c = ChannelsRow {
        account_id: a,
        email: Some("a@helpline.example".into()),
        webhook_url: Some("https://hooks.example/a".into()),
        webhook_format: Some("teams".into()),
        webhook_secret_ref: Some("team".into()),
        line_enabled: false,
        phone: Some("+819012345678".into()),
        updated_at: 5,
    };
    db.set_oncall_channels(&c, &audit).await.unwrap();
    db.set_oncall_channels(&c, &audit).await.unwrap();
    assert_eq!(db.oncall_channels().await.unwrap(), vec![c.clone()]);
    assert_eq!(db.oncall_channels_of(a).await.unwrap(), Some(c));
    assert_eq!(db.oncall_channels_of(b).await.unwrap(), None);
    // Every change above is in the trail, which refuses changes and deletions.
    assert_eq!(db.alert_audit(None, 100).await.unwrap().len(), 6);
    assert!(db
        .execute_raw("UPDATE alert_audit SET action = 'x'")
        .await
        .is_err());
    assert!(db.execute_raw("DELETE FROM alert_audit").await.is_err());
    assert_eq!(db.alert_audit(None, 100).await.unwrap().len(), 6);
}

pub async fn a_line_link_code_is_used_once_and_a_link_reads_back_sealed_as_written(db: Db) {
    let other = second_handle(&db).await;
    let (a, b) = (Ulid::new(), Ulid::new());
    let audit = AlertAuditRow::system(1, "line_code_issued", None);
    for (i, code) in ["h1", "h2"].iter().enumerate() {
        assert!(db
            .insert_link_code(code, a, 1_000 + i as u64, 2_000, 2, &audit)
            .await
            .unwrap());
    }
    assert!(
        !db.insert_link_code("h3", a, 1_500, 2_500, 2, &audit)
            .await
            .unwrap(),
        "two an hour here"
    );
    let (x, y) = tokio::join!(
        db.use_link_code("h1", 1_900),
        other.use_link_code("h1", 1_900)
    );
    let used: Vec<_> = [x.unwrap(), y.unwrap()].into_iter().flatten().collect();
    assert_eq!(used, vec![a], "used by one handle only");
    assert_eq!(
        db.use_link_code("h2", 2_000).await.unwrap(),
        None,
        "expired"
    );
    let link = LineLinkRow {
        account_id: b,
        channel_id: "npo1".into(),
        sealed_user: vec![0, 255, 7, 42],
        linked_at: 3_000,
    };
    db.set_line_link(&link, &audit).await.unwrap();
    db.set_line_link(&link, &audit).await.unwrap();
    assert_eq!(other.line_link(b).await.unwrap(), Some(link));
    assert_eq!(db.line_linked_accounts().await.unwrap(), vec![b]);
    assert!(db.delete_line_link(b, &audit).await.unwrap());
    assert!(!db.delete_line_link(b, &audit).await.unwrap());
    assert_eq!(db.line_link(b).await.unwrap(), None);
}
