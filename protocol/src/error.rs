//! The error codes of `error` frames, their wire names and their developer-facing messages.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadJson,
    BadFrame,
    UnknownType,
    Invalid,
    TextTooLong,
    OutOfOrder,
    NotFound,
    Capacity,
    UnsupportedVersion,
    Unavailable,
    RateLimited,
    NotEnabled,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::Invalid => "invalid",
            ErrorCode::TextTooLong => "text_too_long",
            ErrorCode::OutOfOrder => "out_of_order",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Capacity => "capacity",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::NotEnabled => "not_enabled",
        }
    }

    /// A short English explanation for developers; clients translate by code.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "frame is not a JSON object of a known shape",
            ErrorCode::BadFrame => "binary frames are not accepted",
            ErrorCode::UnknownType => "unknown message type",
            ErrorCode::Invalid => "a field is missing or out of range",
            ErrorCode::TextTooLong => "text is too long",
            ErrorCode::OutOfOrder => "this message is not allowed now",
            ErrorCode::NotFound => "no such conversation",
            ErrorCode::Capacity => "you are at capacity",
            ErrorCode::UnsupportedVersion => "unsupported protocol version",
            ErrorCode::Unavailable => "storage unavailable; nothing was stored, retry",
            ErrorCode::RateLimited => "too many messages; slow down",
            ErrorCode::NotEnabled => "this feature is not enabled on this gateway",
        }
    }
}
