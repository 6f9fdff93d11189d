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
use crate::directory::{Directory, RuntimeSettings};
use crate::engine::{timers, Engine};
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::store::redis::RedisOptions;
use crate::store::{MemoryStore, RedisStore, Store};

/// Most descriptors [`reserve_descriptor_table`] makes room for: 64k entries are 512 KiB of
/// kernel memory, where a limit of a million would take 8 MiB.
const DESCRIPTOR_TABLE_MAX: u64 = 65_536;

/// Grows the kernel's descriptor table to the open-files limit (at most
/// [`DESCRIPTOR_TABLE_MAX`]) now, while the process has one thread; returns the table's size,
/// or `None` if it could not. Call it first in `main`, before the runtime starts.
///
/// The kernel doubles the table as descriptors are opened (at 256, 512, 1,024, ...), and in a
/// process with several threads each doubling waits for an RCU grace period, 10-25 ms measured
/// here, during which the accepting thread stands still: in a surge of arrivals, every
/// doubling held up the people behind it (the load tests' burst, BENCHMARKS.md). The table
/// never shrinks, so paying for it at start-up is paying once.
pub fn reserve_descriptor_table() -> Option<u64> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(DESCRIPTOR_TABLE_MAX)
        .clamp(1, DESCRIPTOR_TABLE_MAX);
    let null = std::fs::File::open("/dev/null").ok()?;
    let top = i32::try_from(limit - 1).ok()?;
    // Dropped (closed) at once: only the table's new size stays.
    rustix::io::fcntl_dupfd_cloexec(&null, top).ok()?;
    Some(limit)
}

pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    state: Arc<AppState>,
    /// Set when the gateway terminates TLS itself.
    tls: Option<Arc<crate::tls::Tls>>,
    /// Cross-node wake-ups, with the Redis store; started with the server.
    bus: Option<crate::cluster::Bus>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, crate::clock::Clock::system()).await
    }

    /// [`Application::build`] reading the time from `clock` (tests pass a manual or tokio clock).
    pub async fn build_with_clock(
        mut settings: Settings,
        clock: crate::clock::Clock,
    ) -> anyhow::Result<Self> {
        // One rustls crypto provider, explicitly, before anything (TLS, webhook clients) uses it.
        crate::tls::install_crypto_provider();
        let tls = crate::tls::Tls::load(&settings.server).await?;
        if tls.is_some() {
            // Served over HTTPS: the session cookie is Secure and `__Host-` prefixed.
            settings.auth.cookie_secure = true;
        }
        let metrics = Arc::new(Metrics::new());
        // Created on first run (SQLite) and brought up to date before anything reads it.
        let db = crate::db::Db::open(&settings.database)
            .await
            .with_context(|| format!("opening {}", crate::db::describe(&settings.database)))?;
        tracing::info!(engine = db.engine().as_str(), "database ready");
        let escalations =
            crate::escalation::Escalations::open(&settings.escalation, db.clone(), clock.clone())?
                .map(Arc::new);
        let mut shared_redis = None;
        let (store, bus): (Arc<dyn Store>, _) = match settings.store.redis_url() {
            None => (Arc::new(MemoryStore::new()), None),
            Some(url) => {
                let node = settings
                    .store
                    .node_id
                    .clone()
                    .unwrap_or_else(|| ulid::Ulid::new().to_string());
                let store = RedisStore::open(RedisOptions {
                    url: url.to_owned(),
                    key_prefix: settings.store.key_prefix.clone(),
                    ttl_secs: settings.store.ttl_secs,
                    wait_replicas: settings.store.wait_replicas,
                    wait_timeout_ms: settings.store.wait_timeout_ms,
                    node: node.clone(),
                    tls_ca_file: settings.store.tls_ca_file.clone().map(Into::into),
                })?;
                // Alive before any socket is attributed to this node. A Redis that is down now
                // is not fatal: readiness says so and the store reconnects by itself.
                if let Err(e) = store.heartbeat(clock.now_ms()).await {
                    tracing::warn!(error = %e, "redis unavailable at start; retrying in the background");
                }
                let (bus, sender) =
                    crate::cluster::bus(store.redis(), &settings.store.key_prefix, &node);
                shared_redis = Some(store.redis());
                // No address in the logs, not even the store's: the scheme says enough.
                let scheme = url.split("://").next().unwrap_or("redis");
                tracing::info!(node = %node, scheme, "shared store: redis");
                (Arc::new(store) as Arc<dyn Store>, Some((bus, sender)))
            }
        };
        // Seeded on first start; read whole, then re-read when the database's revision moves.
        let directory = Directory::open(
            db.clone(),
            clock.clone(),
            &settings.directory,
            RuntimeSettings {
                overloaded: false,
                min_on_duty: settings.alerts.min_on_duty,
            },
        )
        .await?;
        let oncall = Arc::new(crate::oncall::Oncall::open(
            &settings.alerts,
            db.clone(),
            clock.clone(),
        )?);
        let mut engine = Engine::new(store, settings.conversation.clone(), metrics)
            .with_clock(clock.clone())
            .with_escalations(escalations)
            .with_alerts(settings.alerts.clone())
            .with_directory(Arc::clone(&directory))
            .with_oncall(oncall);
        let mut cluster_bus = None;
        if let Some((b, sender)) = bus {
            engine = engine.with_bus(sender);
            cluster_bus = Some(b);
        }
        let engine = Arc::new(engine);
        let mut accounts = Accounts::open(&settings.auth, db, clock.clone()).await?;
        if let Some(redis) = &shared_redis {
            accounts = accounts.with_shared_sessions(crate::store::redis::RedisSessions::new(
                Arc::clone(redis),
                &settings.store.key_prefix,
            ));
        }
        let accounts = Arc::new(accounts);
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
        // So does a missing provider credential when `[voice]` is enabled.
        let voice = crate::connectors::voice::Voice::build(
            &settings.voice,
            settings.server.socket_queue,
            Arc::clone(&engine),
            Arc::clone(&accounts),
            shutdown.clone(),
            tracker.clone(),
        )?;
        // Alerts go by LINE and by phone through the connectors that are configured.
        if let Some(oncall) = &engine.oncall {
            if let Some(l) = &line {
                oncall.set_line(Arc::clone(l) as Arc<dyn crate::oncall::LinePager>);
            }
            if let Some(v) = &voice {
                oncall.set_phone(Arc::clone(v) as Arc<dyn crate::oncall::PhonePager>);
            }
        }
        let listener = bind(settings.server.host.as_str(), settings.server.port)
            .await
            .with_context(|| {
                format!("binding {}:{}", settings.server.host, settings.server.port)
            })?;
        let addr = listener.local_addr()?;
        // The port actually bound (port 0 picks one): the gateway's own origins name it.
        settings.server.port = addr.port();
        let limits = Arc::new(crate::limits::Limits::new(&settings.limits));
        let state = Arc::new(AppState {
            settings,
            clock,
            engine,
            accounts,
            directory,
            limits,
            draining: CancellationToken::new(),
            shutdown,
            tracker,
            line,
            voice,
        });
        let app = Application {
            listener,
            addr,
            state,
            tls,
            bus: cluster_bus,
        };
        if let Some(oncall) = &app.state.engine.oncall {
            oncall.set_base_url(&app.base_url());
        }
        Ok(app)
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
            None if self.tls.is_some() => format!("https://{}", self.addr),
            None => format!("http://{}", self.addr),
        }
    }

    /// Serves until `state().shutdown` is cancelled, then waits (up to
    /// `server.shutdown_grace_ms`) for websockets to close with 1001 and tasks to stop.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let state = self.state;
        if let Some(bus) = self.bus {
            bus.spawn(
                Arc::clone(&state.engine),
                state.shutdown.clone(),
                &state.tracker,
            );
        }
        timers::spawn(
            Arc::clone(&state.engine),
            state.shutdown.clone(),
            &state.tracker,
        );
        if let Some(esc) = &state.engine.escalations {
            timers::spawn_escalation_sweeper(
                Arc::clone(esc),
                Duration::from_millis(state.settings.escalation.sweep_ms),
                state.clock.clone(),
                state.shutdown.clone(),
                &state.tracker,
            );
        }
        let engine = Arc::clone(&state.engine);
        state.directory.spawn_poller(
            state.settings.directory.poll_ms,
            state.shutdown.clone(),
            &state.tracker,
            move |rt| engine.apply_runtime(rt),
        );
        if let Some(oncall) = &state.engine.oncall {
            crate::oncall::spawn(Arc::clone(oncall), state.shutdown.clone(), &state.tracker);
        }
        let router = crate::http::router(Arc::clone(&state));
        spawn_limit_shedder(&state);
        crate::ws::visitor::spawn_heartbeat(&state);
        if let Some(tls) = &self.tls {
            tls.watch(state.shutdown.clone(), &state.tracker);
        }
        let server = &state.settings.server;
        crate::server::Server {
            router,
            admission: crate::server::Admission::new(server, Arc::clone(&state.limits)),
            tls: self.tls,
            header_timeout: Duration::from_millis(server.header_read_timeout_ms.max(1)),
            max_header_bytes: server.max_header_bytes,
            shutdown: state.shutdown.clone(),
            tracker: state.tracker.clone(),
        }
        .run(self.listener)
        .await;
        // Connections in flight and open sockets close themselves (1001), on the tracker.
        state.tracker.close();
        let grace = Duration::from_millis(state.settings.server.shutdown_grace_ms);
        if tokio::time::timeout(grace, state.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutdown grace elapsed with sockets still open");
        }
        // Last: a SQLite file is then whole on disk (its WAL checkpointed).
        state.accounts.close_database().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// What a stop signal does: `/readyz` answers 503 `shutting_down` at once, the node goes on
/// serving for `server.shutdown_delay_ms` (so that a load balancer checking `/readyz` takes it
/// out before anyone is moved), or until `again` (a second signal) completes, and then it shuts
/// down: listener closed, websockets closed with 1001 (`Application::run_until_stopped`).
pub async fn stop(state: &AppState, again: impl std::future::Future<Output = ()>) {
    state.draining.cancel();
    let delay = Duration::from_millis(state.settings.server.shutdown_delay_ms);
    if !delay.is_zero() {
        tracing::info!(
            delay_ms = state.settings.server.shutdown_delay_ms,
            "not ready; shutting down after the delay"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = again => tracing::info!("second stop signal: shutting down now"),
        }
    }
    state.shutdown.cancel();
}

/// How often rate limiters forget quiet addresses.
const SHED_INTERVAL: Duration = Duration::from_secs(60);

/// Binds the listening socket with a backlog of [`LISTEN_BACKLOG`] (std's `bind` asks for 128):
/// when thousands of people reconnect at once (a network blip, a node restart), a short accept
/// queue overflows and the dropped connection attempts are retried by their kernels only after
/// a second. Measured by the load tests' reconnect storm, see BENCHMARKS.md.
async fn bind(host: &str, port: u16) -> std::io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(addr) {
            Ok(()) => return socket.listen(LISTEN_BACKLOG),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "no address to bind")
    }))
}

/// The kernel caps this at `net.core.somaxconn` (4096 on current Linux).
const LISTEN_BACKLOG: u32 = 4096;

fn spawn_limit_shedder(state: &Arc<AppState>) {
    let limits = Arc::clone(&state.limits);
    let shutdown = state.shutdown.clone();
    state.tracker.spawn(async move {
        let mut tick = tokio::time::interval(SHED_INTERVAL);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => limits.shed(),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table's size as the kernel reports it (`FDSize` in /proc/self/status).
    fn descriptor_table_size() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("FDSize:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    }

    #[test]
    fn reserving_the_descriptor_table_grows_it_to_the_open_files_limit_and_leaves_nothing_open() {
        let open_before = std::fs::read_dir("/proc/self/fd").unwrap().count();
        let reserved = reserve_descriptor_table().expect("reserved");
        assert!((1..=DESCRIPTOR_TABLE_MAX).contains(&reserved));
        assert!(descriptor_table_size() >= reserved);
        let open_after = std::fs::read_dir("/proc/self/fd").unwrap().count();
        // Other tests open files at the same time: allow for them, not for a leak of ours.
        assert!(
            open_after <= open_before + 8,
            "{open_before} -> {open_after}"
        );
    }
}
