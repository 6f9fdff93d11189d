//! The inbound worker: applies webhook events to the engine, one at a time and in arrival
//! order, so two events of one person never race (two first messages cannot start two
//! conversations). It only calls the engine and queues work for a conversation's tasks; every
//! call to the Messaging API happens elsewhere, so a slow API never holds up other people.
//!
//! | event | what happens |
//! | --- | --- |
//! | `follow` | greeting with the privacy notice (reply token) |
//! | `message` (text) | into the conversation, started on the first message with the queue notice; a coordinator's alert link code (`TSUNAGU-…`) is redeemed instead (`alerts`) and starts nothing |
//! | `message` (other) | a placeholder for the operator; the person is told once that only text is read |
//! | `unsend` | the message is retracted from the operator's view |
//! | `unfollow` | the conversation ends (nothing more is sent: the person blocked the account) |
//! | `postback` | `end` ends the conversation, `start` starts one; other data is ignored |
//! | group or room source | a polite reply (at most hourly per chat), no conversation |
//! | `mode: standby` | ignored: another channel is handling this chat |

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::client::retry_key;
use super::events::{Event, MessageContent};
use super::notices::Notices;
use super::person::{self, client_id, Control, ReplyToken};
use super::{keys, ChannelCtx, Line, PersonKey, LINK_TTL_MS};
use crate::conversation::ConversationId;
use crate::protocol::{validate_text, Channel, ErrorCode, ServerMsg, MAX_TEXT_CHARS};
use crate::store::PersonLink;

pub async fn run(
    line: Arc<Line>,
    mut rx: mpsc::UnboundedReceiver<(Arc<ChannelCtx>, Event)>,
    shutdown: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            n = rx.recv() => n,
            _ = shutdown.cancelled() => None,
        };
        let Some((ch, event)) = next else { break };
        let kind = event.kind.clone();
        let started = std::time::Instant::now();
        line.handle(&ch, event).await;
        tracing::debug!(
            channel = %ch.id,
            event = %kind,
            ms = started.elapsed().as_millis() as u64,
            "LINE event handled"
        );
    }
}

/// The person's message text, in parts the engine accepts (LINE allows 5 000 characters, the
/// gateway 4 000): empty parts are dropped.
fn parts_of(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(MAX_TEXT_CHARS)
        .filter_map(|c| validate_text(&c.iter().collect::<String>()).ok())
        .collect()
}

impl Line {
    async fn handle(self: &Arc<Self>, ch: &Arc<ChannelCtx>, e: Event) {
        if e.is_standby() {
            tracing::debug!(channel = %ch.id, event = %e.kind, "LINE standby event ignored");
            return;
        }
        let Some(source) = e.source.as_ref() else {
            return;
        };
        match source.kind.as_str() {
            "user" => {}
            "group" | "room" => return self.group_chat(ch, &e),
            _ => return,
        }
        let Some(user) = source.user_id.clone() else {
            return;
        };
        if e.is_redelivery() {
            tracing::info!(channel = %ch.id, event = %e.kind, "LINE redelivered event");
        }
        let key: PersonKey = (ch.id.clone(), user);
        match e.kind.as_str() {
            "follow" => self.follow(ch, &key, e),
            "unfollow" => self.unfollow(ch, &key, &e).await,
            "message" => self.message(ch, &key, e).await,
            "unsend" => self.unsend(ch, &key, &e).await,
            "postback" => self.postback(ch, &key, e).await,
            other => tracing::debug!(channel = %ch.id, event = %other, "LINE event type ignored"),
        }
    }

    /// Friend added or unblocked: the greeting with the privacy notice. The conversation
    /// starts with the first message, so nobody waits in the queue for someone who only looked.
    fn follow(self: &Arc<Self>, ch: &Arc<ChannelCtx>, key: &PersonKey, e: Event) {
        let text = Notices::for_language(&ch.language).greeting.to_owned();
        let reply = e.reply_token.map(ReplyToken::new);
        let push_key = retry_key(&[&ch.id, "follow", &e.webhook_event_id]);
        self.notify_without_conversation(ch, Some(key.1.clone()), reply, vec![text], push_key);
    }

    async fn unfollow(&self, ch: &ChannelCtx, key: &PersonKey, e: &Event) {
        let link = self.people().remove(key);
        let skey = keys::person_key(ch, &key.1);
        let conv = match &link {
            Some(link) => {
                link.blocked.store(true, Ordering::SeqCst);
                Some(link.conversation)
            }
            // Followed by other nodes only.
            None => self
                .engine
                .linked_person(&skey)
                .await
                .ok()
                .flatten()
                .map(|l| l.conversation),
        };
        let Some(conv) = conv else { return };
        let cid = client_id(&[&ch.id, "event", &e.webhook_event_id]);
        if let Err(err) = self.engine.visitor_end(conv, cid).await {
            tracing::info!(conversation = %conv, code = err.code().as_str(), "LINE unfollow: conversation already over");
            if let Some(link) = &link {
                let _ = link.ctl.send(Control::Stop);
            }
        }
        let _ = self.engine.unlink_person(&skey, conv).await;
        tracing::info!(conversation = %conv, "LINE person blocked the account; conversation ended");
    }

    /// The live conversation of `key`, started if there is none. The flag is true when it was
    /// started now. Which conversation a person is in comes from the store (any node may have
    /// started it); this node follows it from its first webhook here.
    async fn conversation(
        self: &Arc<Self>,
        ch: &Arc<ChannelCtx>,
        key: &PersonKey,
    ) -> Option<(ConversationId, bool)> {
        let skey = keys::person_key(ch, &key.1);
        let local = self.people().get(key).map(|l| l.conversation);
        let linked = match local {
            // Renews the link's TTL; answers the conversation another node linked if ours
            // ended meanwhile.
            Some(conv) => self
                .engine
                .link_person(&skey, &Self::link_to(conv), LINK_TTL_MS)
                .await
                .map(Some),
            None => self.engine.linked_person(&skey).await,
        };
        let linked = match linked {
            Ok(l) => l.map(|l| l.conversation),
            Err(e) => {
                tracing::error!(channel = %ch.id, error = %e, "LINE link could not be read");
                return None;
            }
        };
        if let Some(conv) = linked {
            if local != Some(conv) {
                if let Some(old) = local {
                    self.drop_link(key, old);
                }
                self.follow_here(ch, key, conv);
            }
            return Some((conv, false));
        }
        let (conv, _token) = match self
            .engine
            .start_conversation(Channel::Line, Some(ch.language.clone()), ch.priority)
            .await
        {
            Ok(c) => c,
            Err(err) => {
                tracing::error!(channel = %ch.id, code = err.code().as_str(), "LINE conversation could not start");
                return None;
            }
        };
        let won = match self
            .engine
            .link_person(&skey, &Self::link_to(conv.id), LINK_TTL_MS)
            .await
        {
            Ok(l) => l.conversation,
            Err(e) => {
                tracing::error!(conversation = %conv.id, error = %e, "LINE link could not be stored");
                conv.id
            }
        };
        if won != conv.id {
            // Another node started one for this person at the same moment: theirs holds.
            tracing::info!(conversation = %conv.id, "LINE conversation started twice at once; ending the spare");
            let cid = client_id(&[&ch.id, "spare", &conv.id.to_string()]);
            let _ = self.engine.visitor_end(conv.id, cid).await;
            self.follow_here(ch, key, won);
            return Some((won, false));
        }
        self.follow_here(ch, key, conv.id);
        tracing::info!(conversation = %conv.id, channel = %ch.id, "LINE conversation started");
        Some((conv.id, true))
    }

    /// The person's live conversation if they have one (followed here from now on), without
    /// starting one.
    async fn existing(
        self: &Arc<Self>,
        ch: &Arc<ChannelCtx>,
        key: &PersonKey,
    ) -> Option<ConversationId> {
        if let Some(conv) = self.people().get(key).map(|l| l.conversation) {
            return Some(conv);
        }
        let skey = keys::person_key(ch, &key.1);
        let conv = self.engine.linked_person(&skey).await.ok()??.conversation;
        self.follow_here(ch, key, conv);
        Some(conv)
    }

    fn link_to(conv: ConversationId) -> PersonLink {
        // No route: the LINE user id comes with every webhook, and the store never holds it.
        PersonLink {
            conversation: conv,
            route: String::new(),
        }
    }

    /// Starts this node's follower of `conv` for the person `key`.
    fn follow_here(self: &Arc<Self>, ch: &Arc<ChannelCtx>, key: &PersonKey, conv: ConversationId) {
        // The route back, for an escalation record should one be needed.
        self.engine
            .set_channel_ref(conv, format!("line:{}:{}", ch.id, key.1));
        let link = person::spawn(self, ch, conv, key.1.clone());
        self.people().insert(key.clone(), link);
    }

    /// The notices that open a conversation: received (with the privacy promise) and the
    /// queue position with a rough wait.
    async fn opening(&self, ch: &ChannelCtx, conv: ConversationId) -> Vec<String> {
        let n = Notices::for_language(&ch.language);
        let mut texts = vec![n.started.to_owned()];
        if let Some(ServerMsg::QueuePosition {
            position,
            wait_minutes,
            ..
        }) = self.engine.position_of(conv).await
        {
            texts.push(n.queue(position, wait_minutes));
        }
        texts
    }

    async fn message(self: &Arc<Self>, ch: &Arc<ChannelCtx>, key: &PersonKey, e: Event) {
        let Some(m) = e.message.as_ref() else { return };
        // A coordinator linking their LINE account for alerts: before anything else, and never
        // a conversation.
        if m.kind == "text" {
            if let Some(code) =
                crate::oncall::link::is_link_code(m.text.as_deref().unwrap_or_default())
            {
                return self.link_code(ch, key, &e, &code).await;
            }
        }
        let notices = Notices::for_language(&ch.language);
        let is_text = m.kind == "text";
        let parts = if is_text {
            parts_of(m.text.as_deref().unwrap_or_default())
        } else {
            vec![notices.placeholder(&m.kind)]
        };
        // A link may point at a conversation that just ended: then start a new one (once).
        for _ in 0..2 {
            let Some((conv, started)) = self.conversation(ch, key).await else {
                return;
            };
            match self.store_parts(ch, conv, m, &parts).await {
                Ok(last_seq) => {
                    self.after_message(ch, key, conv, started, is_text, &e, m, last_seq)
                        .await;
                    return;
                }
                Err(code)
                    if !started && matches!(code, ErrorCode::NotFound | ErrorCode::OutOfOrder) =>
                {
                    self.drop_link(key, conv);
                    // Gone for every node: the next try starts a new one.
                    let skey = keys::person_key(ch, &key.1);
                    if let Err(e) = self.engine.unlink_person(&skey, conv).await {
                        tracing::warn!(conversation = %conv, error = %e, "LINE link could not be removed");
                    }
                }
                Err(code) => {
                    tracing::error!(conversation = %conv, code = code.as_str(), "LINE message could not be stored");
                    return;
                }
            }
        }
    }

    /// Stores the parts of one LINE message; returns the seq of the last part.
    async fn store_parts(
        &self,
        ch: &ChannelCtx,
        conv: ConversationId,
        m: &MessageContent,
        parts: &[String],
    ) -> Result<Option<u64>, ErrorCode> {
        let mut last = None;
        for (i, text) in parts.iter().enumerate() {
            let cid = client_id(&[&ch.id, "message", &m.id, &i.to_string()]);
            last = self.engine.visitor_send(conv, cid, text.clone()).await?;
        }
        Ok(last)
    }

    #[allow(clippy::too_many_arguments)]
    async fn after_message(
        &self,
        ch: &ChannelCtx,
        key: &PersonKey,
        conv: ConversationId,
        started: bool,
        is_text: bool,
        e: &Event,
        m: &MessageContent,
        last_seq: Option<u64>,
    ) {
        let notices = Notices::for_language(&ch.language);
        let mut texts = if started {
            self.opening(ch, conv).await
        } else {
            Vec::new()
        };
        let mut split = false;
        {
            let mut people = self.people();
            if let Some(link) = people.get_mut(key) {
                if !is_text && !link.told_text_only {
                    link.told_text_only = true;
                    texts.push(notices.text_only.to_owned());
                }
                if is_text && m.text.as_deref().unwrap_or_default().chars().count() > MAX_TEXT_CHARS
                {
                    link.split.push(m.id.clone());
                    split = true;
                }
            }
        }
        tracing::debug!(conversation = %conv, kind = %m.kind, split, "LINE message stored");
        let reply = e.reply_token.clone().map(ReplyToken::new);
        self.notice_or_token(key, reply, texts, e);
        if let (Some(seq), Some(token)) = (last_seq, m.mark_as_read_token.clone()) {
            self.tell(key, Control::ReadToken { seq, token });
        }
    }

    /// Has the person's task send `texts` as a notice for event `e` (by `reply` if it can), or,
    /// with nothing to say, just keep the fresh reply token.
    fn notice_or_token(
        &self,
        key: &PersonKey,
        reply: Option<ReplyToken>,
        texts: Vec<String>,
        e: &Event,
    ) {
        if !texts.is_empty() {
            let key_of_event = format!("event:{}", e.webhook_event_id);
            self.tell(
                key,
                Control::Notice {
                    reply,
                    texts,
                    key: key_of_event,
                },
            );
        } else if let Some(t) = reply {
            self.tell(key, Control::FreshToken(t));
        }
    }

    /// Removes a link whose conversation is gone, and stops its tasks.
    fn drop_link(&self, key: &PersonKey, conv: ConversationId) {
        let mut people = self.people();
        if people.get(key).is_some_and(|l| l.conversation == conv) {
            if let Some(link) = people.remove(key) {
                let _ = link.ctl.send(Control::Stop);
            }
        }
    }

    async fn unsend(self: &Arc<Self>, ch: &Arc<ChannelCtx>, key: &PersonKey, e: &Event) {
        let Some(u) = e.unsend.as_ref() else { return };
        let Some(conv) = self.existing(ch, key).await else {
            return;
        };
        let split = self
            .people()
            .get(key)
            .is_some_and(|l| l.split.contains(&u.message_id));
        let count = if split { 2 } else { 1 };
        for i in 0..count {
            let message = client_id(&[&ch.id, "message", &u.message_id, &i.to_string()]);
            let cid = client_id(&[&ch.id, "event", &e.webhook_event_id, &i.to_string()]);
            if let Err(err) = self.engine.visitor_retract(conv, message, cid).await {
                tracing::info!(conversation = %conv, code = err.code().as_str(), "LINE unsend not applied");
                return;
            }
        }
        tracing::info!(conversation = %conv, "LINE message retracted");
    }

    async fn postback(self: &Arc<Self>, ch: &Arc<ChannelCtx>, key: &PersonKey, e: Event) {
        let data = e
            .postback
            .as_ref()
            .map(|p| p.data.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let reply = e.reply_token.clone().map(ReplyToken::new);
        match data.as_str() {
            "end" | "action=end" => {
                let Some(conv) = self.existing(ch, key).await else {
                    return;
                };
                if let Some(t) = reply {
                    // The closing message can go by this reply token.
                    self.tell(key, Control::FreshToken(t));
                }
                let cid = client_id(&[&ch.id, "event", &e.webhook_event_id]);
                if let Err(err) = self.engine.visitor_end(conv, cid).await {
                    tracing::info!(conversation = %conv, code = err.code().as_str(), "LINE end not applied");
                }
            }
            "start" | "action=start" => {
                let Some((conv, started)) = self.conversation(ch, key).await else {
                    return;
                };
                if started {
                    let texts = self.opening(ch, conv).await;
                    self.notice_or_token(key, reply, texts, &e);
                } else if let Some(t) = reply {
                    self.tell(key, Control::FreshToken(t));
                }
            }
            _ => {
                tracing::debug!(channel = %ch.id, "LINE postback with unknown data ignored");
                if let Some(t) = reply {
                    self.tell(key, Control::FreshToken(t));
                }
            }
        }
    }

    /// A group or multi-person chat: say once in a while that this is a one-to-one helpline.
    /// No conversation, and the group, room and user ids go nowhere.
    fn group_chat(self: &Arc<Self>, ch: &Arc<ChannelCtx>, e: &Event) {
        if !matches!(e.kind.as_str(), "join" | "message" | "postback") {
            return;
        }
        let Some(source) = e.source.as_ref() else {
            return;
        };
        let chat = source
            .group_id
            .as_deref()
            .or(source.room_id.as_deref())
            .unwrap_or_default();
        if self.groups_told.check_and_insert(&[&ch.id, chat]) {
            return;
        }
        let Some(reply) = e.reply_token.clone().map(ReplyToken::new) else {
            return;
        };
        tracing::info!(channel = %ch.id, kind = %source.kind, "LINE group or room chat: one-to-one notice");
        let text = Notices::for_language(&ch.language).group.to_owned();
        self.notify_without_conversation(ch, None, Some(reply), vec![text], String::new());
    }

    /// Sends notices to someone without a conversation (greeting, group notice): by reply
    /// while the token is fresh, else by push to `push_to` if given.
    pub(super) fn notify_without_conversation(
        self: &Arc<Self>,
        ch: &Arc<ChannelCtx>,
        push_to: Option<String>,
        reply: Option<ReplyToken>,
        texts: Vec<String>,
        push_key: String,
    ) {
        let line = Arc::clone(self);
        let ch = Arc::clone(ch);
        let ttl = std::time::Duration::from_millis(self.settings.reply_token_ttl_ms);
        self.tracker.spawn(async move {
            if let Some(t) = reply.filter(|t| t.received.elapsed() < ttl) {
                if line.api.reply(&ch.token, &t.value, &texts).await.delivered() {
                    tracing::info!(channel = %ch.id, what = "notice", via = "reply", "sent to LINE");
                    return;
                }
            }
            if let Some(to) = push_to {
                let outcome = line.api.push(&ch.token, &to, &texts, &push_key).await;
                tracing::info!(channel = %ch.id, what = "notice", via = "push", ok = outcome.delivered(), "sent to LINE");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_split_and_blank_ones_dropped() {
        assert_eq!(parts_of("  hi  "), vec!["hi".to_owned()]);
        assert!(parts_of("   ").is_empty());
        let long = "あ".repeat(MAX_TEXT_CHARS + 10);
        let parts = parts_of(&long);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].chars().count(), 10);
    }
}
