//! Where a waiting conversation sorts ([`QueueKey`], the arrival number the store gives) and how
//! much of an operator's capacity it takes once answered.

use serde::{Deserialize, Serialize};

use super::{Conversation, ConversationId, State};
use crate::protocol::Channel;

/// Where a queued conversation sorts. Lower sorts first: higher priority, then conversations
/// handed back to the queue (they go to the front), then arrival order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QueueKey {
    /// `u8::MAX - priority`, so that higher priority sorts first.
    pub inverse_priority: u8,
    /// 0 for a conversation returned to the queue, 1 for a first-time arrival.
    pub tier: u8,
    /// [`Conversation::arrival`]: a number the store gives, unique and increasing, not a
    /// time: a millisecond timestamp ties for people who arrive together (30 people in one
    /// LINE webhook), and the tie was broken by the random conversation id.
    pub arrival: u64,
    /// Only ever decides between conversations not yet numbered (never in a store).
    pub id: ConversationId,
}

impl Conversation {
    /// How much of an operator's `capacity` this conversation takes: a phone call takes all of
    /// it (an operator on the phone cannot also chat); others take their `weight`.
    pub fn weight_on(&self, capacity: u32) -> u32 {
        if self.channel == Channel::Phone {
            capacity.max(1)
        } else {
            self.weight
        }
    }

    pub fn queue_key(&self) -> QueueKey {
        QueueKey {
            inverse_priority: u8::MAX - self.priority,
            tier: if self.requeued { 0 } else { 1 },
            arrival: self.arrival,
            id: self.id,
        }
    }

    /// True when the conversation has (re)entered the queue and the store must give it the
    /// next arrival number before storing it.
    pub fn needs_arrival(&self) -> bool {
        self.state == State::Queued && self.arrival == 0
    }
}
