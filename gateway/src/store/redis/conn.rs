//! Connections to Redis: one Redis (`redis://`, `rediss://` for TLS) or the primary that Redis
//! Sentinel names (`redis+sentinel://host:port,host:port/master`).
//!
//! [`Redis`] hands out a shared multiplexed connection and replaces it after an error, asking
//! the sentinels again for the primary, so a restart or a failover is survived without
//! restarting the gateway. Every command has a response timeout; blocking reads are not used.

use std::sync::Mutex;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{AsyncConnectionConfig, Client, RedisError, RedisResult};

/// How long one command may take before the connection is considered broken.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

enum Target {
    Direct(Client),
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

/// Where Redis is and a connection to it, replaced when broken.
pub struct Redis {
    target: Target,
    current: Mutex<Option<MultiplexedConnection>>,
    /// Only one task reconnects at a time; the others wait for its result.
    connecting: tokio::sync::Mutex<()>,
}

/// A URL that names Redis without its password, for logs.
pub fn redacted(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_owned(),
        },
        None => "(invalid)".into(),
    }
}

impl Redis {
    /// Parses `url`; does not connect yet. `ca_pem`: the certificates (PEM) that a `rediss://`
    /// server's certificate must chain to, instead of the system's roots.
    pub fn open_with_ca(url: &str, ca_pem: Option<Vec<u8>>) -> RedisResult<Redis> {
        match ca_pem {
            Some(pem) if url.starts_with("rediss://") => {
                let client = Client::build_with_tls(
                    url,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    },
                )?;
                Ok(Redis {
                    target: Target::Direct(client),
                    current: Mutex::new(None),
                    connecting: tokio::sync::Mutex::new(()),
                })
            }
            _ => Redis::open(url),
        }
    }

    /// Parses `url`; does not connect yet.
    pub fn open(url: &str) -> RedisResult<Redis> {
        let target = if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            let (hosts, master) = rest.split_once('/').unwrap_or((rest, "mymaster"));
            let master = if master.is_empty() {
                "mymaster"
            } else {
                master
            };
            let sentinels: Vec<String> = hosts
                .split(',')
                .filter(|h| !h.is_empty())
                .map(|h| format!("redis://{h}"))
                .collect();
            let client =
                SentinelClient::build(sentinels, master, None, SentinelServerType::Master)?;
            Target::Sentinel(tokio::sync::Mutex::new(client))
        } else {
            Target::Direct(Client::open(url)?)
        };
        Ok(Redis {
            target,
            current: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
        })
    }

    /// A client for the current primary (for a pub/sub connection of its own).
    pub async fn client(&self) -> RedisResult<Client> {
        match &self.target {
            Target::Direct(c) => Ok(c.clone()),
            Target::Sentinel(s) => s.lock().await.async_get_client().await,
        }
    }

    fn cached(&self) -> Option<MultiplexedConnection> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The shared connection, connecting first if there is none.
    pub async fn conn(&self) -> RedisResult<MultiplexedConnection> {
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let _one = self.connecting.lock().await;
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let conn = self
            .client()
            .await?
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
        tracing::info!("connected to redis");
        Ok(conn)
    }

    /// Notes the outcome of a command: after an error that says the connection (or the server
    /// it reaches) cannot serve, the next command connects again.
    pub fn check<T>(&self, result: RedisResult<T>) -> RedisResult<T> {
        if let Err(e) = &result {
            if must_reconnect(e) {
                let dropped = self
                    .current
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                if dropped.is_some() {
                    tracing::warn!(error = %e, "redis connection lost; reconnecting");
                }
            }
        }
        result
    }
}

/// Errors after which the connection is replaced: I/O, timeouts, a server that is loading or
/// has become a replica (after a failover), or one that refuses writes.
fn must_reconnect(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.code(),
            Some("READONLY" | "LOADING" | "MASTERDOWN" | "NOREPLICAS")
        )
        || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_logged_without_their_password() {
        assert_eq!(
            redacted("redis://user:secret@10.0.0.1:6379/0"),
            "redis://***@10.0.0.1:6379/0"
        );
        assert_eq!(redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn sentinel_urls_name_the_sentinels_and_the_master() {
        assert!(Redis::open("redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster").is_ok());
        assert!(Redis::open("redis://127.0.0.1:1/").is_ok());
    }
}
