//! The on-call API: coordinators and admins only, checked input, "on call now" from the
//! weekly schedule and overrides, every change in the audit trail.

use serde_json::json;
use tsunagu::auth::Role;

use crate::harness::*;

#[tokio::test]
async fn on_call_now_follows_the_schedule_and_an_override_comes_first() {
    let w = world(2).await;
    let (a, b) = (&w.people[0].0, &w.people[1].0);
    // Monday 12:00 JST: a until 13:00, b from 13:00.
    let r = w
        .send(
            reqwest::Method::PUT,
            "/api/oncall/schedule",
            json!({"ranges": [
                {"account": a, "weekday": 0, "start_minute": 0, "end_minute": 780, "position": 0},
                {"account": b, "weekday": 0, "start_minute": 780, "end_minute": 1440, "position": 1},
            ]}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let now = |v: &serde_json::Value| {
        v["on_call"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["account"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let v = w.app.get_json_as(&w.coord, "/api/oncall").await;
    assert_eq!(now(&v), [a.as_str()]);
    assert_eq!(v["on_call"][0]["name"], "Op oncall0");
    w.clock.advance(3_600_000);
    assert_eq!(
        now(&w.app.get_json_as(&w.coord, "/api/oncall").await),
        [b.as_str()]
    );
    // b is covered by a for the next hour.
    let t = w.clock.now_ms();
    let r = w
        .send(
            reqwest::Method::POST,
            "/api/oncall/overrides",
            json!({"account": a, "starts_at": t, "ends_at": t + 3_600_000}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        now(&w.app.get_json_as(&w.coord, "/api/oncall").await),
        [a.as_str(), b.as_str()]
    );
    let r = w
        .send(
            reqwest::Method::DELETE,
            &format!("/api/oncall/overrides/{id}"),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        now(&w.app.get_json_as(&w.coord, "/api/oncall").await),
        [b.as_str()]
    );
    let actions: Vec<String> = w
        .audit()
        .await
        .iter()
        .filter(|e| e["actor"] == "Op coord")
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        actions,
        [
            "rota_schedule_set",
            "rota_override_added",
            "rota_override_deleted"
        ]
    );
    w.app.stop().await;
}

#[tokio::test]
async fn the_rota_is_for_coordinators_and_admins_and_bad_input_is_refused() {
    let w = world(1).await;
    let (_, op) = w.app.session("hana", Role::Operator, Some(1)).await;
    assert_eq!(w.app.get_as(&op, "/api/oncall").await.status(), 403);
    let as_op = w
        .app
        .http()
        .put(format!("{}/api/oncall/schedule", w.app.base))
        .header("cookie", &op)
        .header("origin", &w.app.base)
        .json(&json!({"ranges": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(as_op.status(), 403);
    let id = &w.people[0].0;
    let bad = [
        (
            "/api/oncall/schedule",
            json!({"ranges": [{"account": id, "weekday": 7, "start_minute": 0, "end_minute": 60}]}),
        ),
        (
            "/api/oncall/schedule",
            json!({"ranges": [{"account": id, "weekday": 1, "start_minute": 60, "end_minute": 60}]}),
        ),
        (
            "/api/oncall/schedule",
            json!({"ranges": [{"account": ulid::Ulid::new().to_string(), "weekday": 1, "start_minute": 0, "end_minute": 60}]}),
        ),
        (
            &format!("/api/oncall/channels/{id}") as &str,
            json!({"email": "not an address"}),
        ),
        (
            &format!("/api/oncall/channels/{id}"),
            json!({"webhook_url": "ftp://x.example/"}),
        ),
        (
            &format!("/api/oncall/channels/{id}"),
            json!({"webhook_url": "https://x.example/", "webhook_format": "irc"}),
        ),
        (
            &format!("/api/oncall/channels/{id}"),
            json!({"webhook_url": "https://x.example/", "webhook_secret_ref": "unknown"}),
        ),
    ];
    for (path, body) in bad {
        let r = w.send(reqwest::Method::PUT, path, body.clone()).await;
        assert_eq!(r.status(), 400, "{path} {body}");
    }
    // Without the console's origin, a change is refused.
    let no_origin = w
        .app
        .http()
        .put(format!("{}/api/oncall/schedule", w.app.base))
        .header("cookie", &w.coord)
        .json(&json!({"ranges": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_origin.status(), 403);
    w.app.stop().await;
}
