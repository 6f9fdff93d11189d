//! What a waiting person is told about their wait (issue 17, item 19).

use crate::helpers::*;

/// Before any conversation has closed there is nothing to estimate a wait from: a person who
/// arrives while an operator is on duty with room (offers are held back here, so the person
/// stays in the queue) is told their place and no number of minutes (it used to be a made-up
/// "about 15 minutes").
#[tokio::test]
async fn with_no_conversation_closed_yet_a_person_is_told_no_made_up_wait() {
    let app = spawn_app_with(|s| s.conversation.auto_offer = false).await;
    let _op = app.operator("sakura", 2, true).await;
    let mut v = app.visitor("ja").await;
    let q = v.client.expect_type("queue").await;
    assert_eq!(q["position"], 1, "{q}");
    assert_eq!(q["operators_on_duty"], 1, "{q}");
    assert!(q["wait_minutes"].is_null(), "no history, no estimate: {q}");
    app.stop().await;
}
