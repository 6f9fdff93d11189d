//! How long from an emergency flag to the e-mail at the SMTP server, the webhook at the
//! receiver and the LINE push at the fake Messaging API (issue 21): 100 flags, one at a time,
//! p50 and p99. A measurement, not a check:
//! `cargo test -p gateway --test alerts -- --ignored --nocapture flag_to_email`.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::pagers::paged;

fn pct(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let i = ((samples.len() - 1) as f64 * p).round() as usize;
    samples[i].as_secs_f64() * 1000.0
}

#[tokio::test]
#[ignore = "a measurement; run by hand"]
async fn flag_to_email_webhook_and_line_latency_over_100_flags() {
    let p = paged(1, |s| {
        s.limits.conversations_per_hour = 10_000;
        s.limits.operator_messages_per_minute = 10_000;
        s.limits.operator_message_burst = 10_000;
        s.limits.connections_per_address = 10_000;
        s.limits.tcp_connections_per_address = 10_000;
    })
    .await;
    let w = &p.w;
    w.rota_all_week().await;
    w.channels(0, Some("generic")).await;
    let user = p.link_line(0).await;
    let pushes = || p.line.pushed_to(&user).len();
    let mut op = w.app.operator("sakura", 200, false).await;
    let (mut to_mail, mut to_hook, mut to_line) = (Vec::new(), Vec::new(), Vec::new());
    let mut visitors = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for i in 0..100 {
        let mut v = w.app.visitor("ja").await;
        v.say("x").await;
        // A flag sends its conversation's summary again: take the next one by its new id.
        assert_eq!(op.take_next().await["type"], "ack");
        let known = seen.clone();
        let frame = op
            .client
            .expect("the next conversation", move |v| {
                v["type"] == "conversation"
                    && !known.iter().any(|k| v["conversation"]["id"] == k.as_str())
            })
            .await;
        let c = frame["conversation"]["id"].as_str().unwrap().to_owned();
        seen.push(c.clone());
        let started = Instant::now();
        let r = op
            .act("flag", &c, json!({"category":"self_harm","reason":"x"}))
            .await;
        assert_eq!(r["type"], "ack");
        let (mut mail, mut hook, mut line) = (None, None, None);
        while mail.is_none() || hook.is_none() || line.is_none() {
            if mail.is_none() && w.smtp.messages().len() > i {
                mail = Some(started.elapsed());
            }
            if hook.is_none() && w.hooks.got().len() > i {
                hook = Some(started.elapsed());
            }
            if line.is_none() && pushes() > i {
                line = Some(started.elapsed());
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "flag {i}: e-mail {mail:?}, webhook {hook:?}, LINE {line:?}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        to_mail.push(mail.unwrap());
        to_hook.push(hook.unwrap());
        to_line.push(line.unwrap());
        visitors.push(v);
    }
    println!(
        "flag -> e-mail at the SMTP server: p50 {:.1} ms, p99 {:.1} ms; flag -> webhook: p50 {:.1} ms, p99 {:.1} ms; flag -> LINE push at the fake API: p50 {:.1} ms, p99 {:.1} ms (n = 100)",
        pct(&mut to_mail, 0.5),
        pct(&mut to_mail, 0.99),
        pct(&mut to_hook, 0.5),
        pct(&mut to_hook, 0.99),
        pct(&mut to_line, 0.5),
        pct(&mut to_line, 0.99)
    );
    p.w.app.stop().await;
}
