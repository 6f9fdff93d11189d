//! The wire protocol, version 1: every frame a visitor or operator client sends or receives.
//!
//! This crate is the single source of the JSON shapes described in `docs/protocol.md`; the
//! gateway (as `tsunagu::protocol`), its tests and the load tests all use these types, and a
//! test checks that every frame type here appears in the document. It holds wire data only and
//! depends on nothing of the gateway, so anything that speaks the protocol can use it.
//!
//! Parsing is done in two steps ([`parse_frame`]) so that a client learns *why* a frame was
//! refused (malformed JSON, an unknown type, or a bad field), never just that it was.
//!
//! # Layout
//!
//! Every type is re-exported here, so users name `tsunagu_protocol::ServerMsg`, never a module.
//!
//! - `common`: the version, the size limits, timestamps, side, channel and presence.
//! - [`client_id`]: the ids clients give their frames (checked, echoed as sent).
//! - `visitor` and `operator`: what each kind of client sends ([`VisitorClient`],
//!   [`OperatorClient`]).
//! - `parse`: a text frame into one of those ([`parse_frame`]), and chat text checked.
//! - `log`: a conversation's log entries ([`LogEntry`], [`EventBody`]).
//! - `state` and `server`: what the server sends ([`ServerMsg`]) and the data it carries
//!   (summaries, offers, limits); `error`: its error codes; [`close`]: its close codes.
//!
//! Data flows one way per direction: text from a client goes through `parse` into a `visitor` or
//! `operator` frame; the server answers with a `server` frame built from `log` and `state` data.

pub mod client_id;
pub mod close;
mod common;
mod error;
mod log;
mod operator;
mod parse;
mod server;
mod state;
mod visitor;

pub use client_id::ClientId;
pub use common::{
    Channel, Millis, Presence, Side, MAX_FRAME_BYTES, MAX_NOTE_CHARS, MAX_TEXT_CHARS,
    PROTOCOL_VERSION,
};
pub use error::ErrorCode;
pub use log::{EndReason, EventBody, LeftReason, LogEntry};
pub use operator::OperatorClient;
pub use parse::{parse_frame, validate_text, ClientFrame, FrameError};
pub use server::{EventFrame, GoneReason, ServerMsg};
pub use state::{
    ConversationSummary, EmergencySummary, Limits, Offer, OperatorConvState, OperatorInfo,
    RemovedReason, TransferInfo, VisitorState, WithdrawReason,
};
pub use visitor::{Resume, Start, VisitorClient};
