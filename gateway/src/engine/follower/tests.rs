//! The follower's life: registered until dropped or left, a superseded one's clean-up
//! leaves its successor, and catch-up hands out each entry after the cursor once, in order.

use std::sync::Arc;

use ulid::Ulid;

use super::*;
use crate::engine::{ConversationSettings, Outbound};
use crate::metrics::Metrics;
use crate::protocol::Channel;
use crate::store::MemoryStore;

fn engine() -> Arc<Engine> {
    Arc::new(Engine::new(
        Arc::new(MemoryStore::new()),
        ConversationSettings::default(),
        Arc::new(Metrics::new()),
    ))
}

/// A conversation with a few messages from the person: its id and every seq in its log.
async fn conversation(engine: &Engine, messages: usize) -> (ConversationId, Vec<u64>) {
    let (conv, _token) = engine.start_visitor(Channel::Web, None).await.unwrap();
    for i in 0..messages {
        engine
            .visitor_send(conv.id, Ulid::new(), format!("message {i}"))
            .await
            .unwrap();
    }
    let seqs = engine.store.read_log(conv.id, 0).await.unwrap();
    (conv.id, seqs.iter().map(|e| e.seq).collect())
}

#[tokio::test]
async fn dropping_a_follower_unregisters_it() {
    let engine = engine();
    let conv = Ulid::new();
    let (person, _inbox) = Follower::web_visitor(Arc::clone(&engine), conv, 8, 0);
    let (operator, _inbox, _slow) = Follower::operator(Arc::clone(&engine), Ulid::new(), 8);
    assert_eq!(engine.registry.counts(), (1, 1));
    drop(person);
    drop(operator);
    assert_eq!(engine.registry.counts(), (0, 0));
}

#[tokio::test]
async fn leaving_unregisters_once_and_says_whether_it_was_still_registered() {
    let engine = engine();
    let conv = Ulid::new();
    let (first, _inbox, _slow) = Follower::person(Arc::clone(&engine), conv, 8);
    assert!(first.leave());
    assert_eq!(engine.registry.counts(), (0, 0));
    let (old, _old_inbox, _slow) = Follower::person(Arc::clone(&engine), conv, 8);
    let (_new, _new_inbox, _slow) = Follower::person(Arc::clone(&engine), conv, 8);
    assert!(
        !old.leave(),
        "a superseded follower was not the registered one"
    );
    assert_eq!(engine.registry.counts(), (1, 0));
}

#[tokio::test]
async fn a_superseded_followers_drop_leaves_the_newer_one_registered() {
    let engine = engine();
    let conv = Ulid::new();
    let op = Ulid::new();
    let (old, mut old_inbox) = Follower::web_visitor(Arc::clone(&engine), conv, 8, 0);
    let (new, mut new_inbox) = Follower::web_visitor(Arc::clone(&engine), conv, 8, 0);
    let (old_op, _old_op_inbox, _slow) = Follower::operator(Arc::clone(&engine), op, 8);
    let (new_op, mut new_op_inbox, _slow) = Follower::operator(Arc::clone(&engine), op, 8);
    assert!(matches!(
        old_inbox.try_recv(),
        Some(Outbound::Close(4009, _))
    ));
    drop(old);
    drop(old_op);
    assert_eq!(engine.registry.counts(), (1, 1));
    engine.registry.to_visitor(conv, Outbound::Wake(conv));
    engine.registry.to_operator(op, Outbound::Recheck);
    assert!(matches!(new_inbox.try_recv(), Some(Outbound::Wake(_))));
    assert!(matches!(new_op_inbox.try_recv(), Some(Outbound::Recheck)));
    drop(new);
    drop(new_op);
    assert_eq!(engine.registry.counts(), (0, 0));
}

#[tokio::test]
async fn a_reregistered_follower_supersedes_its_old_handle_and_still_unregisters() {
    let engine = engine();
    let conv = Ulid::new();
    let (mut person, mut old_inbox, _slow) = Follower::person(Arc::clone(&engine), conv, 8);
    let (mut inbox, _slow) = person.reregister(8);
    assert!(matches!(
        old_inbox.try_recv(),
        Some(Outbound::Close(4009, _))
    ));
    engine.registry.to_visitor(conv, Outbound::Wake(conv));
    assert!(matches!(inbox.try_recv(), Some(Outbound::Wake(_))));
    drop(person);
    assert_eq!(engine.registry.counts(), (0, 0));
}

#[tokio::test]
async fn catch_up_hands_out_exactly_the_entries_after_the_cursor_once_in_order() {
    let engine = engine();
    let (conv, seqs) = conversation(&engine, 4).await;
    assert!(seqs.len() >= 4);
    let cursor = seqs[1];
    let (mut person, _inbox) = Follower::web_visitor(Arc::clone(&engine), conv, 8, cursor);
    let got: Vec<u64> = person
        .catch_up()
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(got, seqs[2..].to_vec());
    assert_eq!(person.cursor(), *seqs.last().unwrap());
    assert!(
        person.catch_up().await.unwrap().is_empty(),
        "each entry once"
    );

    // A live entry already caught up is not taken again; the next new one is.
    assert!(!person.take(*seqs.last().unwrap()));
    engine
        .visitor_send(conv, Ulid::new(), "one more".into())
        .await
        .unwrap();
    let next = *seqs.last().unwrap() + 1;
    assert!(!person.missed_before(next));
    assert!(person.take(next));
    assert!(person.catch_up().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_operator_catches_up_each_conversation_it_follows_from_its_own_cursor() {
    let engine = engine();
    let (a, a_seqs) = conversation(&engine, 2).await;
    let (b, b_seqs) = conversation(&engine, 3).await;
    let (mut op, _inbox, _slow) = Follower::operator(Arc::clone(&engine), Ulid::new(), 8);
    assert!(op.catch_up(a).await.unwrap().is_empty(), "not followed");
    op.follow(a, 0);
    op.follow(b, b_seqs[0]);
    op.follow(b, 0); // already followed: its cursor stays
    let seqs = |entries: Vec<LogEntry>| entries.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(seqs(op.catch_up(a).await.unwrap()), a_seqs);
    assert_eq!(seqs(op.catch_up(b).await.unwrap()), b_seqs[1..].to_vec());
    assert!(op.catch_up(a).await.unwrap().is_empty());
    assert!(op.unfollow(a));
    assert!(!op.unfollow(a));
    assert_eq!(op.following().collect::<Vec<_>>(), vec![b]);
}

/// Records what a connector would handle.
struct Seen(Vec<u64>);

impl Entries for Seen {
    const KIND: &'static str = "test";
    async fn entry(&mut self, entry: LogEntry) -> bool {
        self.0.push(entry.seq);
        false
    }
}

#[tokio::test]
async fn a_connector_gets_each_entry_once_in_order_whether_caught_up_or_live() {
    let engine = engine();
    let (conv, seqs) = conversation(&engine, 3).await;
    let (mut person, _inbox, _slow) = Follower::person(Arc::clone(&engine), conv, 8);
    let mut seen = Seen(Vec::new());
    // A live entry past a gap: what was missed first, then it, then nothing twice.
    let log = engine.store.read_log(conv, 0).await.unwrap();
    let last = log.last().unwrap().clone();
    assert!(!person.deliver_live(last.clone(), &mut seen).await);
    assert!(!person.deliver(&mut seen).await);
    assert!(!person.deliver_live(last, &mut seen).await);
    assert_eq!(seen.0, seqs);
}

#[tokio::test]
async fn a_person_behind_when_the_conversation_ends_still_gets_every_entry_once_in_order() {
    let engine = engine();
    let (conv, _token) = engine.start_visitor(Channel::Web, None).await.unwrap();
    // Registered, but reads nothing until the conversation has ended and its log is deleted.
    let (mut person, mut inbox) = Follower::web_visitor(Arc::clone(&engine), conv.id, 64, 0);
    for i in 0..3 {
        engine
            .visitor_send(conv.id, Ulid::new(), format!("message {i}"))
            .await
            .unwrap();
    }
    let logged: Vec<u64> = engine
        .store
        .read_log(conv.id, 0)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    engine.visitor_end(conv.id, Ulid::new()).await.unwrap();
    assert!(
        engine.store.read_log(conv.id, 0).await.unwrap().is_empty(),
        "the log is deleted at the end"
    );
    let mut seen = Vec::new();
    while let Some(out) = inbox.try_recv() {
        match out {
            Outbound::Wake(_) => {
                seen.extend(person.catch_up().await.unwrap().iter().map(|e| e.seq))
            }
            Outbound::Final(entries) => {
                seen.extend(entries.iter().filter(|e| person.take(e.seq)).map(|e| e.seq))
            }
            Outbound::Frame(msg) => {
                if let crate::protocol::ServerMsg::Event { seq, .. } = *msg {
                    if person.take(seq) {
                        seen.push(seq);
                    }
                }
            }
            _ => {}
        }
    }
    assert!(seen.len() > logged.len(), "the ending's own entries follow");
    assert_eq!(
        &seen[..logged.len()],
        &logged[..],
        "every entry before the end, in order"
    );
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "once each, in order: {seen:?}"
    );
}
