//! The behavioural suite every [`Store`] implementation must pass. The memory store runs it in
//! its unit tests; the Redis store runs the same functions against a real `redis-server`.
//! Each check panics with a sentence saying what went wrong.

use std::sync::Arc;

use ulid::Ulid;

use super::{ApplyError, OperatorRecord, OperatorUpdate, Store};
use crate::conversation::{Command, Conversation, StateKind};
use crate::protocol::{Channel, EventBody, Presence, Side};

const NOW: u64 = 1_700_000_000_000;
const FALLBACK: u64 = 120_000;

/// A web conversation queued at `at`, asking `lang` if given.
pub(crate) fn conv(lang: Option<&str>, at: u64) -> Conversation {
    Conversation::new(
        Ulid::new(),
        Channel::Web,
        lang.map(str::to_owned),
        Some(format!("hash-{}", Ulid::new())),
        at,
    )
}

/// `n` conversations queued in the same millisecond whose ids sort the other way round from
/// the order they are created in (as random ids may): only arrival order can tell them apart.
fn same_millisecond(n: u64) -> Vec<Conversation> {
    (0..n)
        .map(|i| {
            let mut c = conv(None, NOW);
            c.id = Ulid::from_parts(NOW, u128::from(n - i));
            c
        })
        .collect()
}

/// An operator on duty, connected, speaking ja and en.
pub(crate) fn operator(name: &str, capacity: u32) -> OperatorRecord {
    OperatorRecord {
        id: Ulid::new(),
        name: name.to_owned(),
        languages: vec!["ja".into(), "en".into()],
        capacity,
        presence: Presence::OnDuty,
        connected: true,
        disconnected_since: None,
        last_assigned: 0,
        takes_calls: false,
    }
}

/// The visitor writes `text`.
pub(crate) fn message(text: &str) -> Command {
    Command::Message {
        from: Side::Visitor,
        operator: None,
        id: Ulid::new().into(),
        text: text.to_owned(),
    }
}

/// Runs every check, each on a fresh store from `make`.
pub async fn run_all<F>(make: F)
where
    F: Fn() -> Arc<dyn Store>,
{
    log_appends_in_order_and_reads_from_any_seq(make()).await;
    a_retried_client_id_is_applied_once(make()).await;
    queue_is_oldest_first_and_dispatch_respects_capacity(make()).await;
    arrivals_in_one_millisecond_keep_their_order_and_distinct_places(make()).await;
    a_conversation_handed_back_goes_behind_those_handed_back_before_it(make()).await;
    take_next_gives_the_head_of_the_queue_atomically(make()).await;
    delete_removes_everything_of_a_conversation(make()).await;
    refused_commands_change_nothing(make()).await;
    operator_presence_updates_are_kept(make()).await;
    queue_positions_agree_with_the_queue(make()).await;
    an_operators_load_and_who_is_on_duty_follow_what_they_hold(make()).await;
    conversations_where_copies_only_what_it_picks(make()).await;
}

pub async fn queue_positions_agree_with_the_queue(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for i in 0..5 {
        let c = conv(None, NOW + 10 * i);
        ids.push(c.id);
        store.create(c).await.unwrap();
    }
    ids.reverse();
    let queue = store.queue().await.unwrap();
    let brief = store.queue_brief().await.unwrap();
    assert_eq!(
        brief,
        queue
            .iter()
            .map(|c| (c.id, c.queued_at))
            .collect::<Vec<_>>(),
        "the brief queue is the queue, in order"
    );
    for (i, c) in queue.iter().enumerate() {
        assert_eq!(
            store.queue_position(c.id).await.unwrap(),
            Some((i as u32 + 1, 5)),
            "position of the queue's entry {i}"
        );
    }
    // The youngest arrival is last; a conversation that leaves the queue has no position.
    assert_eq!(store.queue_position(ids[0]).await.unwrap(), Some((5, 5)));
    let op = operator("sakura", 1);
    store.put_operator(op.clone()).await.unwrap();
    let taken = store
        .take_next(op.id, NOW + 100, FALLBACK)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.queue_position(taken.after.id).await.unwrap(), None);
    assert_eq!(store.queue_position(ids[0]).await.unwrap(), Some((4, 4)));
    assert_eq!(store.queue_position(Ulid::new()).await.unwrap(), None);
}

pub async fn log_appends_in_order_and_reads_from_any_seq(store: Arc<dyn Store>) {
    let c = conv(None, NOW);
    store.create(c.clone()).await.unwrap();
    for i in 0..5 {
        let a = store
            .apply(c.id, message(&format!("m{i}")), Some(Ulid::new()), NOW + i)
            .await
            .unwrap();
        assert_eq!(a.appended[0].seq, i + 1, "seqs are 1, 2, 3 … without gaps");
    }
    let all = store.read_log(c.id, 0).await.unwrap();
    assert_eq!(all.len(), 5);
    let tail = store.read_log(c.id, 3).await.unwrap();
    assert_eq!(
        tail.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![4, 5],
        "reading after seq 3 gives exactly 4 and 5"
    );
    assert!(store.read_log(c.id, 5).await.unwrap().is_empty());
    assert!(store.read_log(c.id, 99).await.unwrap().is_empty());
}

pub async fn a_retried_client_id_is_applied_once(store: Arc<dyn Store>) {
    let c = conv(None, NOW);
    store.create(c.clone()).await.unwrap();
    let cid = Ulid::new();
    let first = store
        .apply(c.id, message("hi"), Some(cid), NOW)
        .await
        .unwrap();
    let again = store
        .apply(c.id, message("hi"), Some(cid), NOW)
        .await
        .unwrap();
    assert_eq!(first.duplicate, None);
    assert_eq!(
        again.duplicate,
        Some(Some(1)),
        "the retry answers with the first seq"
    );
    assert_eq!(store.read_log(c.id, 0).await.unwrap().len(), 1);
}

/// Thirty people in one LINE webhook arrive in the same millisecond: each is told a place of
/// their own, the next after the last one told, and the queue keeps the order they came in.
pub async fn arrivals_in_one_millisecond_keep_their_order_and_distinct_places(
    store: Arc<dyn Store>,
) {
    let convs = same_millisecond(30);
    for (i, c) in convs.iter().enumerate() {
        store.create(c.clone()).await.unwrap();
        assert_eq!(
            store.queue_position(c.id).await.unwrap(),
            Some((i as u32 + 1, i as u32 + 1)),
            "arrival {i} is told the place after the last one told"
        );
    }
    let q: Vec<_> = store.queue().await.unwrap().iter().map(|c| c.id).collect();
    let arrived: Vec<_> = convs.iter().map(|c| c.id).collect();
    assert_eq!(q, arrived, "the queue is in the order they arrived");
    let brief: Vec<_> = store
        .queue_brief()
        .await
        .unwrap()
        .iter()
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(brief, arrived, "so is the brief queue");
    for (i, c) in convs.iter().enumerate() {
        assert_eq!(
            store.queue_position(c.id).await.unwrap(),
            Some((i as u32 + 1, 30)),
            "arrival {i} keeps its place"
        );
    }
}

/// Two conversations handed back in the same millisecond: both go before first-time arrivals,
/// in the order they were handed back.
pub async fn a_conversation_handed_back_goes_behind_those_handed_back_before_it(
    store: Arc<dyn Store>,
) {
    let convs = same_millisecond(3);
    let op = operator("A", 3);
    store.put_operator(op.clone()).await.unwrap();
    for c in &convs {
        store.create(c.clone()).await.unwrap();
    }
    for c in &convs[..2] {
        store
            .apply(
                c.id,
                Command::Take {
                    operator: op.id,
                    operator_name: "A".into(),
                },
                None,
                NOW,
            )
            .await
            .unwrap();
    }
    // Handed back in the other order from the one they arrived in.
    for c in [&convs[1], &convs[0]] {
        let a = store
            .apply(c.id, Command::Requeue { operator: op.id }, None, NOW)
            .await
            .unwrap();
        let stored = store.get(c.id).await.unwrap().unwrap();
        assert_eq!(a.after, stored, "the step returns what was stored");
    }
    let q: Vec<_> = store.queue().await.unwrap().iter().map(|c| c.id).collect();
    assert_eq!(q, vec![convs[1].id, convs[0].id, convs[2].id]);
    assert_eq!(
        store.queue_position(convs[0].id).await.unwrap(),
        Some((2, 3))
    );
}

pub async fn queue_is_oldest_first_and_dispatch_respects_capacity(store: Arc<dyn Store>) {
    let early = conv(None, NOW);
    let middle = conv(None, NOW + 5);
    let late = conv(None, NOW + 10);
    for c in [&early, &middle, &late] {
        store.create(c.clone()).await.unwrap();
    }
    let q: Vec<_> = store.queue().await.unwrap().iter().map(|c| c.id).collect();
    assert_eq!(q, vec![early.id, middle.id, late.id]);

    let op = operator("A", 2);
    store.put_operator(op.clone()).await.unwrap();
    let offers = store.dispatch(NOW + 20, 30_000, FALLBACK).await.unwrap();
    assert_eq!(offers.len(), 1, "one pending offer per operator");
    assert_eq!(offers[0].after.id, early.id);
    assert_eq!(offers[0].after.state.kind(), StateKind::Offered);
    assert!(
        store
            .dispatch(NOW + 21, 30_000, FALLBACK)
            .await
            .unwrap()
            .is_empty(),
        "no second offer while one is pending"
    );
    store
        .apply(
            early.id,
            Command::Accept {
                operator: op.id,
                operator_name: "A".into(),
            },
            None,
            NOW + 22,
        )
        .await
        .unwrap();
    let offers = store.dispatch(NOW + 23, 30_000, FALLBACK).await.unwrap();
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].after.id, middle.id);
    store
        .apply(
            middle.id,
            Command::Accept {
                operator: op.id,
                operator_name: "A".into(),
            },
            None,
            NOW + 24,
        )
        .await
        .unwrap();
    assert!(
        store
            .dispatch(NOW + 25, 30_000, FALLBACK)
            .await
            .unwrap()
            .is_empty(),
        "an operator at capacity gets no offer"
    );
    assert_eq!(store.held_by(op.id).await.unwrap().len(), 2);
    assert_eq!(store.queue().await.unwrap().len(), 1);
}

pub async fn take_next_gives_the_head_of_the_queue_atomically(store: Arc<dyn Store>) {
    let a = conv(Some("ja"), NOW);
    let b = conv(Some("ja"), NOW + 1);
    store.create(a.clone()).await.unwrap();
    store.create(b.clone()).await.unwrap();
    let op1 = operator("A", 1);
    let op2 = operator("B", 1);
    store.put_operator(op1.clone()).await.unwrap();
    store.put_operator(op2.clone()).await.unwrap();
    let (r1, r2) = tokio::join!(
        store.take_next(op1.id, NOW + 2, FALLBACK),
        store.take_next(op2.id, NOW + 2, FALLBACK)
    );
    let t1 = r1.unwrap().expect("first operator gets someone");
    let t2 = r2.unwrap().expect("second operator gets someone");
    assert_ne!(t1.after.id, t2.after.id, "never the same person twice");
    assert!(matches!(
        t1.appended[0].event,
        EventBody::OperatorJoined { .. }
    ));
    assert!(
        store
            .take_next(op1.id, NOW + 3, FALLBACK)
            .await
            .unwrap()
            .is_none(),
        "at capacity, or nobody left"
    );
}

pub async fn delete_removes_everything_of_a_conversation(store: Arc<dyn Store>) {
    let c = conv(None, NOW);
    let token = c.token_hash.clone().unwrap();
    store.create(c.clone()).await.unwrap();
    store
        .apply(c.id, message("canary"), Some(Ulid::new()), NOW)
        .await
        .unwrap();
    store.delete(c.id).await.unwrap();
    assert!(store.get(c.id).await.unwrap().is_none());
    assert!(store.read_log(c.id, 0).await.unwrap().is_empty());
    assert!(store.find_by_token(&token).await.unwrap().is_none());
    assert!(store.queue().await.unwrap().is_empty());
    assert!(store.conversations().await.unwrap().is_empty());
    assert!(matches!(
        store.apply(c.id, message("x"), None, NOW).await,
        Err(ApplyError::NotFound)
    ));
}

pub async fn refused_commands_change_nothing(store: Arc<dyn Store>) {
    let c = conv(None, NOW);
    store.create(c.clone()).await.unwrap();
    // As stored: with its arrival number.
    let c = store.get(c.id).await.unwrap().unwrap();
    let res = store
        .apply(c.id, Command::WrapUpExpired, Some(Ulid::new()), NOW)
        .await;
    assert!(matches!(res, Err(ApplyError::Refused(_))));
    assert_eq!(store.get(c.id).await.unwrap().unwrap(), c);
    assert_eq!(
        store
            .find_by_token(c.token_hash.as_deref().unwrap())
            .await
            .unwrap()
            .map(|c| c.id),
        Some(c.id)
    );
}

pub async fn operator_presence_updates_are_kept(store: Arc<dyn Store>) {
    let op = operator("A", 2);
    store.put_operator(op.clone()).await.unwrap();
    store
        .update_operator(op.id, OperatorUpdate::Presence(Presence::Away))
        .await
        .unwrap();
    let rec = store
        .update_operator(op.id, OperatorUpdate::Disconnected { at: NOW })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.presence, Presence::Away);
    assert!(!rec.connected);
    assert_eq!(rec.disconnected_since, Some(NOW));
    assert!(store
        .update_operator(Ulid::new(), OperatorUpdate::Connected)
        .await
        .unwrap()
        .is_none());
}

pub async fn an_operators_load_and_who_is_on_duty_follow_what_they_hold(store: Arc<dyn Store>) {
    let a = operator("A", 3);
    let b = operator("B", 2);
    store.put_operator(a.clone()).await.unwrap();
    store.put_operator(b.clone()).await.unwrap();
    let d = store.on_duty().await.unwrap();
    assert_eq!(
        (d.operators, d.capacity),
        (2, 5),
        "both operators are on duty"
    );
    store
        .update_operator(b.id, OperatorUpdate::Presence(Presence::Away))
        .await
        .unwrap();
    let d = store.on_duty().await.unwrap();
    assert_eq!(
        (d.operators, d.capacity),
        (1, 3),
        "an operator away is not on duty"
    );

    let (rec, load) = store.operator_load(a.id).await.unwrap().unwrap();
    assert_eq!((rec.name.as_str(), load), ("A", 0), "nobody held yet");
    let c = conv(None, NOW);
    store.create(c.clone()).await.unwrap();
    store
        .apply(
            c.id,
            Command::Take {
                operator: a.id,
                operator_name: "A".into(),
            },
            None,
            NOW + 1,
        )
        .await
        .unwrap();
    let (_, load) = store.operator_load(a.id).await.unwrap().unwrap();
    assert_eq!(load, 1, "one conversation held weighs one");
    store.delete(c.id).await.unwrap();
    let (_, load) = store.operator_load(a.id).await.unwrap().unwrap();
    assert_eq!(load, 0, "a deleted conversation weighs nothing");
    assert!(store.operator_load(Ulid::new()).await.unwrap().is_none());
}

pub async fn conversations_where_copies_only_what_it_picks(store: Arc<dyn Store>) {
    let ja = conv(Some("ja"), NOW);
    let en = conv(Some("en"), NOW + 1);
    store.create(ja.clone()).await.unwrap();
    store.create(en.clone()).await.unwrap();
    let picked = store
        .conversations_where(&|c| c.language.as_deref() == Some("en"))
        .await
        .unwrap();
    assert_eq!(picked.iter().map(|c| c.id).collect::<Vec<_>>(), vec![en.id]);
    assert_eq!(
        store.conversations().await.unwrap().len(),
        2,
        "nothing removed"
    );
}
