//! The REST calls the connector makes, HTTP basic auth with the account SID and auth token:
//! update a live call with new TwiML (`POST {api_base}/2010-04-01/Accounts/{AccountSid}/Calls/
//! {CallSid}.json`, form field `Twiml`) to bridge a caller to an operator, put them back on
//! hold, or end the call politely; and create a call (`…/Calls.json`, `To`, `From`, `Url`) to
//! page a coordinator with an alert.
//!
//! 429, 5xx and network errors are retried with exponential backoff and jitter, a bounded
//! number of times; other 4xx are final (404: the call is already over). Logs carry the
//! operation, status, attempt and timing: never the call SID, a number or the TwiML.

use std::time::{Duration, Instant};

use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use super::settings::VoiceSettings;

/// How a call to the provider ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Refused for good (a 4xx other than 429): retrying would not help.
    Rejected(u16),
    /// Every attempt failed with a 429, a 5xx or a network error (or shutdown came first).
    GaveUp,
}

pub struct VoiceApi {
    http: reqwest::Client,
    base: String,
    account_sid: String,
    auth_token: SecretString,
    retry_base: Duration,
    retry_max: Duration,
    attempts: u32,
    shutdown: CancellationToken,
}

impl VoiceApi {
    pub fn new(
        s: &VoiceSettings,
        account_sid: String,
        auth_token: SecretString,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(s.request_timeout_ms))
            .user_agent(concat!("tsunagu/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(VoiceApi {
            http,
            base: s.api_base.trim_end_matches('/').to_owned(),
            account_sid,
            auth_token,
            retry_base: Duration::from_millis(s.retry_base_ms),
            retry_max: Duration::from_millis(s.retry_max_ms.max(s.retry_base_ms)),
            attempts: s.retry_attempts,
            shutdown,
        })
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .retry_base
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX));
        let millis = exp.min(self.retry_max).as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(millis / 2..=millis.max(1)))
    }

    /// Replaces what the live call `call_sid` is doing with `twiml`. `op` names the purpose in
    /// the logs (`bridge`, `hold`, `hangup`).
    pub async fn update_call(&self, op: &'static str, call_sid: &str, twiml: &str) -> Outcome {
        let path = format!("Calls/{call_sid}.json");
        self.post_form(op, &path, &[("Twiml", twiml)]).await
    }

    /// Calls `to` from `from`; the provider fetches the call's TwiML from `url` (POST, signed).
    pub async fn create_call(&self, to: &str, from: &str, url: &str) -> Outcome {
        let form = [("To", to), ("From", from), ("Url", url), ("Method", "POST")];
        self.post_form("alert_call", "Calls.json", &form).await
    }

    /// Posts `form` to `{api_base}/2010-04-01/Accounts/{AccountSid}/{path}`, retried.
    async fn post_form(&self, op: &'static str, path: &str, form: &[(&str, &str)]) -> Outcome {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/{path}",
            self.base, self.account_sid
        );
        let started = Instant::now();
        for attempt in 0..self.attempts {
            if attempt > 0 {
                tokio::select! {
                    _ = tokio::time::sleep(self.backoff(attempt - 1)) => {}
                    _ = self.shutdown.cancelled() => break,
                }
            }
            let req = self
                .http
                .post(&url)
                .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
                .form(form);
            let ms = || started.elapsed().as_millis() as u64;
            match req.send().await {
                Ok(res) => {
                    let status = res.status().as_u16();
                    let _ = res.bytes().await;
                    match status {
                        200..=299 => {
                            tracing::debug!(op, status, attempt, ms = ms(), "voice API call done");
                            return Outcome::Done;
                        }
                        429 | 500..=599 => {
                            tracing::warn!(
                                op,
                                status,
                                attempt,
                                ms = ms(),
                                "voice API call failed; will retry"
                            )
                        }
                        _ => {
                            tracing::warn!(
                                op,
                                status,
                                attempt,
                                ms = ms(),
                                "voice API refused the call"
                            );
                            return Outcome::Rejected(status);
                        }
                    }
                }
                Err(e) => tracing::warn!(
                    op,
                    attempt,
                    timeout = e.is_timeout(),
                    connect = e.is_connect(),
                    "voice API unreachable; will retry"
                ),
            }
        }
        tracing::error!(
            op,
            attempts = self.attempts,
            ms = started.elapsed().as_millis() as u64,
            "voice API call given up"
        );
        Outcome::GaveUp
    }
}
