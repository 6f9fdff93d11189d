//! # Tsunagu gateway
//!
//! An anonymous chat gateway for helplines: people reach out from a web widget, volunteer
//! operators answer from a browser console, coordinators watch the queue.
//!
//! # Layout
//!
//! - [`protocol`]: every frame on the wire (visitor and operator websockets), one place (the
//!   `tsunagu-protocol` crate, re-exported);
//!   [`client_id`]: the ids clients put in their frames, checked and echoed as sent.
//! - [`conversation`]: the conversation state machine; [`routing`]: who is offered whom.
//! - [`store`]: the `Store` trait (conversations, queue, presence, message logs) and the
//!   in-memory implementation; its `conformance` suite is what any store must pass.
//! - [`engine`]: the behaviour between sockets and store: one method per client action, the
//!   `publish` step that tells everyone concerned, timers, statistics, the live-socket registry.
//! - [`ws`]: the websocket endpoints; [`http`]: router, pages, JSON API, security headers.
//! - [`auth`]: operator accounts (argon2) and sessions, with [`password`] (bounded password
//!   checks) and [`lockout`] (failed logins); [`directory`]: referrals and phrases.
//! - [`db`]: the organisation's lasting data (accounts so far) in SQLite or PostgreSQL, one
//!   schema, versioned migrations; nothing of a conversation ever goes there.
//! - [`escalation`]: encrypted escalation records after an emergency flag, audit trail,
//!   retention and delivery to the organisation's case system.
//! - [`connectors`]: channels other than the widget ([`connectors::line`]: LINE official
//!   accounts), delivering a conversation's log through the provider's API.
//! - [`server`]: accepting connections under the connection caps and timeouts, TLS, hyper.
//! - [`config`], [`telemetry`], [`metrics`], [`state`] (`AppState`), [`startup`] (`Application`).
//! - Small leaves shared by several parts: [`clock`] (`Clock`, `now_ms`), [`token`] (token hashing),
//!   [`phone`] (an operator's phone target), [`alert`] (coordinator alerts). No module cycles:
//!   see ARCHITECTURE.md, "Module dependencies" (enforced by `tests/module_cycles.rs`).
//!
//! Data flow: a client frame is parsed in `ws`, handed to an `Engine` method, which applies one
//! atomic step in the `Store` and calls `publish`; `publish` queues `Outbound` items on the
//! affected sockets' bounded queues; each socket reads new log entries from the store and sends
//! them with their sequence numbers.

// All output goes through `tracing`, whose filter and capped targets keep message text out of
// the logs; a print macro would bypass both (and the privacy canary checks the binary's
// stdout and stderr). The binary's own start-up banner and CLI output are in `main.rs`.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod alert;
pub mod alerting;
pub mod auth;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod connectors;
pub mod conversation;
pub mod db;
pub mod directory;
pub mod engine;
pub mod escalation;
pub mod http;
pub mod limits;
pub mod lockout;
pub mod metrics;
pub mod oncall;
pub mod password;
pub mod phone;
pub mod routing;
pub mod server;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod token;
pub mod ws;

pub use startup::Application;
/// The wire types live in their own crate (`protocol/`), shared with the load tests; these
/// re-exports keep `crate::protocol::X` and `tsunagu::protocol::X` paths as they were.
pub use tsunagu_protocol as protocol;
pub use tsunagu_protocol::client_id;
