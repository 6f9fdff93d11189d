//! An alert nobody acknowledges goes to the next person on the rota after the severity's
//! timeout, then to everyone on it; an acknowledgement from the console stops it.

use crate::harness::*;
use crate::smtp::parse_mail;

/// The recipients of the e-mails received so far, in order.
fn recipients(w: &World) -> Vec<String> {
    w.smtp
        .messages()
        .iter()
        .map(|m| parse_mail(m)["to"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn an_unacknowledged_alert_goes_to_the_next_person_after_the_delay_then_to_everyone() {
    let w = world(3).await;
    w.rota_all_week().await;
    for i in 0..3 {
        w.channels(i, None).await;
    }
    let _op = w.flag("sakura").await;
    w.smtp.wait_for(1).await;
    assert_eq!(recipients(&w), ["oncall0@helpline.example"]);
    // Just before the timeout: nobody else.
    w.advance(ACK_TIMEOUT_MS - 1).await;
    assert_eq!(w.smtp.messages().len(), 1);
    w.advance(1).await;
    w.smtp.wait_for(2).await;
    assert_eq!(recipients(&w)[1], "oncall1@helpline.example");
    // Then everyone: only the one not yet told gets a new e-mail.
    w.advance(ACK_TIMEOUT_MS).await;
    w.smtp.wait_for(3).await;
    assert_eq!(recipients(&w)[2], "oncall2@helpline.example");
    w.advance(ACK_TIMEOUT_MS * 5).await;
    assert_eq!(w.smtp.messages().len(), 3, "no further step after everyone");
    let steps: Vec<String> = w
        .audit()
        .await
        .iter()
        .filter(|e| e["action"] == "alert_escalated")
        .map(|e| e["detail"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(steps, ["level 1", "everyone (3)"]);
    w.app.stop().await;
}

#[tokio::test]
async fn an_alert_acknowledged_in_the_console_is_not_escalated() {
    let w = world(2).await;
    w.rota_all_week().await;
    w.channels(0, None).await;
    w.channels(1, None).await;
    let _op = w.flag("sakura").await;
    w.smtp.wait_for(1).await;
    let id = w.alerts().await[0]["id"].as_str().unwrap().to_owned();
    let r = w
        .send(
            reqwest::Method::POST,
            &format!("/api/alerts/{id}/ack"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let a = &w.alerts().await[0];
    assert_eq!(a["acknowledged_channel"], "console");
    assert_eq!(a["acknowledged_by"], "Op coord");
    w.advance(ACK_TIMEOUT_MS * 3).await;
    assert_eq!(w.smtp.messages().len(), 1, "nobody else paged");
    // Acknowledging again changes nothing (the first sticks).
    let again = w
        .send(
            reqwest::Method::POST,
            &format!("/api/alerts/{id}/ack"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(again.status(), 204);
    let acks = w
        .audit()
        .await
        .iter()
        .filter(|e| e["action"] == "alert_acknowledged")
        .count();
    assert_eq!(acks, 1);
    w.app.stop().await;
}
