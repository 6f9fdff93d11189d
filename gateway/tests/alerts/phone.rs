//! An emergency flag calls the coordinator on call through the telephony provider: the call's
//! TwiML speaks the alert in Japanese and gathers one key, never records; the key 1, posted
//! signed as the provider does, acknowledges the alert (audited as by phone), once.

use serde_json::{json, Value};

use crate::pagers::*;

const COORDINATOR_PHONE: &str = "+819012345678";

fn find<'a>(verbs: &'a [Value], name: &str) -> Vec<&'a Value> {
    let mut out = Vec::new();
    for v in verbs {
        if v["verb"] == name {
            out.push(v);
        }
        if let Some(c) = v["children"].as_array() {
            out.extend(find(c, name));
        }
    }
    out
}

#[tokio::test]
async fn a_flag_calls_the_coordinator_and_the_key_one_acknowledges_the_alert() {
    let p = paged(1, |_| {}).await;
    p.w.rota_all_week().await;
    let r =
        p.w.send(
            reqwest::Method::PUT,
            &format!("/api/oncall/channels/{}", p.w.people[0].0),
            json!({"phone": COORDINATOR_PHONE}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let bad =
        p.w.send(
            reqwest::Method::PUT,
            &format!("/api/oncall/channels/{}", p.w.people[0].0),
            json!({"phone": "090-1234-5678"}),
        )
        .await;
    assert_eq!(bad.status(), 400, "E.164 only");

    let _op = p.w.flag("sakura").await;
    p.phone
        .wait_for("the alert call", |f| !f.created().is_empty())
        .await;
    let call = p.phone.created()[0].clone();
    assert_eq!(call.to, COORDINATOR_PHONE);
    assert_eq!(call.from, HELPLINE);
    assert!(
        call.url
            .starts_with(&format!("{}/api/alerts/call/", p.w.app.base)),
        "{}",
        call.url
    );

    // An unsigned fetch is refused; the provider's signed one gets the TwiML.
    let unsigned = p
        .http
        .post(&call.url)
        .form(&[("CallSid", "CA1")])
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 403);
    let r = p
        .provider_post(
            &call.url,
            &[("CallSid", "CA1"), ("CallStatus", "in-progress")],
        )
        .await;
    assert_eq!(r.status(), 200);
    let xml = r.text().await.unwrap();
    let verbs = p.verbs(&xml).await;
    assert!(find(&verbs, "Record").is_empty(), "no recording: {xml}");
    let says = find(&verbs, "Say");
    assert!(
        says.iter().all(|s| s["attrs"]["language"] == "ja-JP"),
        "{xml}"
    );
    assert!(
        says[0]["text"].as_str().unwrap().contains("緊急フラグ"),
        "{xml}"
    );
    assert!(
        says[0]["text"].as_str().unwrap().contains("自殺・自傷"),
        "{xml}"
    );
    assert!(!xml.contains(crate::harness::CANARY) && !xml.contains("canary"));
    let gathers = find(&verbs, "Gather");
    assert!(!gathers.is_empty(), "{xml}");
    assert_eq!(gathers[0]["attrs"]["numDigits"], "1");
    let action = gathers[0]["attrs"]["action"].as_str().unwrap().to_owned();

    // Another key: the alert again, nothing acknowledged.
    let r = p
        .provider_post(&action, &[("CallSid", "CA1"), ("Digits", "2")])
        .await;
    assert!(r.text().await.unwrap().contains("<Redirect"));
    assert!(p.w.alerts().await[0]["acknowledged_at"].is_null());
    // A forged key press is refused.
    let forged = p
        .http
        .post(&action)
        .form(&[("Digits", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    // The key 1: acknowledged, by phone.
    let r = p
        .provider_post(&action, &[("CallSid", "CA1"), ("Digits", "1")])
        .await;
    let done = r.text().await.unwrap();
    assert!(done.contains("確認しました"), "{done}");
    let alert = &p.w.alerts().await[0];
    assert_eq!(alert["acknowledged_channel"], "phone");
    assert_eq!(alert["acknowledged_by"], "Op oncall0");
    let audit = p.w.audit().await;
    assert!(audit
        .iter()
        .any(|e| e["action"] == "alert_acknowledged" && e["channel"] == "phone"));
    assert!(audit.iter().any(|e| e["action"] == "delivery_attempt"
        && e["channel"] == "phone"
        && e["detail"] == "sent"));
    // Single use.
    let r = p
        .provider_post(&action, &[("CallSid", "CA1"), ("Digits", "1")])
        .await;
    assert!(r.text().await.unwrap().contains("期限切れ"));
    assert!(p.phone.problems().is_empty(), "{:?}", p.phone.problems());
    assert!(
        !logs().contains(COORDINATOR_PHONE),
        "the number is in a log line"
    );
    p.w.app.stop().await;
}

#[tokio::test]
async fn an_unanswered_alert_escalates_to_the_next_persons_phone() {
    let p = paged(2, |_| {}).await;
    p.w.rota_all_week().await;
    p.w.channels(0, None).await;
    let second = "+819087654321";
    let r =
        p.w.send(
            reqwest::Method::PUT,
            &format!("/api/oncall/channels/{}", p.w.people[1].0),
            json!({"phone": second, "line": false}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let _op = p.w.flag("sakura").await;
    p.w.smtp.wait_for(1).await;
    assert!(
        p.phone.created().is_empty(),
        "the first person has no phone"
    );
    p.w.advance(crate::harness::ACK_TIMEOUT_MS + 1).await;
    p.phone
        .wait_for("the escalated call", |f| !f.created().is_empty())
        .await;
    assert_eq!(p.phone.created()[0].to, second);
    let audit = p.w.audit().await;
    assert!(audit.iter().any(|e| e["action"] == "alert_escalated"));
    p.w.app.stop().await;
}
