//! What the person does: start or resume a conversation, connect and disconnect, send, type,
//! acknowledge what they read, retract a message, and end. The same for every channel: the web
//! widget's socket and the LINE and phone connectors call these.

use ulid::Ulid;

use super::{hash_token, new_token, Engine, EngineError, Outbound};
use crate::conversation::{Command, Conversation, ConversationId, OperatorId, State};
use crate::protocol::{Channel, ClientId, ServerMsg, Side};

impl Engine {
    /// Starts a conversation; returns it and the resume token (only its hash is stored).
    pub async fn start_visitor(
        &self,
        channel: Channel,
        language: Option<String>,
    ) -> Result<(Conversation, String), EngineError> {
        self.start_conversation(channel, language, 0).await
    }

    /// Starts a conversation with a queue priority (0 is normal; higher is served first), for
    /// connectors whose channels are configured with one.
    pub async fn start_conversation(
        &self,
        channel: Channel,
        language: Option<String>,
        priority: u8,
    ) -> Result<(Conversation, String), EngineError> {
        let token = new_token();
        let now = self.now_ms();
        let mut conv = Conversation::new(
            Ulid::new(),
            channel,
            language,
            Some(hash_token(&token)),
            now,
        );
        conv.priority = priority;
        self.store.create(conv.clone()).await?;
        {
            let mut stats = self.stats();
            stats.roll_day(now);
            stats.today.started += 1;
        }
        self.count_today(now, "started").await;
        self.metrics.started(channel.as_str());
        tracing::info!(conversation = %conv.id, channel = channel.as_str(), "conversation started");
        self.wake_dispatch();
        Ok((conv, token))
    }

    /// The live conversation a resume token opens.
    pub async fn resume_visitor(&self, token: &str) -> Result<Option<Conversation>, EngineError> {
        Ok(self.store.find_by_token(&hash_token(token)).await?)
    }

    pub async fn visitor_connection(&self, id: ConversationId, connected: bool) {
        let cmd = if connected {
            Command::VisitorConnected
        } else {
            Command::VisitorDisconnected
        };
        let _ = self.apply(id, cmd, None).await;
    }

    /// Stores a chat message from either side; returns its seq (the first one on a retry).
    pub(super) async fn store_message(
        &self,
        conv: ConversationId,
        from: Side,
        operator: Option<OperatorId>,
        client_id: ClientId,
        text: String,
    ) -> Result<Option<u64>, EngineError> {
        let size = text.len();
        let cmd = Command::Message {
            from,
            operator,
            id: client_id,
            text,
        };
        let a = self.apply(conv, cmd, Some(client_id.ulid())).await?;
        if a.duplicate.is_none() {
            let sender = if from == Side::Visitor {
                "visitor"
            } else {
                "operator"
            };
            self.metrics.message(from);
            tracing::debug!(conversation = %conv, from = sender, bytes = size, "message stored");
        }
        Ok(Self::seq_of(&a))
    }

    /// Stores a message from the person. The client id is echoed in its log entry as sent (a
    /// connector's own ids are ULIDs).
    pub async fn visitor_send(
        &self,
        id: ConversationId,
        client_id: impl Into<ClientId>,
        text: String,
    ) -> Result<Option<u64>, EngineError> {
        self.store_message(id, Side::Visitor, None, client_id.into(), text)
            .await
    }

    pub async fn visitor_typing(&self, id: ConversationId, active: bool) {
        if let Ok(Some(conv)) = self.store.get(id).await {
            if let State::Active { operator } = conv.state {
                self.to_operator(
                    operator,
                    Outbound::frame(ServerMsg::Typing {
                        conversation: Some(id),
                        from: Side::Visitor,
                        active,
                    }),
                );
            }
        }
    }

    pub async fn ack(&self, id: ConversationId, side: Side, seq: u64) {
        let _ = self
            .store
            .apply(id, Command::Ack { side, seq }, None, self.now_ms())
            .await;
    }

    /// The person withdraws an earlier message (identified by its client id).
    pub async fn visitor_retract(
        &self,
        id: ConversationId,
        message: Ulid,
        client_id: Ulid,
    ) -> Result<(), EngineError> {
        let cmd = Command::VisitorRetract { id: message.into() };
        self.apply(id, cmd, Some(client_id)).await?;
        Ok(())
    }

    pub async fn visitor_end(
        &self,
        id: ConversationId,
        client_id: Ulid,
    ) -> Result<(), EngineError> {
        self.apply(id, Command::VisitorEnd, Some(client_id)).await?;
        Ok(())
    }
}
