//! A coordinator alert: an operator asked for help, or flagged an emergency. The engine raises
//! and acknowledges them (`engine::stats`), the coordinator view shows them, and the cluster
//! bus carries them to the other nodes; a type of its own so that the bus needs nothing of the
//! engine. It names the operator and the conversation, never anything of its content.

use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::conversation::ConversationId;
use crate::protocol::Millis;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Alert {
    pub id: Ulid,
    /// `help` or `emergency`.
    pub kind: String,
    pub operator: String,
    pub conversation: ConversationId,
    /// For emergencies: the category flagged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    pub at: Millis,
    pub acknowledged_by: Option<String>,
    #[serde(skip)]
    pub acknowledged_at: Option<Millis>,
}
