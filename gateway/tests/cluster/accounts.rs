//! Several nodes with no shared disk (issue 20, item 4): three gateway processes on one
//! PostgreSQL (a cluster of the test's own, `support/postgres.rs`) and one Redis. An account
//! an admin adds on node A signs in on node C; disabled on node B, its console open on node A
//! closes within a second or so (the time is printed; the assertion allows 3 s); an emergency
//! flag raised on node A is read on node C, and the read is in the audit trail; the retention
//! sweep, running on every node, deletes the record once.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::client::{Operator, Visitor};
use super::node::{gateway_bin, http, Node};
use super::postgres::PgCluster;
use super::redis::RedisServer;
use super::serial;
use super::setup::{nodes, prefix, redis_env, with};

const ADMIN_PASSWORD: &str = "cluster admin password";

/// The first admin, added to the PostgreSQL database with the CLI.
fn add_admin(database_url: &str) {
    let mut child = Command::new(gateway_bin())
        .args([
            "user",
            "add",
            "--username",
            "root",
            "--display-name",
            "Root",
        ])
        .args(["--role", "admin", "--password-stdin"])
        .env("TSUNAGU_DATABASE__URL", database_url)
        .env("TSUNAGU_LOG__FILTER", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("gateway user add runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{ADMIN_PASSWORD}\n").as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "gateway user add root");
}

/// POSTs `body` to `path` on `node` (as `cookie`, if any): status, JSON and a session cookie
/// if one was set.
async fn post(
    node: &Node,
    cookie: Option<&str>,
    path: &str,
    body: Value,
) -> (u16, Value, Option<String>) {
    let mut req = http()
        .post(format!("{}{path}", node.base))
        .header("origin", &node.base)
        .json(&body);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let set = res
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap().to_owned());
    (status, res.json().await.unwrap_or(Value::Null), set)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_on_postgresql_share_accounts_sessions_flags_and_retention() {
    let _g = serial().await;
    let pg = PgCluster::start();
    let url = pg.create_database("tsunagu").await;
    add_admin(&url);
    let redis = RedisServer::start().await;
    let key: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    let env = with(
        redis_env(&redis.url(), &prefix()),
        &[
            ("TSUNAGU_DATABASE__URL", url.as_str()),
            ("TSUNAGU_ESCALATION__KEY", key.as_str()),
            ("TSUNAGU_ESCALATION__RETENTION_MS", "6000"),
            ("TSUNAGU_ESCALATION__SWEEP_MS", "200"),
        ],
    );
    let ns = nodes(3, &env).await;
    let (a, b, c) = (&ns[0], &ns[1], &ns[2]);
    let admin_a = post(
        a,
        None,
        "/api/login",
        json!({"username": "root", "password": ADMIN_PASSWORD}),
    )
    .await
    .2
    .expect("the admin signs in on A");

    // Added on A ...
    let (status, added, _) = post(
        a,
        Some(&admin_a),
        "/api/admin/accounts",
        json!({"username": "mika", "display_name": "Mika", "role": "operator"}),
    )
    .await;
    assert_eq!(status, 201, "{added}");
    let otp = added["one_time_password"].as_str().unwrap();
    let id = added["id"].as_str().unwrap().to_owned();
    // ... signs in on C, where it chooses its password.
    let (status, first, _) = post(
        c,
        None,
        "/api/login",
        json!({"username": "mika", "password": otp}),
    )
    .await;
    assert_eq!(
        (status, first["step"].as_str()),
        (200, Some("change_password"))
    );
    let (status, _, cookie) = post(
        c,
        None,
        "/api/login/step",
        json!({"pending": first["pending"], "new_password": "mika's own password"}),
    )
    .await;
    assert_eq!(status, 200);
    let mika_c = cookie.expect("a session on C");
    assert_eq!(c.get_json("/api/me", &mika_c).await["username"], "mika");

    // Its console open on A; disabled on B: A's socket closes.
    let (_, _, mika_a) = post(
        a,
        None,
        "/api/login",
        json!({"username": "mika", "password": "mika's own password"}),
    )
    .await;
    let mut console = Operator::open(a, "mika", &mika_a.unwrap(), json!({}), false)
        .await
        .expect("console on A");
    let admin_b = post(
        b,
        None,
        "/api/login",
        json!({"username": "root", "password": ADMIN_PASSWORD}),
    )
    .await
    .2
    .expect("the admin signs in on B");
    let start = Instant::now();
    let (status, _, _) = post(
        b,
        Some(&admin_b),
        &format!("/api/admin/accounts/{id}/disable"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let closed = loop {
        match console.ws.recv(Duration::from_secs(5)).await {
            Ok(Some(_)) => continue,
            Ok(None) => {
                panic!("the console on A is still open 5 s after the account was disabled on B")
            }
            Err(_) => break console.ws.closed.flatten(),
        }
    };
    let took = start.elapsed();
    println!("disabled on B → console on A closed ({closed:?}) in {took:?}");
    assert_eq!(closed, Some(4010), "closed as revoked");
    assert!(
        took < Duration::from_secs(3),
        "closed within 3 s, took {took:?}"
    );
    let me = http()
        .get(format!("{}/api/me", c.base))
        .header("cookie", &mika_c)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401, "the session on C ended too");

    // A flag raised on A is read on C, and the read is audited.
    let person = Visitor::start(a, "ja").await.expect("a person on A");
    let (status, body, _) = post(
        a,
        Some(&admin_a),
        &format!("/api/conversations/{}/flag", person.conversation),
        json!({"category": "self_harm", "reason": "cluster test"}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let admin_c = post(
        c,
        None,
        "/api/login",
        json!({"username": "root", "password": ADMIN_PASSWORD}),
    )
    .await
    .2
    .expect("the admin signs in on C");
    let list = c.get_json("/api/escalations", &admin_c).await;
    let record = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["conversation"] == person.conversation.as_str())
        .expect("the record raised on A is listed on C")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let read = c
        .get_json(&format!("/api/escalations/{record}"), &admin_c)
        .await;
    assert_eq!(read["conversation"], person.conversation.as_str());
    let trail = a.get_json("/api/audit", &admin_a).await;
    let viewed = trail
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "view" && e["record"] == record.as_str())
        .count();
    assert_eq!(viewed, 1, "the read on C is in the trail A reads");

    // Every node sweeps every 200 ms; the record, 6 s old, is deleted once.
    let deadline = Instant::now() + Duration::from_secs(20);
    let trail = loop {
        let trail = a.get_json("/api/audit", &admin_a).await;
        let expired: Vec<&Value> = trail
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "expired" && e["record"] == record.as_str())
            .collect();
        if !expired.is_empty() {
            // A few more sweeps on every node.
            tokio::time::sleep(Duration::from_secs(1)).await;
            break a.get_json("/api/audit", &admin_a).await;
        }
        assert!(Instant::now() < deadline, "the record was never swept");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let expired = trail
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "expired" && e["record"] == record.as_str())
        .count();
    assert_eq!(
        expired, 1,
        "deleted (and audited) once across three sweeping nodes"
    );
    let gone = http()
        .get(format!("{}/api/escalations/{record}", b.base))
        .header("cookie", &admin_b)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    drop(person);
}
