//! Routing rules: who is offered whom. Pure functions over snapshots, so that every store (and a
//! Redis transaction later) applies exactly the same rules, and so they can be tested alone.
//!
//! The rules, in order:
//! 1. The queue is served oldest first within priority; conversations handed back to the queue
//!    (operator gone, handed back, transfer declined) sort before first-time arrivals
//!    ([`crate::conversation::QueueKey`]).
//! 2. An operator is eligible when on duty, connected, holding no pending offer, and with free
//!    capacity for the conversation's weight (a phone call will weigh a whole capacity).
//! 3. Language is matched where the person declared one and the operator lists languages. After
//!    `language_fallback_ms` of waiting, any operator is eligible: nobody waits forever for a
//!    language.
//! 4. An operator who declined (or let lapse) an offer of a conversation is not offered it again
//!    until it is requeued; they can still take it themselves.
//! 5. Among eligible operators the least loaded wins, then the one idle longest.
//!
//! A conversation that no operator is eligible for is skipped, not blocking those behind it.

use crate::conversation::{Conversation, ConversationId, OperatorId};
use crate::protocol::{Channel, Millis, Presence};

/// An operator as routing sees them.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorSlot<'a> {
    pub id: OperatorId,
    /// Borrowed from the operator's record: the dispatcher builds every operator's slot on
    /// every wake, and copying the list was most of what that cost.
    pub languages: &'a [String],
    pub capacity: u32,
    pub load: u32,
    pub presence: Presence,
    pub connected: bool,
    pub has_offer: bool,
    /// When they were last given a conversation (for fairness between equally loaded operators).
    pub last_assigned: Millis,
    /// Can be bridged phone calls.
    pub takes_calls: bool,
}

impl OperatorSlot<'_> {
    fn free_for(&self, weight: u32) -> bool {
        self.presence == Presence::OnDuty && self.connected && self.load + weight <= self.capacity
    }

    /// Whether [`plan`] may offer this operator anyone now: on duty, connected, no offer
    /// pending, room for one more. A dispatcher with none such has nothing to read.
    pub fn can_be_offered(&self) -> bool {
        !self.has_offer && self.free_for(1)
    }
}

/// Whether `op` speaks what the conversation needs, at `now`.
pub fn language_matches(
    conv: &Conversation,
    languages: &[String],
    now: Millis,
    fallback_ms: u64,
) -> bool {
    match &conv.language {
        None => true,
        Some(_) if languages.is_empty() => true,
        Some(lang) => {
            languages.iter().any(|l| l == lang) || now.saturating_sub(conv.queued_at) >= fallback_ms
        }
    }
}

/// Plans offers for the queue (already sorted by queue key) against the operators. Returns
/// `(conversation, operator)` pairs; `ops` is updated as if the offers were made.
pub fn plan<'a>(
    queue: impl IntoIterator<Item = &'a Conversation>,
    ops: &mut [OperatorSlot],
    now: Millis,
    fallback_ms: u64,
) -> Vec<(ConversationId, OperatorId)> {
    let mut offers = Vec::new();
    for conv in queue {
        if !ops.iter().any(|o| o.can_be_offered()) {
            break;
        }
        let best = ops
            .iter_mut()
            .filter(|o| !o.has_offer && o.free_for(conv.weight_on(o.capacity)))
            .filter(|o| !conv.declined_by.contains(&o.id))
            .filter(|o| language_matches(conv, o.languages, now, fallback_ms))
            .filter(|o| conv.channel != Channel::Phone || o.takes_calls)
            .min_by_key(|o| (o.load, o.last_assigned));
        if let Some(op) = best {
            op.has_offer = true;
            op.load += conv.weight_on(op.capacity);
            op.last_assigned = now;
            offers.push((conv.id, op.id));
        }
    }
    offers
}

/// The first queued conversation `op` may take themselves (declines do not matter here).
pub fn next_for<'a>(
    queue: impl IntoIterator<Item = &'a Conversation>,
    op: &OperatorSlot,
    now: Millis,
    fallback_ms: u64,
) -> Option<ConversationId> {
    queue
        .into_iter()
        .find(|c| {
            op.load + c.weight_on(op.capacity) <= op.capacity
                && (c.channel != Channel::Phone || op.takes_calls)
                && language_matches(c, op.languages, now, fallback_ms)
        })
        .map(|c| c.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ulid::Ulid;

    const FALLBACK: u64 = 120_000;

    /// A queued conversation; its arrival number follows `queued_at`, as a store's would.
    fn conv(lang: Option<&str>, queued_at: Millis) -> Conversation {
        let mut c = Conversation::new(
            Ulid::new(),
            Channel::Web,
            lang.map(str::to_owned),
            None,
            queued_at,
        );
        c.arrival = queued_at + 1;
        c
    }

    fn op(langs: &[&str], capacity: u32, load: u32) -> OperatorSlot<'static> {
        OperatorSlot {
            id: Ulid::new(),
            languages: Vec::leak(langs.iter().map(|s| s.to_string()).collect()),
            capacity,
            load,
            presence: Presence::OnDuty,
            connected: true,
            has_offer: false,
            last_assigned: 0,
            takes_calls: true,
        }
    }

    fn sorted(mut q: Vec<Conversation>) -> Vec<Conversation> {
        q.sort_by_key(|c| c.queue_key());
        q
    }

    #[test]
    fn oldest_is_offered_first() {
        let q = sorted(vec![conv(None, 20), conv(None, 10)]);
        let mut ops = vec![op(&[], 2, 0)];
        let offers = plan(&q, &mut ops, 100, FALLBACK);
        assert_eq!(offers.len(), 1, "one pending offer per operator");
        assert_eq!(offers[0].0, q[0].id);
        assert_eq!(q[0].queued_at, 10);
    }

    #[test]
    fn higher_priority_goes_before_older() {
        let old = conv(None, 10);
        let mut urgent = conv(None, 50);
        urgent.priority = 5;
        let q = sorted(vec![old, urgent.clone()]);
        assert_eq!(q[0].id, urgent.id);
    }

    #[test]
    fn only_an_operator_on_duty_connected_with_room_and_no_offer_can_be_offered() {
        assert!(op(&[], 2, 1).can_be_offered());
        assert!(!op(&[], 2, 2).can_be_offered(), "full");
        let mut o = op(&[], 2, 0);
        o.has_offer = true;
        assert!(!o.can_be_offered(), "an offer pending");
        let mut o = op(&[], 2, 0);
        o.presence = Presence::Away;
        assert!(!o.can_be_offered(), "not on duty");
        let mut o = op(&[], 2, 0);
        o.connected = false;
        assert!(!o.can_be_offered(), "no console open");
    }

    #[test]
    fn capacity_is_respected() {
        let q = sorted(vec![conv(None, 1)]);
        let mut ops = vec![op(&[], 2, 2)];
        assert!(plan(&q, &mut ops, 10, FALLBACK).is_empty());
    }

    #[test]
    fn operators_away_off_duty_or_disconnected_get_nothing() {
        let q = sorted(vec![conv(None, 1)]);
        let mut away = op(&[], 2, 0);
        away.presence = Presence::Away;
        let mut off = op(&[], 2, 0);
        off.presence = Presence::OffDuty;
        let mut gone = op(&[], 2, 0);
        gone.connected = false;
        let mut ops = vec![away, off, gone];
        assert!(plan(&q, &mut ops, 10, FALLBACK).is_empty());
    }

    #[test]
    fn language_is_matched_then_falls_back_after_the_limit() {
        let q = sorted(vec![conv(Some("en"), 0)]);
        let mut ops = vec![op(&["ja"], 2, 0)];
        assert!(plan(&q, &mut ops, 1_000, FALLBACK).is_empty());
        let offers = plan(&q, &mut ops, FALLBACK, FALLBACK);
        assert_eq!(offers.len(), 1);
    }

    #[test]
    fn a_conversation_nobody_can_serve_does_not_block_the_next() {
        let q = sorted(vec![conv(Some("en"), 0), conv(Some("ja"), 5)]);
        let mut ops = vec![op(&["ja"], 2, 0)];
        let offers = plan(&q, &mut ops, 10, FALLBACK);
        assert_eq!(offers, vec![(q[1].id, ops[0].id)]);
    }

    #[test]
    fn least_loaded_operator_wins() {
        let q = sorted(vec![conv(None, 0)]);
        let mut ops = vec![op(&[], 3, 2), op(&[], 3, 0), op(&[], 3, 1)];
        let offers = plan(&q, &mut ops, 10, FALLBACK);
        assert_eq!(offers[0].1, ops[1].id);
    }

    #[test]
    fn several_operators_receive_offers_in_queue_order() {
        let q = sorted(vec![conv(None, 0), conv(None, 1), conv(None, 2)]);
        let mut ops = vec![op(&[], 2, 0), op(&[], 2, 0)];
        let offers = plan(&q, &mut ops, 10, FALLBACK);
        assert_eq!(offers.len(), 2);
        assert_eq!(offers[0].0, q[0].id);
        assert_eq!(offers[1].0, q[1].id);
        assert_ne!(offers[0].1, offers[1].1);
    }

    #[test]
    fn a_decliner_is_not_offered_the_same_conversation_again() {
        let mut c = conv(None, 0);
        let o = op(&[], 2, 0);
        c.declined_by.push(o.id);
        let q = sorted(vec![c]);
        let mut ops = vec![o.clone()];
        assert!(plan(&q, &mut ops, 10, FALLBACK).is_empty());
        assert_eq!(next_for(&q, &o, 10, FALLBACK), Some(q[0].id));
    }

    #[test]
    fn a_phone_call_takes_an_operators_whole_capacity() {
        let mut call = conv(None, 0);
        call.channel = Channel::Phone;
        let q = sorted(vec![call.clone()]);
        let mut busy = vec![op(&[], 2, 1)];
        assert!(
            plan(&q, &mut busy, 10, FALLBACK).is_empty(),
            "not while chatting"
        );
        let mut free = vec![op(&[], 2, 0)];
        assert_eq!(plan(&q, &mut free, 10, FALLBACK).len(), 1);
        assert_eq!(free[0].load, 2, "the call fills the operator");
        assert_eq!(next_for(&q, &op(&[], 3, 1), 10, FALLBACK), None);
        let mut no_phone = op(&[], 2, 0);
        no_phone.takes_calls = false;
        assert!(
            plan(&q, &mut [no_phone.clone()], 10, FALLBACK).is_empty(),
            "calls go only to operators with a phone to bridge to"
        );
        assert_eq!(next_for(&q, &no_phone, 10, FALLBACK), None);
    }

    #[test]
    fn take_next_respects_language_and_capacity() {
        let q = sorted(vec![conv(Some("en"), 0), conv(Some("ja"), 1)]);
        assert_eq!(next_for(&q, &op(&["ja"], 2, 0), 5, FALLBACK), Some(q[1].id));
        assert_eq!(next_for(&q, &op(&["ja"], 2, 2), 5, FALLBACK), None);
    }
}
