//! The call's shared record as a node that takes a call over finds it: a bridge claimed in the
//! record by a node that died before sending it (simulated here by writing the claim, as that
//! node would have, into the store of a one-node gateway).

use tsunagu::store::{CallPhase, CallRecord};

use super::harness::*;
use super::{bridged_call, said};

/// The call's record, with its bridge claimed `ago_ms` ago and never sent.
async fn claim_bridge(t: &VoiceTest, conv: &str, ago_ms: u64) {
    let engine = &t.app.state.engine;
    let conv = conv.parse().unwrap();
    let rec = engine
        .call_record(conv)
        .await
        .unwrap()
        .expect("a call record");
    let claimed = CallRecord {
        phase: CallPhase::Bridging,
        bridge_at: engine.now_ms() - ago_ms,
        ..rec
    };
    let written = engine.put_call(conv, &claimed, 60_000).await.unwrap();
    assert!(written.is_some(), "the claim is written");
}

#[tokio::test]
async fn a_bridge_claimed_by_a_node_that_died_before_sending_it_puts_the_call_back_in_the_queue() {
    let t = VoiceTest::start().await;
    let (mut op, caller, conv) = bridged_call(&t, "lost-bridge-op").await;
    // The settings' whole retry budget: 4 × (1000 + 100) ms + 2 s.
    let budget_ms = 4 * (1_000 + 100) + 2_000;
    // The bridge above is recorded as made before the test writes its own claims.
    let engine = &t.app.state.engine;
    let id = conv.parse().unwrap();
    while engine.call_record(id).await.unwrap().unwrap().phase != CallPhase::Bridged {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    // Claimed within the budget: the request may still be on its way; the caller holds on.
    claim_bridge(&t, &conv, 1_000).await;
    let doc = t.wait(&caller).await;
    assert!(said(&doc).contains("まもなく"), "{}", said(&doc));
    let rec = engine.call_record(id).await.unwrap().unwrap();
    assert_eq!(rec.phase, CallPhase::Bridging, "still being put through");

    // The hold loop comes back past the budget: the bridge never reached the provider, and the
    // call goes back to the queue, once, with no request sent for it.
    claim_bridge(&t, &conv, budget_ms + 1_000).await;
    t.wait(&caller).await;
    t.wait(&caller).await;
    let removed = op.client.expect_type("removed").await;
    assert_eq!(removed["conversation"], conv.as_str());
    assert_eq!(removed["reason"], "requeued");
    let convs = t
        .app
        .wait_conversations("requeued", |c| {
            c.len() == 1 && c[0].state.operator().is_none()
        })
        .await;
    assert_eq!(convs[0].id.to_string(), conv);
    let again = t.wait(&caller).await;
    assert!(said(&again).contains("1 番目"), "{}", said(&again));
    assert_eq!(t.fake.requests().len(), 1, "only the first bridge was sent");
    t.finish().await;
}
