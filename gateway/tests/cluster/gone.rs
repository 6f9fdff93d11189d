//! Issue 17, item 14: when Redis loses its data (a restart without persistence, a FLUSHALL),
//! the people and operators whose conversation went with it are told at once, without sending
//! anything: a `gone` frame, and the person's socket closes with 4004.

use std::time::Duration;

use serde_json::Value;

use super::client::{is_event, Operator, Visitor, WAIT};
use super::node::Node;
use super::redis::RedisServer;
use super::serial;
use super::setup::{nodes, prefix, redis_env};

/// Bound for hearing of the loss: nodes check the store's marker every second and resubscribe
/// within 2 s of a restart; this is only a ceiling so a broken build fails instead of hanging.
const TOLD_WITHIN: Duration = Duration::from_secs(15);

/// A person on node a talking with an operator on node b (signed in on a).
async fn talking(a: &Node, b: &Node) -> (Visitor, Operator) {
    let mut v = Visitor::start(a, "ja").await.unwrap();
    let mut op = Operator::connect(a, b, "op1", true).await.unwrap();
    let taken = op.take().await.unwrap().unwrap();
    assert_eq!(taken, v.conversation);
    v.ws.expect("operator_joined", WAIT, |f| is_event(f, "operator_joined"))
        .await
        .unwrap();
    (v, op)
}

fn is_gone(f: &Value, conversation: &str) -> bool {
    f["type"] == "gone" && f["conversation"] == conversation && f["reason"] == "lost"
}

/// Both hear it without sending anything: the person gets `gone` and the close 4004, the
/// operator gets `gone` for that conversation.
async fn both_are_told(v: &mut Visitor, op: &mut Operator) {
    let conv = v.conversation.clone();
    let c = conv.clone();
    v.ws.expect("gone (visitor)", TOLD_WITHIN, move |f| is_gone(f, &c))
        .await
        .unwrap();
    // Then the close (frames queued before the loss may still be in the backlog).
    let mut after = Vec::new();
    while let Ok(f) = v.ws.recv(WAIT).await {
        assert!(f.is_some(), "the socket stays open after gone");
        after.extend(f);
    }
    assert_eq!(v.ws.closed, Some(Some(4004)), "after gone: {after:?}");
    let c = conv.clone();
    op.ws
        .expect("gone (operator)", TOLD_WITHIN, move |f| is_gone(f, &c))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_flushall_tells_the_person_and_the_operator_on_other_nodes_that_their_conversation_is_gone(
) {
    let _g = serial().await;
    let redis = RedisServer::start().await;
    let ns = nodes(2, &redis_env(&redis.url(), &prefix())).await;
    let (mut v, mut op) = talking(&ns[0], &ns[1]).await;
    let mut client = redis.client().await;
    client.ok(&["FLUSHALL"]).await.unwrap();
    both_are_told(&mut v, &mut op).await;
}

#[tokio::test]
async fn a_redis_restart_without_persistence_tells_the_person_and_the_operator_at_once() {
    let _g = serial().await;
    let mut redis = RedisServer::start().await;
    let ns = nodes(2, &redis_env(&redis.url(), &prefix())).await;
    let (mut v, mut op) = talking(&ns[0], &ns[1]).await;
    redis.restart().await;
    both_are_told(&mut v, &mut op).await;
}
