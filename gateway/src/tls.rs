//! TLS termination with rustls, when the gateway serves HTTPS itself (`server.tls_cert_file`
//! and `server.tls_key_file`). The certificate and key are reloaded without dropping
//! connections on SIGHUP and whenever either file changes (polled), so a renewal (certbot,
//! cert-manager) needs no restart. Existing connections keep the certificate they started with;
//! new handshakes get the new one.
//!
//! rustls 0.23 refuses to guess when more than one crypto provider is compiled in, so
//! [`install_crypto_provider`] installs `ring` explicitly at start.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ServerSettings;

/// Installs the process-wide rustls crypto provider (ring). Harmless if already installed.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub struct Tls {
    pub config: RustlsConfig,
    cert: PathBuf,
    key: PathBuf,
    poll: Duration,
}

fn mtimes(cert: &PathBuf, key: &PathBuf) -> (Option<SystemTime>, Option<SystemTime>) {
    let m = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (m(cert), m(key))
}

impl Tls {
    /// Loads the certificate and key named in the settings; `None` when TLS is not configured.
    /// An unreadable or invalid pair is a startup error.
    pub async fn load(server: &ServerSettings) -> anyhow::Result<Option<Arc<Tls>>> {
        let (Some(cert), Some(key)) = (&server.tls_cert_file, &server.tls_key_file) else {
            return Ok(None);
        };
        install_crypto_provider();
        let config = RustlsConfig::from_pem_file(cert, key)
            .await
            .with_context(|| format!("loading TLS certificate {cert} and key {key}"))?;
        Ok(Some(Arc::new(Tls {
            config,
            cert: PathBuf::from(cert),
            key: PathBuf::from(key),
            poll: Duration::from_millis(server.tls_reload_poll_ms.max(100)),
        })))
    }

    /// Reads the files again; on failure the current certificate stays in use.
    pub async fn reload(&self) -> bool {
        match self
            .config
            .reload_from_pem_file(&self.cert, &self.key)
            .await
        {
            Ok(()) => {
                tracing::info!("TLS certificate reloaded");
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS certificate reload failed; keeping the current one");
                false
            }
        }
    }

    /// Reloads on SIGHUP and when the files change, until shutdown.
    pub fn watch(self: &Arc<Self>, shutdown: CancellationToken, tracker: &TaskTracker) {
        let tls = Arc::clone(self);
        tracker.spawn(async move {
            let mut seen = mtimes(&tls.cert, &tls.key);
            let mut tick = tokio::time::interval(tls.poll);
            #[cfg(unix)]
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            loop {
                #[cfg(unix)]
                let hangup = async {
                    match hup.as_mut() {
                        Some(h) => {
                            h.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                #[cfg(not(unix))]
                let hangup = std::future::pending::<()>();
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = hangup => {
                        tracing::info!("SIGHUP: reloading the TLS certificate");
                        tls.reload().await;
                        seen = mtimes(&tls.cert, &tls.key);
                    }
                    _ = tick.tick() => {
                        let now = mtimes(&tls.cert, &tls.key);
                        if now != seen && tls.reload().await {
                            seen = now;
                        }
                    }
                }
            }
        });
    }
}
