//! Server-side alerts across nodes (issue 21, item 2): two nodes on one Redis both see the
//! empty night, and it is announced once, not twice; and paged once: the SMTP server gets one
//! e-mail, not two (items 3 and 4).

use std::time::{Duration, Instant};

use super::node::{accounts, http, Node, COORDINATOR};
use super::redis::{temp_dir, RedisServer};
use super::serial;
use super::setup::{nodes, prefix, redis_env, with};
use super::smtp::{parse_mail, SmtpSink};

/// A metric's value on a node's `/metrics`, summed over the lines that start with `series`.
async fn metric(node: &Node, series: &str) -> f64 {
    let body = http()
        .get(format!("{}/metrics", node.base))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .unwrap();
    body.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn two_nodes_on_one_redis_both_show_an_empty_night_and_announce_it_once() {
    let _g = serial().await;
    let redis = RedisServer::start().await;
    let env = with(
        redis_env(&redis.url(), &prefix()),
        &[("TSUNAGU_ALERTS__CHECK_MS", "200")],
    );
    let ns = nodes(2, &env).await;
    // Nobody is on duty: both nodes see it within a few evaluations.
    let start = Instant::now();
    loop {
        let a = metric(&ns[0], "tsunagu_alerts_active{kind=\"nobody_on_duty\"}").await;
        let b = metric(&ns[1], "tsunagu_alerts_active{kind=\"nobody_on_duty\"}").await;
        if a == 1.0 && b == 1.0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "both nodes see the empty night"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Many evaluations later, on both nodes together: one announcement.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let series = "tsunagu_alerts_raised_total{kind=\"nobody_on_duty\"";
    let a = metric(&ns[0], series).await;
    let b = metric(&ns[1], series).await;
    assert_eq!(
        a + b,
        1.0,
        "announced once across the nodes (a: {a}, b: {b})"
    );
}

#[tokio::test]
async fn a_node_killed_is_announced_once_by_the_survivors_and_cleared_when_a_node_replaces_it() {
    let _g = serial().await;
    let redis = RedisServer::start().await;
    let env = with(
        redis_env(&redis.url(), &prefix()),
        &[
            ("TSUNAGU_ALERTS__CHECK_MS", "200"),
            ("TSUNAGU_ALERTS__EXPECTED_NODES", "2"),
            ("TSUNAGU_ALERTS__NODE_DOWN_AFTER_MS", "1000"),
        ],
    );
    let mut ns = nodes(3, &env).await;
    let down = "tsunagu_alerts_active{kind=\"node_down\"}";
    // Three alive where two are expected: no alert. Then two are killed (one would leave the
    // two expected): the survivor sees one of two alive once their heartbeats expire (6 s)
    // and the grace has passed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(metric(&ns[0], down).await, 0.0, "enough nodes: no alert");
    ns[1].kill9();
    ns[2].kill9();
    let start = Instant::now();
    while metric(&ns[0], down).await != 1.0 {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the survivor raises node_down within the heartbeat's expiry and the grace"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("node_down raised {:?} after the kill", start.elapsed());
    let raised = "tsunagu_alerts_raised_total{kind=\"node_down\"";
    assert_eq!(metric(&ns[0], raised).await, 1.0, "announced once");
    // A new node joins: back to two alive, the condition clears.
    ns.truncate(1);
    ns.extend(nodes(1, &env).await);
    let start = Instant::now();
    while metric(&ns[0], down).await != 0.0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "cleared once a second node beats"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(metric(&ns[0], raised).await, 1.0, "still announced once");
}

/// A copy of the shared accounts database (with its write-ahead log) for one test, so the rota
/// it sets up is its own.
fn database_copy() -> std::path::PathBuf {
    let from = &accounts().database;
    let dir = temp_dir("alerts-db");
    let to = dir.join("tsunagu.db");
    for ext in ["", "-wal", "-shm"] {
        let src = std::path::PathBuf::from(format!("{}{ext}", from.display()));
        if src.exists() {
            std::fs::copy(&src, format!("{}{ext}", to.display())).expect("copy the database");
        }
    }
    to
}

#[tokio::test]
async fn two_nodes_page_the_person_on_call_once_by_email() {
    let _g = serial().await;
    let redis = RedisServer::start().await;
    let smtp = SmtpSink::start(None);
    let database = database_copy();
    // The coordinator is on call all week and gets e-mail.
    {
        let db = tsunagu::db::Db::open(&tsunagu::db::DatabaseSettings {
            sqlite_path: database.display().to_string(),
            ..Default::default()
        })
        .await
        .expect("the copy opens");
        let coord = db.account_by_username(COORDINATOR).await.unwrap().unwrap();
        let audit = tsunagu::db::AlertAuditRow::system(0, "rota_schedule_set", None);
        let ranges: Vec<tsunagu::db::ScheduleRow> = (0..7)
            .map(|day| tsunagu::db::ScheduleRow {
                id: ulid::Ulid::new(),
                account_id: coord.id,
                weekday: day,
                start_minute: 0,
                end_minute: 1440,
                position: 0,
            })
            .collect();
        db.replace_oncall_schedule(&ranges, &audit).await.unwrap();
        let channels = tsunagu::db::ChannelsRow {
            account_id: coord.id,
            email: Some("coord@helpline.example".into()),
            ..Default::default()
        };
        db.set_oncall_channels(&channels, &audit).await.unwrap();
        db.close().await;
    }
    let port = smtp.port.to_string();
    let env = with(
        redis_env(&redis.url(), &prefix()),
        &[
            (
                "TSUNAGU_DATABASE__SQLITE_PATH",
                &database.display().to_string(),
            ),
            ("TSUNAGU_ALERTS__CHECK_MS", "200"),
            ("TSUNAGU_ALERTS__DISPATCH_MS", "100"),
            ("TSUNAGU_ALERTS__SMTP__HOST", "127.0.0.1"),
            ("TSUNAGU_ALERTS__SMTP__PORT", &port),
            ("TSUNAGU_ALERTS__SMTP__STARTTLS", "none"),
        ],
    );
    let _ns = nodes(2, &env).await;
    // Nobody is on duty: one e-mail about it ...
    let mails = smtp.wait_for(1).await;
    let m = parse_mail(&mails[0]);
    assert_eq!(m["to"], "coord@helpline.example");
    assert!(
        m["subject"].as_str().unwrap().contains("Nobody on duty"),
        "{m}"
    );
    // ... and, many evaluations and dispatcher passes later on both nodes, still one.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(smtp.messages().len(), 1, "one e-mail, not two");
}
