//! `AppState`: everything a request handler or socket needs, built once and shared as
//! `Arc<AppState>`. No globals.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Accounts;
use crate::config::Settings;
use crate::directory::Directory;
use crate::engine::Engine;

/// Name of the operator session cookie (HttpOnly, SameSite=Strict).
pub const SESSION_COOKIE: &str = "tsunagu_session";

pub struct AppState {
    pub settings: Settings,
    pub engine: Arc<Engine>,
    pub accounts: Arc<Accounts>,
    pub directory: Directory,
    /// Cancelled on SIGTERM / Ctrl-C: sockets close with 1001 and background tasks stop.
    pub shutdown: CancellationToken,
    /// Websocket tasks and background tasks, so shutdown can wait for them (axum's graceful
    /// shutdown does not wait for upgraded connections).
    pub tracker: TaskTracker,
    /// The LINE connector, when `[line]` has channels.
    pub line: Option<Arc<crate::connectors::line::Line>>,
}
