//! An emergency flag reaches the first person on call by e-mail and webhook, carrying no
//! content; the e-mail's acknowledgement link works once, and not after it expires.

use serde_json::Value;

use crate::harness::*;
use crate::smtp::{parse_mail, SmtpSink};

/// Whether `text` carries anything of the conversation or the person.
fn leaks(text: &str) -> bool {
    text.contains(CANARY) || text.contains("canary") || text.contains("Uf") || text.contains("+81")
}

/// The acknowledgement link in an e-mail's text.
fn ack_link(text: &str) -> String {
    text.split_whitespace()
        .find(|w| w.contains("/api/alerts/ack/"))
        .expect("an acknowledgement link")
        .to_owned()
}

#[tokio::test]
async fn a_flag_sends_the_first_person_on_call_an_email_in_japanese_and_english_without_content() {
    let w = world(2).await;
    w.rota_all_week().await;
    w.channels(0, Some("slack")).await;
    w.channels(1, Some("teams")).await;
    let _op = w.flag("sakura").await;
    let mails = w.smtp.wait_for(1).await;
    let m = parse_mail(&mails[0]);
    assert_eq!(m["to"], "oncall0@helpline.example");
    assert_eq!(
        SmtpSink::envelope(&mails[0])["rcpt_tos"][0],
        "oncall0@helpline.example"
    );
    let subject = m["subject"].as_str().unwrap();
    assert!(
        subject.contains("緊急フラグ") && subject.contains("Emergency flag"),
        "{subject}"
    );
    assert_eq!(m["content_type"], "text/plain");
    let text = m["text"].as_str().unwrap();
    for needle in [
        "分類: self_harm",
        "Category: self_harm",
        "待機中の相談者",
        "People waiting",
        "/coordinator",
    ] {
        assert!(text.contains(needle), "{needle} in {text}");
    }
    let raw = std::fs::read_to_string(&mails[0]).unwrap();
    assert!(!leaks(text) && !leaks(&raw), "no content in the e-mail");
    // The Slack webhook of the same person, signed.
    let hooks = w.hooks.wait_for(1).await;
    assert_eq!(hooks[0].path, "/oncall0");
    assert_eq!(hooks[0].signature_ok, Some(true));
    assert_eq!(
        hooks[0].alert_id,
        w.alerts().await[0]["id"].as_str().unwrap()
    );
    assert!(hooks[0].body["text"]
        .as_str()
        .unwrap()
        .contains("Emergency flag"));
    assert!(!leaks(&hooks[0].raw));
    // Only the first person: nobody else yet.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(w.smtp.messages().len(), 1);
    assert_eq!(w.hooks.got().len(), 1);
    // The trail: raised, each attempt by channel.
    let audit = w.audit().await;
    let actions: Vec<(&str, Option<&str>)> = audit
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["channel"].as_str()))
        .collect();
    assert!(actions.contains(&("alert_raised", None)), "{actions:?}");
    assert!(
        actions.contains(&("delivery_attempt", Some("email"))),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("delivery_attempt", Some("webhook"))),
        "{actions:?}"
    );
    let all = serde_json::to_string(&audit).unwrap();
    assert!(
        !leaks(&all) && !all.contains("@helpline.example"),
        "no content or address in the trail"
    );
    w.app.stop().await;
}

#[tokio::test]
async fn the_acknowledgement_link_shows_a_page_acknowledges_once_and_is_then_refused() {
    let w = world(2).await;
    w.rota_all_week().await;
    w.channels(0, None).await;
    let _op = w.flag("sakura").await;
    let mails = w.smtp.wait_for(1).await;
    let text = parse_mail(&mails[0])["text"].as_str().unwrap().to_owned();
    let link = ack_link(&text);
    assert!(link.starts_with(&w.app.base), "{link}");
    let http = reqwest::Client::new();
    // A GET (a link prefetcher, or the person opening it) only shows the confirmation.
    for _ in 0..2 {
        let page = http.get(&link).send().await.unwrap();
        assert_eq!(page.status(), 200);
        assert!(page
            .text()
            .await
            .unwrap()
            .contains("<form method=\"post\">"));
    }
    assert!(
        w.alerts().await[0]["acknowledged_at"].is_null(),
        "a GET acknowledges nothing"
    );
    let ok = http.post(&link).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.unwrap().contains("Acknowledged"));
    let a = &w.alerts().await[0];
    assert_eq!(a["acknowledged_by"], "Op oncall0");
    assert_eq!(a["acknowledged_channel"], "email_link");
    // The coordinator view's alert is acknowledged too: one acknowledgement.
    let dash = w.app.get_json_as(&w.coord, "/api/dashboard").await;
    let shown: Vec<&Value> = dash["alerts"].as_array().unwrap().iter().collect();
    assert!(
        shown
            .iter()
            .any(|s| s["id"] == a["id"] && s["acknowledged_by"] == "Op oncall0"),
        "{dash}"
    );
    // Used: refused, by GET and POST.
    assert_eq!(http.post(&link).send().await.unwrap().status(), 410);
    assert_eq!(http.get(&link).send().await.unwrap().status(), 410);
    let audit = w.audit().await;
    assert!(audit
        .iter()
        .any(|e| e["action"] == "alert_acknowledged" && e["channel"] == "email_link"));
    // Acknowledged: the alert does not escalate.
    w.advance(ACK_TIMEOUT_MS * 3).await;
    assert_eq!(w.smtp.messages().len(), 1);
    w.app.stop().await;
}

#[tokio::test]
async fn an_expired_acknowledgement_link_is_refused() {
    let w = world(1).await;
    w.rota_all_week().await;
    w.channels(0, None).await;
    let _op = w.flag("sakura").await;
    let mails = w.smtp.wait_for(1).await;
    let link = ack_link(parse_mail(&mails[0])["text"].as_str().unwrap());
    w.advance(24 * 3_600_000 + 1).await;
    let http = reqwest::Client::new();
    assert_eq!(http.get(&link).send().await.unwrap().status(), 410);
    assert_eq!(http.post(&link).send().await.unwrap().status(), 410);
    // (The coordinator's session has expired by now: read the database.)
    let db = w.app.state.engine.oncall.as_ref().unwrap().db();
    assert_eq!(db.recent_alerts(1).await.unwrap()[0].acknowledged_at, None);
    w.app.stop().await;
}

#[tokio::test]
async fn a_failing_webhook_is_retried_with_backoff_and_a_teams_payload_is_an_adaptive_card() {
    let w = world(1).await;
    w.rota_all_week().await;
    w.channels(0, Some("teams")).await;
    w.hooks.answer(&[500, 503]);
    let _op = w.flag("sakura").await;
    w.wait_attempts("webhook", 1).await;
    // The second attempt waits for the backoff (1 s on the app's clock), the third for 2 s.
    w.advance(500).await;
    assert_eq!(w.hooks.got().len(), 1, "not before the backoff");
    w.advance(600).await;
    w.hooks.wait_for(2).await;
    w.wait_attempts("webhook", 2).await;
    w.advance(2_100).await;
    let got = w.hooks.wait_for(3).await;
    assert!(got.iter().all(|d| d.signature_ok == Some(true)));
    assert!(
        got.iter().all(|d| d.delivery_id == got[0].delivery_id),
        "one delivery, retried"
    );
    let card = &got[2].body;
    assert_eq!(card["type"], "message");
    assert_eq!(
        card["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(card["attachments"][0]["content"]["type"], "AdaptiveCard");
    let attempts: Vec<String> = w
        .audit()
        .await
        .iter()
        .filter(|e| e["action"] == "delivery_attempt" && e["channel"] == "webhook")
        .map(|e| e["detail"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert!(
        attempts[0].contains("status 500") && attempts[2].contains("sent"),
        "{attempts:?}"
    );
    w.app.stop().await;
}

#[tokio::test]
async fn with_starttls_required_the_email_goes_over_tls_to_a_server_that_requires_it() {
    let dir = std::env::temp_dir().join(format!("tsunagu-smtp-tls-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = params.self_signed(&key).unwrap();
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let ca = cert_file.clone();
    let w = world_with(1, Some((&cert_file, &key_file)), move |s| {
        s.alerts.delivery.smtp.starttls = tsunagu::alerting::StartTls::Required;
        s.alerts.delivery.smtp.ca_file = Some(ca);
    })
    .await;
    w.rota_all_week().await;
    w.channels(0, None).await;
    let _op = w.flag("sakura").await;
    let mails = w.smtp.wait_for(1).await;
    assert_eq!(
        SmtpSink::envelope(&mails[0])["tls"],
        true,
        "sent after STARTTLS"
    );
    assert_eq!(parse_mail(&mails[0])["to"], "oncall0@helpline.example");
    w.app.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
