//! A phone call's webhooks sent alternately to two gateway nodes on one Redis, and the node
//! that answered `incoming` killed while the call waits in the hold loop (issue 19): the other
//! node takes the call over, an operator's accept there bridges it exactly once (one "update a
//! call" at the provider, with the right TwiML), the call is one conversation, its `status`
//! callback ends it, and no call SID or phone number is in any Redis key (or value) or log line.
//!
//! The nodes are real `gateway` processes with `[voice]` pointing at the fake provider REST API
//! of `tests/voice/fake_provider.rs` (in this process), behind one public URL as a load
//! balancer would put them (`voice.public_url`). Webhooks are signed by Twilio's official
//! Python library (`tests/voice/sdk.py`), as `tests/voice.rs` does.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use serde_json::{json, Value};
use ulid::Ulid;

use super::client::{events_of, Operator, WAIT};
use super::node::{gateway_bin, http, Node, PASSWORD};
use super::python::PyHelper;
use super::redis::{temp_dir, RedisServer};
use super::serial;
use super::setup::{prefix, redis_env};
use super::voice_provider::FakeProvider;

/// What the provider is configured with: the load balancer in front of both nodes.
const PUBLIC: &str = "https://helpline.example.org";
/// The helpline's own number (what the caller dialled; the caller id the operator sees).
const HELPLINE: &str = "+81312345678";
const OPERATOR: &str = "voice-op";

static PY: PyHelper = PyHelper::new(
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/voice/sdk.py"),
    "Twilio/XML",
    "twilio",
);

fn digits(n: usize) -> String {
    let s = format!("{:039}", Ulid::new().0 % 10u128.pow(38));
    s[s.len() - n..].to_owned()
}

/// One call as the provider sees it, and the webhooks it posts.
struct Call {
    token: String,
    sid: String,
    from: String,
}

impl Call {
    fn params(&self, call_status: &str) -> Vec<(String, String)> {
        [
            ("AccountSid", "AC00000000000000000000000000000000"),
            ("ApiVersion", "2010-04-01"),
            ("CallSid", self.sid.as_str()),
            ("CallStatus", call_status),
            ("Called", HELPLINE),
            ("Caller", self.from.as_str()),
            ("Direction", "inbound"),
            ("From", self.from.as_str()),
            ("FromCountry", "JP"),
            ("To", HELPLINE),
            ("ToCountry", "JP"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// Posts a webhook to `node`, signed by Twilio's library over the public URL; returns the
    /// status and the body.
    async fn post(
        &self,
        node: &Node,
        path: &str,
        params: &[(String, String)],
    ) -> anyhow::Result<(u16, String)> {
        let url = format!("{PUBLIC}{path}");
        let signed = PY
            .call(json!({"op":"sign","token":self.token,"url":url,"params":params}))
            .await;
        let sig = signed["signature"]
            .as_str()
            .context("signature")?
            .to_owned();
        let res = http()
            .post(format!("{}{path}", node.base))
            .header("x-twilio-signature", sig)
            .form(params)
            .send()
            .await?;
        Ok((res.status().as_u16(), res.text().await?))
    }

    /// Posts a webhook that answers TwiML; returns its verbs (parsed by Python's XML parser).
    async fn twiml(
        &self,
        node: &Node,
        path: &str,
        params: &[(String, String)],
    ) -> anyhow::Result<Vec<Value>> {
        let (status, body) = self.post(node, path, params).await?;
        ensure!(status == 200, "{path} on {}: {status} {body}", node.name);
        let doc = PY.call(json!({"op":"twiml","xml":body})).await;
        Ok(doc["verbs"].as_array().context("verbs")?.clone())
    }

    /// The hold loop comes back on `node`; the answer must keep the caller on hold.
    async fn wait(&self, node: &Node) -> anyhow::Result<Vec<Value>> {
        let doc = self
            .twiml(node, "/connectors/voice/wait", &self.params("in-progress"))
            .await?;
        let last = doc.last().context("empty TwiML")?;
        ensure!(
            last["verb"] == "Redirect"
                && last["text"] == format!("{PUBLIC}/connectors/voice/wait").as_str(),
            "wait on {} did not hold the call: {doc:?}",
            node.name
        );
        Ok(doc)
    }
}

/// An accounts database of this test's own: one operator whose calls ring at `phone`.
fn accounts_with_phone(dir: &Path, phone: &str) -> PathBuf {
    let database = dir.join("voice-accounts.db");
    let mut child = Command::new(gateway_bin())
        .args([
            "user",
            "add",
            "--username",
            OPERATOR,
            "--display-name",
            "Voice op",
        ])
        .args([
            "--role",
            "operator",
            "--password-stdin",
            "--languages",
            "ja,en",
        ])
        .args(["--capacity", "2", "--phone", phone])
        .env("TSUNAGU_DATABASE__SQLITE_PATH", &database)
        .env("TSUNAGU_LOG__FILTER", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("gateway user add runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "gateway user add");
    database
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_webhooks_on_two_nodes_and_its_first_node_killed_bridge_it_once_in_one_conversation(
) {
    let _serial = serial().await;
    // Twilio's library imports take a moment: before any node starts.
    PY.call(json!({"op":"twiml","xml":"<Response/>"})).await;
    let redis = RedisServer::start().await;
    let (account, token) = (format!("AC{}", digits(32)), format!("tok{}", Ulid::new()));
    let fake = FakeProvider::start(&account, &token).await;
    let dir = temp_dir("voice-two-nodes");
    let phone = format!("+8180{}", digits(8));
    let database = accounts_with_phone(&dir, &phone);
    let prefix = prefix();
    let mut env = redis_env(&redis.url(), &prefix);
    env.extend([
        (
            "TSUNAGU_DATABASE__SQLITE_PATH",
            database.display().to_string(),
        ),
        ("TSUNAGU_VOICE__ENABLED", "true".into()),
        ("TSUNAGU_VOICE__API_BASE", fake.base.clone()),
        ("TSUNAGU_VOICE__PUBLIC_URL", PUBLIC.into()),
        (
            "TSUNAGU_VOICE__ACCOUNT_SID_ENV",
            "TSUNAGU_TEST_VOICE_SID".into(),
        ),
        (
            "TSUNAGU_VOICE__AUTH_TOKEN_ENV",
            "TSUNAGU_TEST_VOICE_TOKEN".into(),
        ),
        ("TSUNAGU_TEST_VOICE_SID", account),
        ("TSUNAGU_TEST_VOICE_TOKEN", token.clone()),
        ("TSUNAGU_VOICE__RETRY_BASE_MS", "20".into()),
        ("TSUNAGU_VOICE__RETRY_MAX_MS", "100".into()),
        ("TSUNAGU_VOICE__RETRY_ATTEMPTS", "4".into()),
        ("TSUNAGU_VOICE__REQUEST_TIMEOUT_MS", "1000".into()),
        // A caller not reached through any node ends this long after their node is found
        // dead: short, so the test sees it if the reaper took the caller for gone.
        ("TSUNAGU_CONVERSATION__VISITOR_GRACE_MS", "1000".into()),
        // The call lease's moves are logged at info (and every line is checked for numbers).
        (
            "TSUNAGU_LOG__FILTER",
            "warn,tsunagu::connectors::voice=info".into(),
        ),
    ]);
    let (a, b) = tokio::join!(Node::start("a", &env), Node::start("b", &env));
    for n in [&a, &b] {
        n.wait_ready(200, Duration::from_secs(10)).await;
    }
    let call = Call {
        token,
        sid: format!("CA{:032x}", Ulid::new().0),
        from: format!("+8190{}", digits(8)),
    };
    let result = run(&a, &b, &call, &fake, &phone, &redis, &prefix).await;
    if let Err(e) = result {
        panic!(
            "{e:#}\nprovider: {:?}\n{}\n{}",
            fake.requests(),
            a.logs(80),
            b.logs(80)
        );
    }
}

async fn run(
    a: &Node,
    b: &Node,
    call: &Call,
    fake: &FakeProvider,
    phone: &str,
    redis: &RedisServer,
    prefix: &str,
) -> anyhow::Result<()> {
    // The operator's console is on b, which lives; a answers the call and is killed.
    let mut op = Operator::connect(b, b, OPERATOR, true).await?;
    let doc = call
        .twiml(a, "/connectors/voice/incoming", &call.params("ringing"))
        .await?;
    ensure!(
        doc.last().is_some_and(|v| v["verb"] == "Redirect"),
        "incoming did not hold the call: {doc:?}"
    );
    // The hold loop comes back to either node.
    for node in [b, a, b, a] {
        call.wait(node).await?;
    }
    a.kill9();
    let killed = Instant::now();
    // The hold loop goes on at b alone: b takes the call over, and the caller waits on past
    // the time the nodes' reaper takes a's people for disconnected (6-13 s) and their grace.
    while killed.elapsed() < Duration::from_secs(16) {
        call.wait(b).await?;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let taken = |n: &Node| n.logs(10_000).matches("voice call lease taken").count();
    ensure!(
        taken(b) == 1,
        "b did not take the call over once:\n{}",
        b.logs(200)
    );
    ensure!(
        fake.requests().is_empty(),
        "nothing was sent to the call yet"
    );

    // The operator on b accepts: the call is bridged to their phone once.
    op.ws
        .expect("the call queued", WAIT, |f| {
            f["type"] == "queue" && f["waiting"].as_u64().unwrap_or(0) >= 1
        })
        .await?;
    let conv = op.take_one().await?;
    fake.wait_for("the bridge", |f| !f.applied(&call.sid).is_empty())
        .await;
    // The hold loop may come back once more before the provider switches: still on hold.
    call.wait(b).await?;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let requests = fake.requests();
    ensure!(
        requests.len() == 1,
        "the provider got {} requests: {requests:?}",
        requests.len()
    );
    let bridge = &requests[0];
    ensure!(bridge.call_sid == call.sid && bridge.status == 200);
    let verbs = PY.call(json!({"op":"twiml","xml":bridge.twiml})).await["verbs"].clone();
    let dial = &verbs
        .as_array()
        .context("verbs")?
        .iter()
        .find(|v| v["verb"] == "Dial")
        .with_context(|| format!("no Dial in the bridge: {verbs}"))?
        .clone();
    ensure!(
        dial["attrs"]["callerId"] == HELPLINE
            && dial["attrs"]["action"] == format!("{PUBLIC}/connectors/voice/dial-done").as_str()
            && dial["children"][0]["verb"] == "Number"
            && dial["children"][0]["text"] == phone,
        "the bridge is not to the operator's phone from the helpline: {dial}"
    );

    // One conversation: the one the operator holds, and the only one in Redis.
    let mut r = redis.client().await;
    let convs = r.scan(&format!("{prefix}:c:*")).await?;
    ensure!(
        convs == vec![format!("{prefix}:c:{conv}")],
        "conversations in Redis: {convs:?}"
    );
    // No call SID or number in any key (or value).
    let secrets = [call.sid.as_str(), &call.from, phone, HELPLINE];
    let bare = |s: &str| s.trim_start_matches('+').to_owned();
    let keys = r.scan(&format!("{prefix}:*")).await?;
    ensure!(
        keys.iter().any(|k| k.contains(":link:voice:")),
        "no call link: {keys:?}"
    );
    ensure!(
        keys.contains(&format!("{prefix}:call:{conv}")),
        "no call record: {keys:?}"
    );
    for k in &keys {
        for s in secrets {
            ensure!(!k.contains(&bare(s)), "key {k} names the call");
            for v in r.contents(k).await? {
                ensure!(
                    !String::from_utf8_lossy(&v).contains(&bare(s)),
                    "key {k} holds a call SID or number"
                );
            }
        }
    }

    // The operator's leg ends, then the call: the conversation ends (to the wrap-up), once.
    let mut done = call.params("in-progress");
    done.push(("DialCallStatus".into(), "completed".into()));
    done.push(("DialCallSid".into(), format!("CA{:032x}", Ulid::new().0)));
    let doc = call.twiml(b, "/connectors/voice/dial-done", &done).await?;
    ensure!(
        doc.last().is_some_and(|v| v["verb"] == "Hangup"),
        "dial-done: {doc:?}"
    );
    let (status, _) = call
        .post(b, "/connectors/voice/status", &call.params("completed"))
        .await?;
    ensure!(status == 204, "status: {status}");
    let c = conv.clone();
    op.ws
        .pump_until("the call's end", WAIT, move |log| {
            events_of(log, &c).iter().any(|(_, e)| e["kind"] == "ended")
        })
        .await?;
    let ended = events_of(&op.ws.log, &conv)
        .iter()
        .filter(|(_, e)| e["kind"] == "ended")
        .count();
    ensure!(ended == 1, "ended {ended} times");
    let others: Vec<&Value> = op
        .ws
        .log
        .iter()
        .filter(|v| v["conversation"].as_str().is_some_and(|c| c != conv))
        .collect();
    ensure!(
        others.is_empty(),
        "frames of other conversations: {others:?}"
    );
    let r2 = op
        .act("wrap_up", &conv, json!({"category":"other"}))
        .await?;
    ensure!(r2["type"] == "ack", "wrap_up: {r2}");
    // Closed: the call's link and record went with the conversation.
    let deadline = Instant::now() + WAIT;
    loop {
        let left: Vec<String> = r
            .scan(&format!("{prefix}:*"))
            .await?
            .into_iter()
            .filter(|k| k.contains(":link:") || k.contains(":call:") || k.contains(":c:"))
            .collect();
        if left.is_empty() {
            break;
        }
        ensure!(Instant::now() < deadline, "left after close: {left:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(
        fake.requests().len() == 1,
        "sent to the call after the bridge"
    );
    let problems = fake.problems();
    ensure!(problems.is_empty(), "fake provider found: {problems:?}");

    // No call SID or number in any log line of either node.
    for n in [a, b] {
        let logs = n.logs(100_000);
        for s in secrets {
            ensure!(
                !logs.contains(&bare(s)),
                "node {} logged a call SID or number",
                n.name
            );
        }
    }
    Ok(())
}
