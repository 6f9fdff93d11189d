//! The unauthenticated acknowledgement links are rate-limited per client address, and an SMTP
//! refusal is logged and audited by its class, never with the address the server repeated.

use std::time::Duration;

use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn flooding_acknowledgement_links_from_one_address_gets_429() {
    let w = world(0).await;
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for i in 0..30 {
        let token = format!("{i:064x}");
        let url = format!("{}/api/alerts/ack/{token}", w.app.base);
        let r = if i % 2 == 0 {
            http.get(&url).send().await.unwrap()
        } else {
            http.post(&url).send().await.unwrap()
        };
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses[0], 410, "an unknown link is gone, not an error");
    assert!(statuses.contains(&429), "{statuses:?}");
    let refused = statuses.iter().position(|s| *s == 429).unwrap();
    assert!(refused >= 5, "a few tries are fine: {statuses:?}");
    w.app.stop().await;
}

#[tokio::test]
async fn an_smtp_refusal_is_logged_by_its_code_without_the_address() {
    crate::pagers::secrets();
    let w = world(1).await;
    w.rota_all_week().await;
    let address = format!("refused-{}@helpline.example", ulid::Ulid::new());
    let r = w
        .send(
            reqwest::Method::PUT,
            &format!("/api/oncall/channels/{}", w.people[0].0),
            json!({"email": address}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let _op = w.flag("sakura").await;
    w.wait_attempts("email", 1).await;
    let audit = w.audit().await;
    let attempt = audit
        .iter()
        .find(|e| e["action"] == "delivery_attempt" && e["channel"] == "email")
        .unwrap();
    assert_eq!(
        attempt["detail"], "attempt 1: smtp 550; given up",
        "{attempt}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let logs = crate::pagers::logs();
    assert!(logs.contains("smtp 550"), "the class is logged");
    assert!(!logs.contains(&address), "the address is in a log line");
    assert!(!audit.iter().any(|e| e.to_string().contains(&address)));
    w.app.stop().await;
}
