//! Where a conversation is in its life ([`State`], and [`StateKind`] without its data), and what
//! each side sees of it: the person's [`VisitorState`], the holding operator's summary.

use serde::{Deserialize, Serialize};

use super::{Conversation, OperatorId};
use crate::protocol::{
    ConversationSummary, EmergencySummary, Millis, OperatorConvState, VisitorState,
};

/// Where a conversation is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    Queued,
    Offered {
        operator: OperatorId,
        expires_at: Millis,
        /// Set when a colleague handed the conversation over: declining sends it to the front of
        /// the queue rather than back to its place.
        transfer_from: Option<String>,
    },
    Active {
        operator: OperatorId,
    },
    WrapUp {
        operator: OperatorId,
        since: Millis,
    },
    Closed,
    Abandoned,
}

/// The state without its data, for metrics, matching and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateKind {
    Queued,
    Offered,
    Active,
    WrapUp,
    Closed,
    Abandoned,
}

impl StateKind {
    pub const ALL: [StateKind; 6] = [
        StateKind::Queued,
        StateKind::Offered,
        StateKind::Active,
        StateKind::WrapUp,
        StateKind::Closed,
        StateKind::Abandoned,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(self, StateKind::Closed | StateKind::Abandoned)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StateKind::Queued => "queued",
            StateKind::Offered => "offered",
            StateKind::Active => "active",
            StateKind::WrapUp => "wrap_up",
            StateKind::Closed => "closed",
            StateKind::Abandoned => "abandoned",
        }
    }
}

impl State {
    pub fn kind(&self) -> StateKind {
        match self {
            State::Queued => StateKind::Queued,
            State::Offered { .. } => StateKind::Offered,
            State::Active { .. } => StateKind::Active,
            State::WrapUp { .. } => StateKind::WrapUp,
            State::Closed => StateKind::Closed,
            State::Abandoned => StateKind::Abandoned,
        }
    }

    /// The operator who holds this conversation (offered, active or wrapping up).
    pub fn operator(&self) -> Option<OperatorId> {
        match self {
            State::Offered { operator, .. }
            | State::Active { operator }
            | State::WrapUp { operator, .. } => Some(*operator),
            _ => None,
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, State::Closed | State::Abandoned)
    }
}

impl Conversation {
    /// What the person sees.
    pub fn visitor_state(&self) -> VisitorState {
        match &self.state {
            State::Queued | State::Offered { .. } => VisitorState::Queued,
            State::Active { .. } => VisitorState::Active,
            State::WrapUp { .. } | State::Closed | State::Abandoned => VisitorState::Ended,
        }
    }

    /// What the holding operator sees. `None` if no operator holds it.
    pub fn summary(&self) -> Option<ConversationSummary> {
        let state = match self.state {
            State::Offered { .. } => OperatorConvState::Offered,
            State::Active { .. } => OperatorConvState::Active,
            State::WrapUp { .. } => OperatorConvState::WrapUp,
            _ => return None,
        };
        Some(ConversationSummary {
            id: self.id,
            state,
            channel: self.channel,
            language: self.language.clone(),
            started_at: self.created_at,
            last_seq: self.last_seq,
            visitor_connected: self.visitor_connected,
            handover_note: self.handover_note.clone(),
            emergency: self.emergency.as_ref().map(|e| EmergencySummary {
                open: e.open,
                categories: e.categories.clone(),
                raised_at: e.raised_at,
                raised_by: e.raised_by.clone(),
                acknowledged_by: None,
            }),
        })
    }
}
