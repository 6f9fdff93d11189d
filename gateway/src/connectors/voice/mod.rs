//! # Phone connector (Twilio-compatible voice webhooks)
//!
//! People call the helpline's number at a telephony provider; each call becomes an anonymous
//! conversation in the same queue as chat (channel `phone`), and when an operator accepts it in
//! the console the provider bridges the call to the operator's phone or browser voice client.
//! The gateway never touches audio and never records. Setup and data handling:
//! `docs/connectors-phone.md`.
//!
//! # Layout
//!
//! - [`settings`]: the `[voice]` section; account SID and auth token from environment
//!   variables (missing ones are a startup error when the connector is enabled).
//! - [`webhook`]: `POST /connectors/voice/{incoming,wait,dial-done,status}`: signature check
//!   ([`signature`]) before any field is used, then the call's next TwiML ([`twiml`]).
//! - [`call`]: per call, a follower registered as the conversation's visitor in the engine's
//!   registry: an operator joined → bridge; requeued → back on hold; ended → polite hang-up.
//!   Its REST calls go through a sequential sender and [`client`] (retries, backoff).
//! - [`alert_call`]: calls to the coordinator on call for an alert (what they hear, the key
//!   that acknowledges it); the connector is alert delivery's `PhonePager`.
//! - `record`: the call's shared record, read and changed over the version read.
//!
//! Data flow: provider webhook → signature → `Engine` calls + TwiML answer; engine publish →
//! follower reads the log → sender → provider REST API (update the live call).
//!
//! Several nodes: any node answers any webhook of a call. Which conversation a call is in is in
//! the store, under a keyed hash of the call SID ([`call_key`]), and where the call is (phase,
//! since when it waits, its hold loop's last return) in its shared record (`record`, over
//! [`crate::store::CallRecord`]); both go with the conversation. Every node that has had a
//! webhook of the call follows it ([`call::follow`]); the holder of the call's lease
//! ([`call_lease`]) acts on it, each act written to the record first, so that a bridge is sent
//! at most once per accept and a node that takes the lease over (its holder died) goes on from
//! the record (docs/connectors-phone.md, "Several nodes").
//!
//! Privacy: the caller's number arrives in every webhook (`From`). It is kept only in the
//! engine's channel reference (memory; removed when the conversation ends; copied into an
//! encrypted escalation record only if an operator flags an emergency). Operators see the
//! helpline's own number as caller id, never the caller's. Nothing here logs a number, a call
//! SID or the auth token: logs carry conversation ids, states and timings.

pub mod alert_call;
pub mod call;
pub mod client;
mod record;
pub mod settings;
pub mod signature;
pub mod twiml;
pub mod webhook;

use secrecy::SecretString;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use ulid::Ulid;

use crate::auth::Accounts;
use crate::conversation::ConversationId;
use crate::engine::Engine;
use crate::protocol::Presence;
pub use settings::VoiceSettings;
pub use webhook::{router, Hooks};

use client::VoiceApi;
use twiml::{Documents, Target};

pub use crate::store::CallPhase as Phase;

/// How long a node's lease on following a call lasts (`P:lease:voice:{conversation}`); its
/// holder renews it every [`CALL_LEASE_RENEW_MS`].
pub const CALL_LEASE_MS: u64 = 3_000;
/// How often a call's follower renews (or tries to take) its lease.
pub const CALL_LEASE_RENEW_MS: u64 = 1_000;

/// This node's handle on a call it follows (kept in `Voice::calls`, by call SID, in memory).
/// What every node must know of the call is in its shared record ([`crate::store::CallRecord`],
/// by conversation), and the call SID and numbers come with each of the provider's webhooks.
#[derive(Debug, Clone)]
pub struct CallLink {
    pub conversation: ConversationId,
    /// The phase this node last read or wrote (the record is the truth; this is what is left
    /// to go by when the store lost the conversation).
    pub phase: Phase,
    /// The URL prefix the provider reached us at, for the URLs in TwiML we send later.
    pub base: String,
    /// Caller id for the bridge: the helpline's number (never the caller's).
    pub caller_id: String,
}

pub struct Voice {
    pub(crate) settings: VoiceSettings,
    auth_token: SecretString,
    pub(crate) api: VoiceApi,
    pub(crate) engine: Arc<Engine>,
    pub(crate) accounts: Arc<Accounts>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
    /// Frames queued per follower before the registry counts it as too slow.
    pub(crate) socket_queue: usize,
    /// Calls this node follows, by call SID. Memory only; an entry goes when its call or
    /// conversation ends.
    calls: Mutex<HashMap<String, CallLink>>,
}

impl Voice {
    /// Builds the connector if `[voice]` is enabled (`None` otherwise). Missing credentials
    /// are an error.
    pub fn build(
        settings: &VoiceSettings,
        socket_queue: usize,
        engine: Arc<Engine>,
        accounts: Arc<Accounts>,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> anyhow::Result<Option<Arc<Voice>>> {
        Self::build_with_env(
            settings,
            socket_queue,
            engine,
            accounts,
            shutdown,
            tracker,
            |k| std::env::var(k).ok(),
        )
    }

    pub fn build_with_env(
        settings: &VoiceSettings,
        socket_queue: usize,
        engine: Arc<Engine>,
        accounts: Arc<Accounts>,
        shutdown: CancellationToken,
        tracker: TaskTracker,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Option<Arc<Voice>>> {
        if !settings.enabled {
            return Ok(None);
        }
        let creds = settings.resolve(env)?;
        let api = VoiceApi::new(
            settings,
            creds.account_sid,
            creds.auth_token.clone(),
            shutdown.clone(),
        )?;
        tracing::info!(
            public_url = settings.public_url.is_some(),
            "voice connector ready"
        );
        Ok(Some(Arc::new(Voice {
            settings: settings.clone(),
            auth_token: creds.auth_token,
            api,
            engine,
            accounts,
            shutdown,
            tracker,
            socket_queue,
            calls: Mutex::new(HashMap::new()),
        })))
    }

    fn calls(&self) -> std::sync::MutexGuard<'_, HashMap<String, CallLink>> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn docs(&self) -> Documents<'_> {
        Documents {
            s: &self.settings,
            helplines: self.engine.closing_helplines("ja"),
        }
    }

    /// Number of live calls this node follows (for tests and metrics).
    pub fn live(&self) -> usize {
        self.calls().len()
    }

    pub(crate) fn link(&self, call_sid: &str) -> Option<CallLink> {
        self.calls().get(call_sid).cloned()
    }

    /// Forgets a call (its conversation ended, or the call did).
    pub(crate) fn forget(&self, call_sid: &str, conv: ConversationId) -> Option<CallLink> {
        let mut calls = self.calls();
        if calls.get(call_sid).is_some_and(|l| l.conversation == conv) {
            calls.remove(call_sid)
        } else {
            None
        }
    }

    /// Notes the phase read or written for conversation `conv` on the calls followed here.
    pub(crate) fn note_phase(&self, conv: ConversationId, phase: Phase) {
        for link in self.calls().values_mut() {
            if link.conversation == conv {
                link.phase = phase;
            }
        }
    }

    /// How long a bridge request can take at most, all its retries included: a hold loop
    /// that still comes back this long after a bridge was claimed proves the provider never
    /// took it (a bridge replaces the hold loop).
    pub(crate) fn bridge_budget_ms(&self) -> u64 {
        let s = &self.settings;
        u64::from(s.retry_attempts.max(1)) * (s.request_timeout_ms + s.retry_max_ms) + 2_000
    }

    /// The call's name in the shared store ([`call_key`]).
    pub(crate) fn call_key(&self, call_sid: &str) -> String {
        call_key(&self.auth_token, call_sid)
    }

    /// Operators who could answer a call now: connected, on duty, with a phone number or
    /// voice client set on their account.
    pub async fn answerable(&self) -> usize {
        let Ok(ops) = self.engine.operators().await else {
            return 0;
        };
        ops.iter()
            .filter(|o| o.connected && o.presence == Presence::OnDuty)
            .filter(|o| self.target_of(o.id).is_some())
            .count()
    }

    /// Where to bridge a call for operator `op`, from their account.
    pub(crate) fn target_of(&self, op: Ulid) -> Option<Target> {
        self.accounts
            .user(op)
            .and_then(|u| u.phone)
            .and_then(|p| Target::parse(&p))
    }
}

/// The lease of the node that follows the call in conversation `conv` (`P:lease:voice:{conv}`).
pub fn call_lease(conv: ConversationId) -> String {
    format!("voice:{conv}")
}

/// A call's name in the shared store: `voice:{hex}`, HMAC-SHA-256 of the call SID under the
/// auth token (which every node has, to check signatures), so the store never holds a call SID.
pub fn call_key(auth_token: &SecretString, call_sid: &str) -> String {
    use hmac::{Hmac, Mac};
    use secrecy::ExposeSecret;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(auth_token.expose_secret().as_bytes())
        .expect("HMAC takes a key of any length");
    for part in ["tsunagu/voice/call", call_sid] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part.as_bytes());
    }
    format!("voice:{}", hex::encode(mac.finalize().into_bytes()))
}

/// A client id for an engine call caused by the provider, derived from the call SID and the
/// event, so a repeated callback maps to the same client id and is applied once.
pub fn client_id(parts: &[&str]) -> Ulid {
    Ulid::from_bytes(crate::connectors::derived_bytes(
        b"tsunagu/voice/client-id",
        parts,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_deterministic_and_distinct() {
        assert_eq!(client_id(&["CA1", "end"]), client_id(&["CA1", "end"]));
        assert_ne!(client_id(&["CA1", "end"]), client_id(&["CA2", "end"]));
        assert_ne!(client_id(&["CA1", "x"]), client_id(&["CA1x", ""]));
    }

    #[test]
    fn a_calls_store_key_is_keyed_and_never_holds_the_call_sid() {
        let token = |t: &str| SecretString::from(t.to_owned());
        let sid = "CA0123456789abcdef0123456789abcdef";
        let a = call_key(&token("t1"), sid);
        assert_eq!(a, call_key(&token("t1"), sid), "same on every node");
        assert_ne!(a, call_key(&token("t2"), sid), "keyed by the auth token");
        assert_ne!(a, call_key(&token("t1"), "CA1"), "per call");
        assert!(!a.contains(&sid[2..10]));
    }
}
