//! Overloaded mode: a coordinator switches it; waiting people are told (with their position)
//! and the coordinator view shows it.

use serde_json::{json, Value};
use tsunagu::auth::Role;

use crate::helpers::*;

async fn switch(app: &TestApp, cookie: &str, on: bool) -> reqwest::Response {
    app.post_as(cookie, "/api/service/overloaded", json!({ "on": on }))
        .await
}

async fn dashboard(app: &TestApp, cookie: &str) -> Value {
    app.get_json_as(cookie, "/api/dashboard").await
}

#[tokio::test]
async fn a_coordinator_switches_overloaded_mode_and_waiting_people_are_told() {
    let app = spawn_app().await;
    let (_, coord) = app.session("kaori", Role::Coordinator, None).await;
    let (_, operator) = app.session("sakura", Role::Operator, Some(2)).await;
    let mut v = app.visitor("ja").await;
    let first = v.client.expect_type("queue").await;
    assert_eq!(first["overloaded"], false);
    assert_eq!(dashboard(&app, &coord).await["overloaded"], false);

    // Operators may not switch it; nor may anyone from another origin or without a session.
    assert_eq!(switch(&app, &operator, true).await.status(), 403);
    let r = app
        .http()
        .post(format!("{}/api/service/overloaded", app.base))
        .header("cookie", &coord)
        .header("origin", "https://evil.example")
        .json(&json!({ "on": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = app
        .http()
        .post(format!("{}/api/service/overloaded", app.base))
        .header("origin", &app.base)
        .json(&json!({ "on": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(!app.state.engine.is_overloaded());

    let r = switch(&app, &coord, true).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["overloaded"], true);
    assert!(app.state.engine.is_overloaded());
    let q = v
        .client
        .expect("queue, overloaded", |f| {
            f["type"] == "queue" && f["overloaded"] == true
        })
        .await;
    assert_eq!(q["position"], 1);
    assert_eq!(dashboard(&app, &coord).await["overloaded"], true);

    // Someone arriving now is told at once.
    let mut late = app.visitor("ja").await;
    let q = late.client.expect_type("queue").await;
    assert_eq!(q["overloaded"], true);
    assert_eq!(q["position"], 2);

    let r = switch(&app, &coord, false).await;
    assert_eq!(r.status(), 200);
    v.client
        .expect("queue, no longer overloaded", |f| {
            f["type"] == "queue" && f["overloaded"] == false
        })
        .await;
    assert_eq!(dashboard(&app, &coord).await["overloaded"], false);

    // People keep waiting and are served as usual.
    let mut op = app.operator("kai", 2, false).await;
    assert_eq!(op.take().await, v.conversation);
    app.stop().await;
}

#[tokio::test]
async fn admins_may_switch_overloaded_mode_too() {
    let app = spawn_app().await;
    let (_, admin) = app.session("root", Role::Admin, None).await;
    assert_eq!(switch(&app, &admin, true).await.status(), 200);
    assert!(app.state.engine.is_overloaded());
    assert_eq!(switch(&app, &admin, false).await.status(), 200);
    assert!(!app.state.engine.is_overloaded());
    app.stop().await;
}
