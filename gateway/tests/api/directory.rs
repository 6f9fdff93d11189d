//! The referral directory, phrases and runtime settings over HTTP (issue 20, items 2, 3, 5):
//! operators search, the widget reads the closing helplines, admins change everything, each
//! change audited; nobody else may.

use serde_json::{json, Value};
use tsunagu::auth::Role;

use crate::helpers::*;

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn only_admins_may_change_the_directory() {
    let app = spawn_app().await;
    let (_, operator) = app.session("sakura", Role::Operator, Some(2)).await;
    let coordinator = app.coordinator().await;
    let admin = app.admin().await;
    for cookie in [&operator, &coordinator] {
        assert_eq!(
            app.get_as(cookie, "/api/admin/directory").await.status(),
            403
        );
        let r = app
            .put_as(cookie, "/api/admin/directory/yorisoi", json!({"name": "x"}))
            .await;
        assert_eq!(r.status(), 403);
        assert_eq!(
            app.get_as(cookie, "/api/admin/settings").await.status(),
            403
        );
    }
    assert_eq!(app.get("/api/admin/directory").await.status(), 401);
    // From another origin, even an admin's change is refused.
    let r = app
        .http()
        .put(format!("{}/api/admin/directory/yorisoi", app.base))
        .header("cookie", &admin)
        .header("origin", "https://evil.example")
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let all = app.get_json_as(&admin, "/api/admin/directory").await;
    assert!(names(&all).contains(&"よりそいホットライン".to_owned()));
    assert!(all
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["needs_verification"] == true));
    app.stop().await;
}

#[tokio::test]
async fn an_admins_edit_reaches_operators_and_the_widget_and_is_audited() {
    let app = spawn_app().await;
    let (_, operator) = app.session("sakura", Role::Operator, Some(2)).await;
    let entry = app
        .admin_edits_entry("childline", "編集したチャイルドライン", "0120-99-7777")
        .await;
    assert_eq!(entry["needs_verification"], false);
    assert_eq!(entry["open_now"], true);

    // The operator's search by topic and region, with "open now".
    let found = app
        .get_json_as(
            &operator,
            "/api/directory?topic=%E3%83%86%E3%82%B9%E3%83%88&region=%E6%9D%B1%E4%BA%AC",
        )
        .await;
    assert_eq!(names(&found), ["編集したチャイルドライン"]);
    assert_eq!(found[0]["open_now"], true);
    let dv = app.get_json_as(&operator, "/api/directory?topic=DV").await;
    assert!(names(&dv).contains(&"DV相談＋（プラス）".to_owned()));
    assert!(!names(&dv).contains(&"編集したチャイルドライン".to_owned()));

    // The widget's closing helplines, without a session.
    let ja = app.get_json("/api/helplines?lang=ja").await;
    assert!(ja
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h["name"] == "編集したチャイルドライン" && h["number"] == "0120-99-7777"));

    // Audited: who, what, which entry.
    let admin = app.admin().await;
    let audit = app.get_json_as(&admin, "/api/admin/directory/audit").await;
    assert_eq!(audit[0]["subject"], "directory");
    assert_eq!(audit[0]["action"], "update");
    assert_eq!(audit[0]["target_id"], "childline");
    assert_eq!(audit[0]["actor_name"], "Op admin");
    app.stop().await;
}

#[tokio::test]
async fn invalid_input_is_refused_with_the_reason_and_changes_nothing() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let r = app
        .post_as(
            &admin,
            "/api/admin/directory",
            json!({"name": "New", "hours": "sometimes"}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid");
    assert!(
        body["detail"].as_str().unwrap().starts_with("hours:"),
        "{body}"
    );
    let r = app
        .post_as(
            &admin,
            "/api/admin/directory",
            json!({"name": "New", "colour": "red"}),
        )
        .await;
    assert_eq!(r.status(), 422, "unknown fields are refused");
    let csv = "name,phone\nGood,0120-000-000\nBad,call me\n";
    let r = app
        .post_as(&admin, "/api/admin/directory/import", json!({ "csv": csv }))
        .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("line 3: phone:"),
        "{body}"
    );
    let all = app.get_json_as(&admin, "/api/admin/directory").await;
    assert_eq!(all.as_array().unwrap().len(), 8, "nothing was added");
    app.stop().await;
}

#[tokio::test]
async fn a_csv_export_imports_back_and_a_new_row_is_added() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let r = app.get_as(&admin, "/api/admin/directory.csv").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let mut csv = r.text().await.unwrap();
    assert!(csv.starts_with("id,name,phone,url"));
    csv.push_str(",Added line,0120-555-666,,,daily 22:00-06:00,,大阪府,夜,ja,,yes,no,no,\n");
    let r = app
        .post_as(&admin, "/api/admin/directory/import", json!({ "csv": csv }))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["imported"], 9);
    let all = app.get_json_as(&admin, "/api/admin/directory").await;
    assert_eq!(all.as_array().unwrap().len(), 9);
    let added = all
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "Added line")
        .unwrap();
    assert_eq!(added["region"], "大阪府");
    assert_eq!(added["hours"], "daily 22:00-06:00");
    // Phrases too.
    let r = app.get_as(&admin, "/api/admin/phrases.csv").await;
    let phrases = r.text().await.unwrap();
    let r = app
        .post_as(
            &admin,
            "/api/admin/phrases/import",
            json!({ "csv": phrases }),
        )
        .await;
    assert_eq!(r.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn hidden_phrases_and_entries_are_not_shown_to_operators() {
    let app = spawn_app().await;
    let (_, operator) = app.session("sakura", Role::Operator, Some(2)).await;
    let admin = app.admin().await;
    let phrases = app.get_json_as(&operator, "/api/phrases").await;
    let first = phrases[0].clone();
    let r = app
        .put_as(
            &admin,
            &format!("/api/admin/phrases/{}", first["id"].as_str().unwrap()),
            json!({"lang": first["lang"], "title": first["title"], "text": first["text"], "hidden": true}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let after = app.get_json_as(&operator, "/api/phrases").await;
    assert!(!after
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["id"] == first["id"]));
    let all = app.get_json_as(&admin, "/api/admin/phrases").await;
    assert!(all
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["id"] == first["id"]));
    // Reordered: the admins' order is the operators' order.
    let mut ids: Vec<Value> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].clone())
        .collect();
    ids.reverse();
    let r = app
        .post_as(&admin, "/api/admin/phrases/order", json!({ "ids": ids }))
        .await;
    assert_eq!(r.status(), 204);
    let all = app.get_json_as(&admin, "/api/admin/phrases").await;
    assert_eq!(all[0]["id"], ids[0]);
    app.stop().await;
}

#[tokio::test]
async fn runtime_settings_switch_overloaded_mode_and_the_thin_staff_threshold() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let s = app.get_json_as(&admin, "/api/admin/settings").await;
    assert_eq!(s["overloaded"], false);
    assert_eq!(s["min_on_duty"], 2);
    let r = app
        .put_as(
            &admin,
            "/api/admin/settings",
            json!({"overloaded": true, "min_on_duty": 3}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(app.state.engine.is_overloaded());
    assert_eq!(app.state.engine.min_on_duty(), 3);
    let r = app
        .put_as(&admin, "/api/admin/settings", json!({"min_on_duty": 1000}))
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(app.state.engine.min_on_duty(), 3);
    // A coordinator's switch is recorded in the database too (what other nodes read).
    let coordinator = app.coordinator().await;
    let r = app
        .post_as(
            &coordinator,
            "/api/service/overloaded",
            json!({"on": false}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(!app.state.directory.runtime().overloaded);
    let audit = app.get_json_as(&admin, "/api/admin/directory/audit").await;
    assert_eq!(audit[0]["subject"], "setting");
    assert_eq!(audit[0]["detail"], "false");
    assert_eq!(audit[0]["actor_name"], "Op coord");
    app.stop().await;
}

#[tokio::test]
async fn entries_and_phrases_are_each_added_exported_under_their_own_name_and_reordered() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let lists = [
        (
            "directory",
            json!({"name": "Added line", "phone": "0120-555-666"}),
        ),
        (
            "phrases",
            json!({"lang": "ja", "title": "Added", "text": "ゆっくりで大丈夫です"}),
        ),
    ];
    for (list, input) in lists {
        let base = format!("/api/admin/{list}");
        let r = app.post_as(&admin, &base, input).await;
        assert_eq!(r.status(), 201, "{list}");
        let added = r.json::<Value>().await.unwrap();
        let r = app.get_as(&admin, &format!("{base}.csv")).await;
        assert_eq!(
            r.headers()["content-disposition"],
            format!("attachment; filename=\"tsunagu-{list}.csv\""),
        );
        assert!(r
            .text()
            .await
            .unwrap()
            .contains(added["id"].as_str().unwrap()));
        let all = app.get_json_as(&admin, &base).await;
        let mut ids: Vec<Value> = all
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].clone())
            .collect();
        assert!(ids.contains(&added["id"]), "{list}");
        ids.reverse();
        let r = app
            .post_as(&admin, &format!("{base}/order"), json!({ "ids": ids }))
            .await;
        assert_eq!(r.status(), 204, "{list}");
        assert_eq!(app.get_json_as(&admin, &base).await[0]["id"], ids[0]);
    }
    app.stop().await;
}
