//! Validation of what clients send: a text frame parsed in two steps ([`parse_frame`]) so that a
//! client learns *why* it was refused (malformed JSON, an unknown type, or a bad field), and
//! chat text checked ([`validate_text`]).

use crate::{ClientId, ErrorCode, MAX_TEXT_CHARS};

/// Message types that can be parsed from a text frame.
pub trait ClientFrame: serde::de::DeserializeOwned {
    /// The `type` values this endpoint accepts.
    fn known_types() -> &'static [&'static str];
}

/// Why a frame could not be parsed; each maps to an error code of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub code: ErrorCode,
    /// The client id, when the frame had a valid one, so the error can be matched.
    pub id: Option<ClientId>,
    pub detail: &'static str,
}

/// Parses a text frame: JSON object first, then a known `type`, then the fields.
pub fn parse_frame<T: ClientFrame>(text: &str) -> Result<T, FrameError> {
    // The usual frame is well formed: parse it once, straight into its type. Only one that
    // fails takes the slow way below, which finds out what is wrong with it (and its id).
    // (Objects only: a tagged enum would also take an array with the tag first.)
    if text.trim_start().starts_with('{') {
        if let Ok(frame) = serde_json::from_str::<T>(text) {
            return Ok(frame);
        }
    }
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| FrameError {
        code: ErrorCode::BadJson,
        id: None,
        detail: "frame is not valid JSON",
    })?;
    let Some(obj) = value.as_object() else {
        return Err(FrameError {
            code: ErrorCode::BadJson,
            id: None,
            detail: "frame is not a JSON object",
        });
    };
    let id = obj
        .get("id")
        .and_then(|v| v.as_str())
        .and_then(|s| ClientId::parse(s).ok());
    let Some(kind) = obj.get("type").and_then(|t| t.as_str()) else {
        return Err(FrameError {
            code: ErrorCode::BadJson,
            id,
            detail: "frame has no string `type`",
        });
    };
    if !T::known_types().contains(&kind) {
        return Err(FrameError {
            code: ErrorCode::UnknownType,
            id,
            detail: "unknown message type",
        });
    }
    serde_json::from_value(value).map_err(|_| FrameError {
        code: ErrorCode::Invalid,
        id,
        detail: "a field is missing or has the wrong type (ids are ULIDs, see client_id)",
    })
}

/// Checks chat text: trimmed, not empty, not longer than [`MAX_TEXT_CHARS`].
pub fn validate_text(text: &str) -> Result<String, ErrorCode> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ErrorCode::Invalid);
    }
    if trimmed.chars().count() > MAX_TEXT_CHARS {
        return Err(ErrorCode::TextTooLong);
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use ulid::Ulid;

    use super::*;
    use crate::{OperatorClient, ServerMsg, VisitorClient};

    #[test]
    fn a_frame_parsed_in_one_pass_equals_the_frame_parsed_by_way_of_a_json_value() {
        let id = ClientId::from(Ulid::new());
        let text = format!(r#"{{"type":"send","id":"{id}","text":"こんにちは"}}"#);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let slow: VisitorClient = serde_json::from_value(value).unwrap();
        assert_eq!(parse_frame::<VisitorClient>(&text).unwrap(), slow);
        // Well-formed JSON of the wrong shape still gets its precise error and id.
        let err =
            parse_frame::<VisitorClient>(&format!(r#"{{"type":"send","id":"{id}"}}"#)).unwrap_err();
        assert_eq!((err.code, err.id), (ErrorCode::Invalid, Some(id)));
    }

    #[test]
    fn malformed_json_is_bad_json() {
        let err = parse_frame::<VisitorClient>("{not json").unwrap_err();
        assert_eq!(err.code, ErrorCode::BadJson);
        let err = parse_frame::<VisitorClient>("[1,2]").unwrap_err();
        assert_eq!(err.code, ErrorCode::BadJson);
    }

    #[test]
    fn unknown_type_is_reported_with_the_client_id() {
        let id = ClientId::from(Ulid::new());
        let err = parse_frame::<VisitorClient>(&format!(r#"{{"type":"dance","id":"{id}"}}"#))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownType);
        assert_eq!(err.id, Some(id));
    }

    #[test]
    fn operator_only_types_are_unknown_to_visitors() {
        let err = parse_frame::<VisitorClient>(&format!(
            r#"{{"type":"take_next","id":"{}"}}"#,
            Ulid::new()
        ))
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownType);
    }

    #[test]
    fn a_bad_ulid_is_invalid() {
        let err =
            parse_frame::<VisitorClient>(r#"{"type":"send","id":"nope","text":"hi"}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::Invalid);
    }

    #[test]
    fn an_out_of_range_client_id_is_invalid_not_read_as_another() {
        // `P…` is above the 128 bits of a ULID; the `ulid` crate alone reads it as `61M95…`.
        let frame = r#"{"type":"send","id":"P1M95GDJGJ6FNKM0YF7E9F6FGW","text":"hi"}"#;
        let err = parse_frame::<VisitorClient>(frame).unwrap_err();
        assert_eq!((err.code, err.id), (ErrorCode::Invalid, None));
        let frame = r#"{"type":"accept","id":"Z1M95GDJGJ6FNKM0YF7E9F6FGW","conversation":"01M95GDJGJ6FNKM0YF7E9F6FGW"}"#;
        let err = parse_frame::<OperatorClient>(frame).unwrap_err();
        assert_eq!(err.code, ErrorCode::Invalid);
        // The conversation an operator names is checked the same way.
        let frame = r#"{"type":"accept","id":"01M95GDJGJ6FNKM0YF7E9F6FGW","conversation":"P1M95GDJGJ6FNKM0YF7E9F6FGW"}"#;
        let err = parse_frame::<OperatorClient>(frame).unwrap_err();
        assert_eq!(err.code, ErrorCode::Invalid);
        let frame = r#"{"type":"hello","v":1,"id":"01M95GDJGJ6FNKM0YF7E9F6FGW","last_seqs":{"P1M95GDJGJ6FNKM0YF7E9F6FGW":3}}"#;
        assert_eq!(
            parse_frame::<OperatorClient>(frame).unwrap_err().code,
            ErrorCode::Invalid
        );
        let frame = r#"{"type":"transfer","id":"01M95GDJGJ6FNKM0YF7E9F6FGW","conversation":"01M95GDJGJ6FNKM0YF7E9F6FGW","to":"P1M95GDJGJ6FNKM0YF7E9F6FGW"}"#;
        assert_eq!(
            parse_frame::<OperatorClient>(frame).unwrap_err().code,
            ErrorCode::Invalid
        );
        let frame = r#"{"type":"transfer","id":"01M95GDJGJ6FNKM0YF7E9F6FGW","conversation":"01m95gdjgj6fnkm0yf7e9f6fgw","to":null}"#;
        assert!(parse_frame::<OperatorClient>(frame).is_ok());
    }

    #[test]
    fn a_lowercase_client_id_is_answered_exactly_as_sent() {
        let sent = "01m95gdjgj6fnkm0yf7e9f6fgw";
        let frame = format!(r#"{{"type":"send","id":"{sent}","text":"hi"}}"#);
        let VisitorClient::Send { id, .. } = parse_frame::<VisitorClient>(&frame).unwrap() else {
            panic!("a send");
        };
        let ack = serde_json::to_value(ServerMsg::Ack { id, seq: Some(1) }).unwrap();
        assert_eq!(ack["id"], sent);
        let err = serde_json::to_value(ServerMsg::error(Some(id), ErrorCode::Invalid)).unwrap();
        assert_eq!(err["id"], sent);
    }

    #[test]
    fn a_send_frame_parses() {
        let id = ClientId::from(Ulid::new());
        let msg: VisitorClient = parse_frame(&format!(
            r#"{{"type":"send","id":"{id}","text":"こんにちは"}}"#
        ))
        .unwrap();
        assert_eq!(
            msg,
            VisitorClient::Send {
                id,
                text: "こんにちは".into()
            }
        );
    }

    #[test]
    fn text_is_trimmed_and_limited() {
        assert_eq!(validate_text("  hi "), Ok("hi".to_owned()));
        assert_eq!(validate_text("   "), Err(ErrorCode::Invalid));
        let long: String = "あ".repeat(MAX_TEXT_CHARS + 1);
        assert_eq!(validate_text(&long), Err(ErrorCode::TextTooLong));
        let max: String = "あ".repeat(MAX_TEXT_CHARS);
        assert!(validate_text(&max).is_ok());
    }
}
