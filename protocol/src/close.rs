//! Close codes beyond the standard ones; see docs/protocol.md.

pub const NORMAL: u16 = 1000;
pub const GOING_AWAY: u16 = 1001;
/// The peer broke the websocket protocol (an unmasked frame, a reserved opcode, ...).
pub const PROTOCOL_ERROR: u16 = 1002;
/// A text message that is not UTF-8.
pub const NOT_UTF8: u16 = 1007;
pub const POLICY: u16 = 1008;
pub const TOO_BIG: u16 = 1009;
pub const UNAUTHENTICATED: u16 = 4001;
pub const UNSUPPORTED_VERSION: u16 = 4002;
/// Resume token unknown, or the conversation is gone (after a `gone` frame).
pub const NOT_FOUND: u16 = 4004;
pub const HEARTBEAT_TIMEOUT: u16 = 4008;
pub const SUPERSEDED: u16 = 4009;
pub const REVOKED: u16 = 4010;
/// The client could not keep up with its outbound queue.
pub const TOO_SLOW: u16 = 4011;
