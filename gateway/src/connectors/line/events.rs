//! The parts of LINE's webhook body (`webhook.yml`, `CallbackRequest`) the connector uses.
//!
//! Parsing is lenient: each event is read on its own, unknown event and message types are kept
//! as such and ignored, and one malformed event does not spoil the others. None of these types
//! implements `Debug` or `Display`: they carry user ids and text, which must never reach a log.

use serde::Deserialize;

#[derive(Deserialize)]
pub struct Callback {
    /// Each event is parsed separately by [`Event::parse`].
    #[serde(default)]
    pub events: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: String,
    /// `active` or `standby` (another channel owns the chat: do nothing).
    #[serde(default)]
    pub mode: Option<String>,
    pub webhook_event_id: String,
    #[serde(default)]
    pub timestamp: u64,
    #[serde(default)]
    pub source: Option<Source>,
    #[serde(default)]
    pub reply_token: Option<String>,
    #[serde(default)]
    pub message: Option<MessageContent>,
    #[serde(default)]
    pub unsend: Option<Unsend>,
    #[serde(default)]
    pub postback: Option<Postback>,
    #[serde(default)]
    pub delivery_context: Option<DeliveryContext>,
}

impl Event {
    pub fn parse(value: serde_json::Value) -> Option<Event> {
        serde_json::from_value(value).ok()
    }

    pub fn is_standby(&self) -> bool {
        self.mode.as_deref() == Some("standby")
    }

    pub fn is_redelivery(&self) -> bool {
        self.delivery_context
            .as_ref()
            .is_some_and(|d| d.is_redelivery)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// `user`, `group` or `room`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub group_id: Option<String>,
    #[serde(default)]
    pub room_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageContent {
    /// `text`, `image`, `video`, `audio`, `file`, `location`, `sticker`, …
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub mark_as_read_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Unsend {
    pub message_id: String,
}

#[derive(Deserialize)]
pub struct Postback {
    pub data: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryContext {
    #[serde(default)]
    pub is_redelivery: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_text_message_event_parses() {
        let e = Event::parse(json!({
            "type":"message","mode":"active","timestamp":1,"webhookEventId":"01H",
            "deliveryContext":{"isRedelivery":true},
            "source":{"type":"user","userId":"U1"},"replyToken":"r",
            "message":{"type":"text","id":"m1","text":"hi","quoteToken":"q","markAsReadToken":"k"}
        }))
        .unwrap();
        assert_eq!(e.kind, "message");
        assert!(e.is_redelivery() && !e.is_standby());
        let m = e.message.unwrap();
        assert_eq!(
            (
                m.kind.as_str(),
                m.text.as_deref(),
                m.mark_as_read_token.as_deref()
            ),
            ("text", Some("hi"), Some("k"))
        );
    }

    #[test]
    fn unknown_types_parse_and_events_without_an_id_do_not() {
        assert!(
            Event::parse(json!({"type":"beacon","webhookEventId":"x","mode":"active"})).is_some()
        );
        assert!(Event::parse(json!({"type":"message"})).is_none());
    }
}
