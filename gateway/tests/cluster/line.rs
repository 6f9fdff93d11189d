//! A LINE person's webhooks sent alternately to two gateway nodes on one Redis, and the node
//! that sends to LINE killed mid-conversation (issue 19): one conversation, every message once
//! and in order both ways (person → operator, operator → LINE pushes), and nothing in Redis that
//! names the person.
//!
//! The nodes are real `gateway` processes with `[line]` pointing at the fake Messaging API of
//! `tests/line/fake_api.rs` (in this process; it answers 409 to a retry key it accepted
//! before, as LINE does). Webhooks are signed here as LINE signs them (base64 HMAC-SHA-256 of
//! the body under the channel secret; `tests/line.rs` checks the same signatures against the
//! official SDK).

use std::time::Duration;

use anyhow::{ensure, Context};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use ulid::Ulid;

use super::client::{events_of, Operator, WAIT};
use super::conversation::say;
use super::line_api::{FakeLine, PUSH};
use super::node::{http, Node};
use super::redis::{temp_dir, RedisServer};
use super::serial;
use super::setup::{prefix, redis_env};

const CHANNEL: &str = "npo1";

struct Line {
    secret: String,
    fake: FakeLine,
    user: String,
}

impl Line {
    /// Posts one text message from the person to `node`'s webhook; the status must be 200.
    async fn say(&self, node: &Node, text: &str) -> anyhow::Result<()> {
        let event = json!({
            "type": "message",
            "mode": "active",
            "timestamp": 1_763_900_000_000u64,
            "webhookEventId": Ulid::new().to_string(),
            "deliveryContext": {"isRedelivery": false},
            "source": {"type": "user", "userId": self.user},
            "message": {"type": "text", "id": Ulid::new().to_string(), "text": text, "quoteToken": "q"},
        });
        let body = json!({"destination": "U00000000000000000000000000feed", "events": [event]})
            .to_string();
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret.as_bytes())?;
        mac.update(body.as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let status = http()
            .post(format!("{}/connectors/line/webhook/{CHANNEL}", node.base))
            .header("content-type", "application/json")
            .header("x-line-signature", sig)
            .body(body)
            .send()
            .await?
            .status();
        ensure!(status == 200, "webhook on {}: {status}", node.name);
        Ok(())
    }

    /// Texts pushed to the person and accepted by LINE, in order, each delivery once.
    fn pushed(&self) -> Vec<String> {
        self.fake.pushed_to(&self.user)
    }

    async fn wait_pushed(&self, text: &str) {
        let (user, text) = (self.user.clone(), text.to_owned());
        self.fake
            .wait_for(&format!("push of {text:?}"), move |reqs| {
                reqs.iter().any(|r| {
                    r.path == PUSH
                        && r.delivered
                        && r.body["to"] == user
                        && r.texts().contains(&text)
                })
            })
            .await;
    }
}

/// The person's message texts the operator's console received for `conv`, in order.
fn person_texts(op: &Operator, conv: &str) -> Vec<String> {
    events_of(&op.ws.log, conv)
        .into_iter()
        .filter(|(_, e)| e["kind"] == "message" && e["from"] == "visitor")
        .filter_map(|(_, e)| e["text"].as_str().map(str::to_owned))
        .collect()
}

async fn wait_person_text(op: &mut Operator, text: &str) -> anyhow::Result<String> {
    let want = text.to_owned();
    op.ws
        .pump_until("person's message", WAIT, move |log| {
            log.iter().any(|v| {
                v["type"] == "event"
                    && v["event"]["kind"] == "message"
                    && v["event"]["text"] == want.as_str()
            })
        })
        .await?;
    let frame = op
        .ws
        .log
        .iter()
        .find(|v| v["type"] == "event" && v["event"]["text"] == text)
        .context("frame")?;
    Ok(frame["conversation"]
        .as_str()
        .context("conversation")?
        .to_owned())
}

fn config(dir: &std::path::Path, api: &str) -> std::path::PathBuf {
    let path = dir.join("line.toml");
    let toml = format!(
        r#"[line]
api_base = "{api}"
retry_base_ms = 20
retry_max_ms = 100
retry_attempts = 6
request_timeout_ms = 500
read_poll_ms = 30

[[line.channels]]
id = "{CHANNEL}"
secret_env = "TSUNAGU_TEST_LINE_SECRET"
token_env = "TSUNAGU_TEST_LINE_TOKEN"
language = "en"
"#
    );
    std::fs::write(&path, toml).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_persons_webhooks_on_two_nodes_and_a_node_killed_make_one_conversation_once_in_order(
) {
    let _serial = serial().await;
    let redis = RedisServer::start().await;
    let (secret, token) = (
        format!("secret-{}", Ulid::new()),
        format!("token-{}", Ulid::new()),
    );
    let fake = FakeLine::start(&[&token]).await;
    let dir = temp_dir("line-two-nodes");
    let prefix = prefix();
    let mut env = redis_env(&redis.url(), &prefix);
    env.extend([
        (
            "TSUNAGU_CONFIG",
            config(&dir, &fake.base).display().to_string(),
        ),
        ("TSUNAGU_TEST_LINE_SECRET", secret.clone()),
        ("TSUNAGU_TEST_LINE_TOKEN", token),
        // A person not reached through any node ends this long after their node is found
        // dead (6-13 s): short, so the test sees it if the reaper took the LINE person for gone.
        ("TSUNAGU_CONVERSATION__VISITOR_GRACE_MS", "1000".into()),
        // The sender lease's moves are logged at info.
        (
            "TSUNAGU_LOG__FILTER",
            "warn,tsunagu::connectors::line=info".into(),
        ),
    ]);
    let (a, b) = tokio::join!(Node::start("a", &env), Node::start("b", &env));
    for n in [&a, &b] {
        n.wait_ready(200, Duration::from_secs(10)).await;
    }
    let line = Line {
        secret,
        fake,
        user: format!("U{:032x}", rand::random::<u128>()),
    };
    let result = run(&a, &b, &line, &redis, &prefix).await;
    if let Err(e) = result {
        panic!("{e:#}\n{}\n{}", a.logs(80), b.logs(80));
    }
}

async fn run(
    a: &Node,
    b: &Node,
    line: &Line,
    redis: &RedisServer,
    prefix: &str,
) -> anyhow::Result<()> {
    // The operator's console is on b, which lives; a starts the conversation (and so sends
    // to LINE for it) and is killed.
    let mut op = Operator::connect(b, b, "op0", true).await?;
    line.say(a, "person 0").await?;
    // The webhook is answered before its event is applied: wait until the person is queued
    // (take_next on an empty queue is acknowledged with nothing to take), then take them.
    op.ws
        .expect("the person queued", WAIT, |f| {
            f["type"] == "queue" && f["waiting"].as_u64().unwrap_or(0) >= 1
        })
        .await?;
    let conv = op.take_one().await?;
    ensure!(wait_person_text(&mut op, "person 0").await? == conv);
    line.wait_pushed("A counsellor is here now and will answer you.")
        .await;

    let mut sent_person = vec!["person 0".to_owned()];
    let mut sent_operator = Vec::new();
    let mut killed_at = None;
    for i in 1..=10 {
        if i == 10 {
            // Past the time the nodes' reaper takes a's people for disconnected, and their
            // grace: the LINE person is reached through b now, and their conversation lives.
            let since = killed_at
                .map(|t: std::time::Instant| t.elapsed())
                .unwrap_or_default();
            tokio::time::sleep(Duration::from_secs(16).saturating_sub(since)).await;
        }
        // Webhooks alternate between the nodes while both live; after the kill, b has them.
        let node = if i % 2 == 1 || i > 5 { b } else { a };
        let text = format!("person {i}");
        line.say(node, &text).await?;
        let got = wait_person_text(&mut op, &text).await?;
        ensure!(
            got == conv,
            "person {i} went to conversation {got}, not {conv}"
        );
        sent_person.push(text);

        let reply = format!("operator {i}");
        say(&mut op.ws, Some(&conv), &reply).await?;
        sent_operator.push(reply.clone());
        if i == 5 {
            // Killed right after the operator's message: its push may be on its way, done,
            // or not started; b takes the lease over and sends from the shared cursor.
            a.kill9();
            killed_at = Some(std::time::Instant::now());
        }
        line.wait_pushed(&reply).await;
    }

    // b took the sender lease over from a (a held it: it started the conversation).
    let taken = |n: &Node| n.logs(10_000).matches("LINE sender lease taken").count();
    ensure!(
        taken(b) == 1,
        "b did not take the lease over once:\n{}",
        b.logs(200)
    );

    // Person → operator: one conversation, each message once, in order.
    let got = person_texts(&op, &conv);
    ensure!(
        got == sent_person,
        "operator saw {got:?}, sent {sent_person:?}"
    );
    // Operator → LINE: each message accepted by LINE once, in order.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pushed: Vec<String> = line
        .pushed()
        .into_iter()
        .filter(|t| t.starts_with("operator "))
        .collect();
    ensure!(
        pushed == sent_operator,
        "LINE got {pushed:?}, sent {sent_operator:?}"
    );
    let joined = line
        .pushed()
        .iter()
        .filter(|t| t.starts_with("A counsellor is here"))
        .count();
    ensure!(joined == 1, "the joined notice was pushed {joined} times");

    // Redis: one link, named by a keyed hash; the LINE user id nowhere in a key or value.
    let mut r = redis.client().await;
    let keys = r.scan(&format!("{prefix}:*")).await?;
    let links: Vec<&String> = keys.iter().filter(|k| k.contains(":link:")).collect();
    ensure!(links.len() == 1, "links: {links:?}");
    for k in &keys {
        ensure!(!k.contains(&line.user), "a key names the LINE user: {k}");
        for v in r.contents(k).await? {
            ensure!(
                !String::from_utf8_lossy(&v).contains(&line.user),
                "key {k} holds the LINE user id"
            );
        }
    }

    // Closing deletes the link: the person's next message starts a new conversation.
    op.close(&conv).await?;
    line.wait_pushed_prefix("This conversation has ended.")
        .await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let keys = r.scan(&format!("{prefix}:link:*")).await?;
        if keys.is_empty() {
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "links left after close: {keys:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let problems = line.fake.problems();
    ensure!(problems.is_empty(), "fake LINE API found: {problems:?}");
    Ok(())
}

impl Line {
    async fn wait_pushed_prefix(&self, prefix: &str) {
        let (user, prefix) = (self.user.clone(), prefix.to_owned());
        self.fake
            .wait_for(&format!("push starting {prefix:?}"), move |reqs| {
                reqs.iter().any(|r| {
                    r.path == PUSH
                        && r.delivered
                        && r.body["to"] == user
                        && r.texts().iter().any(|t| t.starts_with(&prefix))
                })
            })
            .await;
    }
}
