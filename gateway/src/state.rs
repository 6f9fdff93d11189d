//! `AppState`: everything a request handler or socket needs, built once and shared as
//! `Arc<AppState>`. No globals.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Accounts;
use crate::config::Settings;
use crate::directory::Directory;
use crate::engine::Engine;

/// Name of the operator session cookie (HttpOnly, SameSite=Strict) over plain HTTP.
pub const SESSION_COOKIE: &str = "tsunagu_session";
/// Its name over HTTPS: the `__Host-` prefix makes browsers insist on Secure, Path=/ and no
/// Domain, so no other host can set or shadow it.
pub const SECURE_SESSION_COOKIE: &str = "__Host-tsunagu_session";

/// A socket's follower reaches the engine through the `AppState` the socket holds anyway
/// ([`crate::engine::follower::Follower::owner`]).
impl AsRef<Engine> for AppState {
    fn as_ref(&self) -> &Engine {
        &self.engine
    }
}

impl AppState {
    /// The session cookie's name: `__Host-` prefixed when the cookie is Secure.
    pub fn session_cookie(&self) -> &'static str {
        if self.settings.auth.cookie_secure {
            SECURE_SESSION_COOKIE
        } else {
            SESSION_COOKIE
        }
    }
}

pub struct AppState {
    pub settings: Settings,
    /// Where every part reads "now" (`Clock::system()` in production).
    pub clock: crate::clock::Clock,
    pub engine: Arc<Engine>,
    pub accounts: Arc<Accounts>,
    /// The referral directory, phrases and runtime settings (this node's copy of the database's).
    pub directory: Arc<Directory>,
    /// Rate limits and connection caps, keyed by anonymous address keys.
    pub limits: Arc<crate::limits::Limits>,
    /// Cancelled on SIGTERM / Ctrl-C, `server.shutdown_delay_ms` before `shutdown`: `/readyz`
    /// answers 503 while everything else goes on (`startup::stop`).
    pub draining: CancellationToken,
    /// Cancelled when the node stops serving: sockets close with 1001 and background tasks stop.
    pub shutdown: CancellationToken,
    /// Websocket tasks and background tasks, so shutdown can wait for them (axum's graceful
    /// shutdown does not wait for upgraded connections).
    pub tracker: TaskTracker,
    /// The LINE connector, when `[line]` has channels.
    pub line: Option<Arc<crate::connectors::line::Line>>,
    /// The phone connector, when `[voice]` is enabled.
    pub voice: Option<Arc<crate::connectors::voice::Voice>>,
}
