//! The calls the connector makes to the Messaging API (`messaging-api.yml`): push, reply,
//! loading indicator, mark as read. Each call retries 429, 5xx and network errors with capped
//! exponential backoff and jitter: a bounded number of times (`line.retry_attempts`), except
//! [`LineApi::push_until_accepted`] (an operator's message), which keeps trying while its
//! conversation lives and the gateway runs. A push carries an `X-Line-Retry-Key` that stays the
//! same on every attempt, so LINE accepts it once (a 409 on a retry means an earlier attempt got
//! through).
//!
//! Logs carry the operation, status, attempt and timing: never the body, the user id, a reply
//! token or the access token.

use std::time::{Duration, Instant};

use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::settings::LineSettings;

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// LINE accepted the request.
    Delivered,
    /// 409 with a retry key: an earlier attempt with this key was accepted.
    AlreadyAccepted,
    /// LINE refused it for good (4xx other than 409 and 429): retrying would not help.
    Rejected(u16),
    /// Every attempt failed with a 429, a 5xx or a network error (or shutdown came first, or,
    /// for [`LineApi::push_until_accepted`], the conversation ended and the bounded attempts
    /// after its end failed too).
    GaveUp,
}

impl Outcome {
    pub fn delivered(self) -> bool {
        matches!(self, Outcome::Delivered | Outcome::AlreadyAccepted)
    }
}

/// A retry key derived from what is being sent (conversation and log entry), so the same
/// message gets the same key however often, and from whichever task, it is sent. Formatted as a
/// version-4 UUID, which is what the API asks for.
pub fn retry_key(parts: &[&str]) -> String {
    let mut b = crate::connectors::derived_bytes(b"tsunagu/line/retry-key", parts);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Text message objects, at most five per request (the API's limit).
fn text_messages(texts: &[String]) -> Vec<Value> {
    texts
        .iter()
        .take(5)
        .map(|t| json!({"type": "text", "text": t}))
        .collect()
}

pub struct LineApi {
    http: reqwest::Client,
    base: String,
    retry_base: Duration,
    retry_max: Duration,
    attempts: u32,
    shutdown: CancellationToken,
}

impl LineApi {
    pub fn new(s: &LineSettings, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(s.request_timeout_ms))
            .user_agent(concat!("tsunagu/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(LineApi {
            http,
            base: s.api_base.trim_end_matches('/').to_owned(),
            retry_base: s.retry_base(),
            retry_max: Duration::from_millis(s.retry_max_ms.max(s.retry_base_ms)),
            attempts: s.retry_attempts,
            shutdown,
        })
    }

    /// `POST /v2/bot/message/push` to one user, with a retry key.
    pub async fn push(
        &self,
        token: &SecretString,
        to: &str,
        texts: &[String],
        retry_key: &str,
    ) -> Outcome {
        self.push_while(token, to, texts, retry_key, None).await
    }

    /// A push that is not given up while `live` (the conversation) is not cancelled and the
    /// gateway runs: 429, 5xx and network errors are retried with the same retry key, the delay
    /// capped at `line.retry_max_ms`. Once `live` is cancelled it gets `line.retry_attempts`
    /// more attempts. Ends early only with a permanent refusal ([`Outcome::Rejected`]) or at
    /// shutdown.
    pub async fn push_until_accepted(
        &self,
        token: &SecretString,
        to: &str,
        texts: &[String],
        retry_key: &str,
        live: &CancellationToken,
    ) -> Outcome {
        self.push_while(token, to, texts, retry_key, Some(live))
            .await
    }

    /// The push both of the above make: bounded without `live`, else retried while it lives.
    async fn push_while(
        &self,
        token: &SecretString,
        to: &str,
        texts: &[String],
        retry_key: &str,
        live: Option<&CancellationToken>,
    ) -> Outcome {
        let body = json!({"to": to, "messages": text_messages(texts)});
        let path = "/v2/bot/message/push";
        self.call("push", path, token, &body, Some(retry_key), live)
            .await
    }

    /// `POST /v2/bot/message/reply`. A reply token is single-use, so a retry can never
    /// duplicate: LINE refuses a used token with 400.
    pub async fn reply(
        &self,
        token: &SecretString,
        reply_token: &str,
        texts: &[String],
    ) -> Outcome {
        let body = json!({"replyToken": reply_token, "messages": text_messages(texts)});
        self.call("reply", "/v2/bot/message/reply", token, &body, None, None)
            .await
    }

    /// `POST /v2/bot/chat/loading/start`: the "…" the person sees while an operator types.
    pub async fn loading(&self, token: &SecretString, chat_id: &str, seconds: u32) -> Outcome {
        let body = json!({"chatId": chat_id, "loadingSeconds": seconds});
        self.call(
            "loading",
            "/v2/bot/chat/loading/start",
            token,
            &body,
            None,
            None,
        )
        .await
    }

    /// `POST /v2/bot/chat/markAsRead`: the person sees "read" (既読).
    pub async fn mark_read(&self, token: &SecretString, mark_token: &str) -> Outcome {
        let body = json!({"markAsReadToken": mark_token});
        self.call(
            "mark_read",
            "/v2/bot/chat/markAsRead",
            token,
            &body,
            None,
            None,
        )
        .await
    }

    /// The delay before attempt `attempt + 1`: exponential, capped, with jitter (half to all
    /// of it) so that many conversations backing off together do not retry in step.
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .retry_base
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX));
        let cap = exp.min(self.retry_max);
        let millis = cap.as_millis() as u64;
        let jittered = rand::rng().random_range(millis / 2..=millis.max(1));
        Duration::from_millis(jittered)
    }

    async fn call(
        &self,
        op: &'static str,
        path: &str,
        token: &SecretString,
        body: &Value,
        retry_key: Option<&str>,
        live: Option<&CancellationToken>,
    ) -> Outcome {
        let url = format!("{}{}", self.base, path);
        let started = Instant::now();
        // Bounded calls stop after `attempts`; a call tied to a live conversation has no limit
        // until the conversation ends, then `attempts` more.
        let mut limit = match live {
            Some(_) => None,
            None => Some(self.attempts),
        };
        // Attempts made so far.
        let mut tried: u32 = 0;
        loop {
            if limit.is_none() && live.is_some_and(CancellationToken::is_cancelled) {
                limit = Some(tried.saturating_add(self.attempts));
            }
            if limit.is_some_and(|l| tried >= l) || tried == u32::MAX {
                break;
            }
            let attempt = tried;
            tried += 1;
            if attempt > 0 {
                let delay = self.backoff(attempt - 1);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = self.shutdown.cancelled() => break,
                }
            }
            let mut req = self
                .http
                .post(&url)
                .bearer_auth(token.expose_secret())
                .json(body);
            if let Some(key) = retry_key {
                req = req.header("X-Line-Retry-Key", key);
            }
            match req.send().await {
                Ok(res) => {
                    let status = res.status().as_u16();
                    // The body (an error message) is not needed; read it so the connection
                    // can be reused.
                    let _ = res.bytes().await;
                    let ms = started.elapsed().as_millis() as u64;
                    match status {
                        200..=299 => {
                            tracing::debug!(op, status, attempt, ms, "LINE API call done");
                            return Outcome::Delivered;
                        }
                        409 if retry_key.is_some() => {
                            tracing::info!(op, status, attempt, ms, "LINE API: already accepted");
                            return Outcome::AlreadyAccepted;
                        }
                        429 | 500..=599 => {
                            tracing::warn!(
                                op,
                                status,
                                attempt,
                                ms,
                                "LINE API call failed; will retry"
                            );
                        }
                        _ => {
                            tracing::warn!(op, status, attempt, ms, "LINE API refused the call");
                            return Outcome::Rejected(status);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        op,
                        attempt,
                        timeout = e.is_timeout(),
                        connect = e.is_connect(),
                        "LINE API unreachable; will retry"
                    );
                }
            }
        }
        tracing::error!(
            op,
            attempts = tried,
            ms = started.elapsed().as_millis() as u64,
            "LINE API call given up"
        );
        Outcome::GaveUp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_keys_are_stable_uuids_and_differ_per_message() {
        let a = retry_key(&["conv", "7"]);
        assert_eq!(a, retry_key(&["conv", "7"]));
        assert_ne!(a, retry_key(&["conv", "8"]));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4", "version 4: {a}");
        assert!("89ab".contains(&a[19..20]), "RFC 4122 variant: {a}");
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let s = LineSettings {
            retry_base_ms: 100,
            retry_max_ms: 1_000,
            ..LineSettings::default()
        };
        let api = LineApi::new(&s, CancellationToken::new()).unwrap();
        for _ in 0..50 {
            let d0 = api.backoff(0).as_millis();
            assert!((50..=100).contains(&d0), "{d0}");
            let d3 = api.backoff(3).as_millis();
            assert!((400..=800).contains(&d3), "{d3}");
            let d30 = api.backoff(30).as_millis();
            assert!((500..=1_000).contains(&d30), "{d30}");
        }
    }
}
