//! # LINE connector
//!
//! People write to a LINE official account; each LINE user becomes an anonymous conversation in
//! the same queue as the widget (channel `line`), and operators answer from the same console.
//! Setup and data handling: `docs/connectors-line.md`.
//!
//! # Layout
//!
//! - [`settings`]: the `[line]` section; channels whose secret and token come from environment
//!   variables (a missing one is a startup error).
//! - [`webhook`]: `POST /connectors/line/webhook/{channel}`: signature check over the raw body
//!   ([`signature`]) before parsing, deduplication of `webhookEventId` ([`dedupe`]), 200 at once.
//! - [`inbound`]: one worker that applies webhook events in order: follow, message, unsend,
//!   unfollow, postback; group and room chats get a polite reply and no conversation.
//! - [`person`]: per conversation, a follower registered as the conversation's visitor in the
//!   engine's registry, and a sequential sender that delivers through [`client`] (push with a
//!   retry key, reply while a token is fresh, loading indicator, mark as read).
//! - `sender`: performs a conversation's jobs in order and moves the shared cursor of what
//!   was sent.
//! - [`keys`]: a person's name in the shared store (keyed hash), the sender lease's name.
//! - [`notices`]: what the gateway says to the person, per channel language.
//! - `alerts`: a coordinator's own LINE account for on-call alerts: the one-time link code
//!   (recognised before a message can start a conversation) and the alert push.
//!
//! Data flow: webhook → signature → dedupe → inbound queue → `Engine` calls; engine publish →
//! follower reads the log → sender → Messaging API.
//!
//! Several nodes: any node takes any webhook. Which conversation a person is in lives in the
//! store under a keyed hash of their LINE user id ([`keys`]), so a person's messages reach one
//! conversation whichever node gets them. Each node that has had a webhook of a person follows
//! the conversation; of those, only the holder of the conversation's sender lease sends what
//! the log says (operator messages, notices), from the shared cursor of what was sent, so a
//! node that takes over neither repeats nor skips (and the push retry key, the same on every
//! node, makes a push repeated by a takeover land once). What stays per node: reply tokens
//! (each belongs to one webhook and is used by the node that got it), mark-as-read tokens, the
//! loading indicator, "only text is read" (told at most once per node), and which messages
//! were split in two (for unsend).
//!
//! Privacy: the LINE user id is the route back. It is kept in memory only (this node's map
//! of live conversations, the sender task, and the engine's channel reference for a possible
//! escalation record) and forgotten when the conversation ends; the store holds only its keyed
//! hash. It is never logged, never shown to operators. Nothing here logs text, reply tokens or
//! access tokens.

mod alerts;
pub mod client;
pub mod dedupe;
pub mod events;
pub mod inbound;
pub mod keys;
pub mod notices;
pub mod person;
mod sender;
pub mod settings;
pub mod signature;
pub mod webhook;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::SecretString;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::conversation::ConversationId;
use crate::engine::Engine;
pub use settings::{LineChannelSettings, LineSettings};
pub use webhook::router;

use client::LineApi;
use dedupe::Recent;
use person::{Control, Link};

/// A configured channel at run time.
pub struct ChannelCtx {
    pub id: String,
    pub secret: SecretString,
    pub token: SecretString,
    pub language: String,
    pub priority: u8,
}

/// Which live conversation a LINE user of a channel is in: (channel id, LINE user id).
type PersonKey = (String, String);

/// How long a group or room is remembered as having been told this is a one-to-one helpline,
/// so a busy group chat does not get the notice on every message.
const GROUP_NOTICE_EVERY: Duration = Duration::from_secs(60 * 60);

/// How long the store keeps a person → conversation link after their last webhook (a
/// backstop: the link goes when the conversation closes).
pub const LINK_TTL_MS: u64 = 24 * 60 * 60 * 1000;
/// The lease of a conversation's sender: the node that holds it sends what the log says to the
/// person; another node takes over this long after the holder stopped renewing it.
pub const SENDER_LEASE_MS: u64 = 3_000;
/// How often a follower renews its sender lease, or tries to take it.
pub const SENDER_LEASE_RENEW_MS: u64 = 1_000;

pub struct Line {
    pub(crate) settings: LineSettings,
    channels: HashMap<String, Arc<ChannelCtx>>,
    pub(crate) api: LineApi,
    pub(crate) engine: Arc<Engine>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
    /// Frames queued per follower before the registry counts it as too slow.
    pub(crate) socket_queue: usize,
    /// `webhookEventId`s seen recently, per channel.
    seen: Recent,
    /// Groups and rooms told recently that this is a one-to-one helpline.
    groups_told: Recent,
    /// The conversations this node follows, by LINE user (the store's links say which
    /// conversation a person is in for every node). Memory only; an entry goes when its
    /// conversation ends.
    people: Mutex<HashMap<PersonKey, Link>>,
    /// Link codes tried per LINE user (keyed hash), for on-call alerts.
    link_tries: governor::DefaultKeyedRateLimiter<String>,
    /// Webhook events waiting for the inbound worker, in arrival order.
    inbound: mpsc::UnboundedSender<(Arc<ChannelCtx>, events::Event)>,
}

impl Line {
    /// Builds the connector if any channel is configured (`None` otherwise) and starts its
    /// inbound worker. A channel whose secret or token variable is missing is an error.
    pub fn build(
        settings: &LineSettings,
        socket_queue: usize,
        engine: Arc<Engine>,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> anyhow::Result<Option<Arc<Line>>> {
        Self::build_with_env(settings, socket_queue, engine, shutdown, tracker, |k| {
            std::env::var(k).ok()
        })
    }

    pub fn build_with_env(
        settings: &LineSettings,
        socket_queue: usize,
        engine: Arc<Engine>,
        shutdown: CancellationToken,
        tracker: TaskTracker,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Option<Arc<Line>>> {
        let channels = settings.resolve(env)?;
        if channels.is_empty() {
            return Ok(None);
        }
        let channels = channels
            .into_iter()
            .map(|c| {
                let ctx = ChannelCtx {
                    id: c.id,
                    secret: c.secret,
                    token: c.token,
                    language: c.language,
                    priority: c.priority,
                };
                (ctx.id.clone(), Arc::new(ctx))
            })
            .collect::<HashMap<_, _>>();
        let (tx, rx) = mpsc::unbounded_channel();
        let line = Arc::new(Line {
            api: LineApi::new(settings, shutdown.clone())?,
            seen: Recent::new(
                Duration::from_millis(settings.dedupe_ttl_ms),
                settings.dedupe_capacity,
            ),
            groups_told: Recent::new(GROUP_NOTICE_EVERY, 10_000),
            settings: settings.clone(),
            channels,
            engine,
            shutdown,
            tracker,
            socket_queue,
            people: Mutex::new(HashMap::new()),
            link_tries: alerts::link_tries(),
            inbound: tx,
        });
        let ids: Vec<&str> = line.channels.keys().map(String::as_str).collect();
        tracing::info!(channels = ?ids, "LINE connector ready");
        line.tracker
            .spawn(inbound::run(Arc::clone(&line), rx, line.shutdown.clone()));
        Ok(Some(line))
    }

    pub fn channel(&self, id: &str) -> Option<&Arc<ChannelCtx>> {
        self.channels.get(id)
    }

    fn people(&self) -> std::sync::MutexGuard<'_, HashMap<PersonKey, Link>> {
        self.people.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets the user of `conv` on `channel` (the conversation ended or is no longer followed).
    pub(crate) fn forget(&self, channel: &str, conv: ConversationId) {
        self.people()
            .retain(|(c, _), link| !(c == channel && link.conversation == conv));
    }

    /// Number of live LINE conversations (for tests and metrics).
    pub fn live(&self) -> usize {
        self.people().len()
    }

    /// Tells a conversation's follower something, if the user has a live conversation.
    fn tell(&self, key: &PersonKey, c: Control) -> bool {
        match self.people().get(key) {
            Some(link) => link.ctl.send(c).is_ok(),
            None => false,
        }
    }
}
