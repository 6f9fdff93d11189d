//! The engine's settings (`[conversation]` in the configuration): timeouts, grace periods,
//! capacity and wrap-up categories. Owned here; `config` assembles it into `Settings`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ConversationSettings {
    /// An offer not accepted within this moves on.
    pub offer_timeout_ms: u64,
    /// How long a disconnected person keeps their place (or conversation).
    pub visitor_grace_ms: u64,
    /// How long a disconnected operator keeps their conversations before they are requeued.
    pub operator_grace_ms: u64,
    /// An active conversation with no message for this long ends (to wrap-up).
    pub idle_limit_ms: u64,
    /// An active conversation ends after this long, counted from when an operator answered.
    pub max_duration_ms: u64,
    /// A wrap-up left open this long closes by itself with category `other`.
    pub wrap_up_ms: u64,
    /// After this long waiting, any operator may be offered a conversation whatever its language.
    pub language_fallback_ms: u64,
    /// Conversations an operator holds at once, unless their account says otherwise.
    pub default_capacity: u32,
    /// Offer the head of the queue to free operators automatically (else they take it).
    pub auto_offer: bool,
    /// How often timers (offers, grace periods, idle) are checked.
    pub tick_ms: u64,
    /// Wrap-up categories, in display order.
    pub categories: Vec<String>,
}

impl Default for ConversationSettings {
    fn default() -> Self {
        ConversationSettings {
            offer_timeout_ms: 30_000,
            visitor_grace_ms: 120_000,
            operator_grace_ms: 60_000,
            idle_limit_ms: 30 * 60_000,
            max_duration_ms: 2 * 60 * 60_000,
            wrap_up_ms: 10 * 60_000,
            language_fallback_ms: 2 * 60_000,
            default_capacity: 2,
            auto_offer: true,
            tick_ms: 250,
            categories: [
                "loneliness",
                "family",
                "school_work",
                "health",
                "money",
                "violence",
                "other",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

impl ConversationSettings {
    /// The lengths the timers count, for [`crate::conversation::Deadlines`].
    pub fn deadlines(&self) -> crate::conversation::Deadlines {
        crate::conversation::Deadlines {
            visitor_grace_ms: self.visitor_grace_ms,
            idle_limit_ms: self.idle_limit_ms,
            max_duration_ms: self.max_duration_ms,
            wrap_up_ms: self.wrap_up_ms,
        }
    }
}
