//! Building and running the application: `Application::build` wires the parts together and binds
//! (port 0 in tests), `run_until_stopped` serves until shutdown and then drains sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Accounts;
use crate::config::Settings;
use crate::directory::Directory;
use crate::engine::{timers, Engine};
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::store::{MemoryStore, Store};

pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    state: Arc<AppState>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let metrics = Arc::new(Metrics::new());
        let escalations = crate::escalation::Escalations::open(&settings.escalation)?.map(Arc::new);
        let engine = Arc::new(
            Engine::new(store, settings.conversation.clone(), metrics)
                .with_escalations(escalations),
        );
        let accounts = Arc::new(Accounts::load(&settings.auth)?);
        let directory = Directory::load(&settings.directory)?;
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        // A LINE channel whose secret or token is missing stops the start here.
        let line = crate::connectors::line::Line::build(
            &settings.line,
            settings.server.socket_queue,
            Arc::clone(&engine),
            shutdown.clone(),
            tracker.clone(),
        )?;
        let listener = TcpListener::bind((settings.server.host.as_str(), settings.server.port))
            .await
            .with_context(|| {
                format!("binding {}:{}", settings.server.host, settings.server.port)
            })?;
        let addr = listener.local_addr()?;
        let state = Arc::new(AppState {
            settings,
            engine,
            accounts,
            directory,
            shutdown,
            tracker,
            line,
        });
        Ok(Application {
            listener,
            addr,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> Arc<AppState> {
        Arc::clone(&self.state)
    }

    /// The base URL people open (public URL if configured).
    pub fn base_url(&self) -> String {
        match &self.state.settings.server.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.addr),
        }
    }

    /// Serves until `state().shutdown` is cancelled, then waits (up to
    /// `server.shutdown_grace_ms`) for websockets to close with 1001 and tasks to stop.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let state = self.state;
        timers::spawn(
            Arc::clone(&state.engine),
            state.shutdown.clone(),
            &state.tracker,
        );
        if let Some(esc) = &state.engine.escalations {
            timers::spawn_escalation_sweeper(
                Arc::clone(esc),
                Duration::from_millis(state.settings.escalation.sweep_ms),
                state.shutdown.clone(),
                &state.tracker,
            );
        }
        let router = crate::http::router(Arc::clone(&state));
        let shutdown = state.shutdown.clone();
        axum::serve(self.listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await?;
        state.tracker.close();
        let grace = Duration::from_millis(state.settings.server.shutdown_grace_ms);
        if tokio::time::timeout(grace, state.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutdown grace elapsed with sockets still open");
        }
        tracing::info!("stopped");
        Ok(())
    }
}
