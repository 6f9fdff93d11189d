//! The `[line]` section of the settings, and its resolution at startup into channels whose
//! secrets come from environment variables (never from a file in the repository).

use std::time::Duration;

use anyhow::Context;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// `[line]`: LINE official accounts connected to this gateway. No channels: the connector is off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LineSettings {
    /// Base URL of the Messaging API. Tests point it at a fake on loopback.
    pub api_base: String,
    /// One entry per LINE channel (official account); each has its own webhook path.
    pub channels: Vec<LineChannelSettings>,
    /// Largest webhook body accepted, in bytes (larger: 413). LINE batches events, but a body
    /// of text events stays far below this.
    pub max_body_bytes: usize,
    /// A reply token is used only while younger than this. LINE documents "about a minute" and
    /// does not promise it, so leave a margin for the request itself.
    pub reply_token_ttl_ms: u64,
    /// First retry delay after a 429, a 5xx or a network error; doubles on every attempt.
    pub retry_base_ms: u64,
    /// Largest delay between two attempts.
    pub retry_max_ms: u64,
    /// Attempts per outgoing notice, reply, loading indicator or mark-as-read before it is given
    /// up (and logged as undelivered). An operator's message is not limited by this while its
    /// conversation lives: it is retried until LINE accepts or refuses it, and gets this many
    /// more attempts once the conversation has ended.
    pub retry_attempts: u32,
    /// Time limit of one request to the Messaging API.
    pub request_timeout_ms: u64,
    /// How long a `webhookEventId` is remembered to drop redeliveries.
    pub dedupe_ttl_ms: u64,
    /// How many `webhookEventId`s are remembered at most (the oldest are forgotten first).
    pub dedupe_capacity: usize,
    /// Seconds the loading indicator shows while an operator types (5 to 60, multiple of 5).
    pub loading_seconds: u32,
    /// How often a pending mark-as-read checks whether the operator has seen the message.
    pub read_poll_ms: u64,
}

impl Default for LineSettings {
    fn default() -> Self {
        LineSettings {
            api_base: "https://api.line.me".into(),
            channels: Vec::new(),
            max_body_bytes: 256 * 1024,
            reply_token_ttl_ms: 50_000,
            retry_base_ms: 1_000,
            retry_max_ms: 60_000,
            // With the defaults above: about 5 minutes of trying (notices; an operator's message
            // keeps trying while its conversation lives). A retry key is honoured by LINE for 24
            // hours, so every attempt is safe against duplicates.
            retry_attempts: 10,
            request_timeout_ms: 10_000,
            // LINE redelivers failed webhooks for a while; an hour covers its retry schedule.
            dedupe_ttl_ms: 60 * 60_000,
            dedupe_capacity: 100_000,
            loading_seconds: 20,
            read_poll_ms: 1_000,
        }
    }
}

/// One LINE channel, as configured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LineChannelSettings {
    /// Short name used in the webhook path: `/connectors/line/webhook/{id}`.
    pub id: String,
    /// Name of the environment variable holding the channel secret.
    pub secret_env: String,
    /// Name of the environment variable holding the (long-lived) channel access token.
    pub token_env: String,
    /// Language of the people this channel serves: routing and the notices they get.
    #[serde(default = "default_language")]
    pub language: String,
    /// Queue priority of its conversations (0 is normal, higher is served first).
    #[serde(default)]
    pub priority: u8,
}

fn default_language() -> String {
    "ja".into()
}

/// A channel ready to serve: its secrets read from the environment.
pub struct LineChannel {
    pub id: String,
    pub secret: SecretString,
    pub token: SecretString,
    pub language: String,
    pub priority: u8,
}

impl std::fmt::Debug for LineChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineChannel")
            .field("id", &self.id)
            .field("language", &self.language)
            .field("priority", &self.priority)
            .finish_non_exhaustive()
    }
}

impl LineSettings {
    pub fn retry_base(&self) -> Duration {
        Duration::from_millis(self.retry_base_ms)
    }

    /// Reads every channel's secret and token through `env`; a missing or empty one is an error
    /// that names the variable (never its value).
    pub fn resolve(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Vec<LineChannel>> {
        self.validate()?;
        let read = |channel: &str, var: &str| -> anyhow::Result<SecretString> {
            let value = env(var).filter(|v| !v.trim().is_empty()).with_context(|| {
                format!("LINE channel {channel:?}: environment variable {var} is not set")
            })?;
            Ok(SecretString::from(value.trim().to_owned()))
        };
        self.channels
            .iter()
            .map(|c| {
                Ok(LineChannel {
                    id: c.id.clone(),
                    secret: read(&c.id, &c.secret_env)?,
                    token: read(&c.id, &c.token_env)?,
                    language: c.language.clone(),
                    priority: c.priority,
                })
            })
            .collect()
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.api_base.starts_with("https://") || self.api_base.starts_with("http://"),
            "line.api_base must be an http(s) URL"
        );
        anyhow::ensure!(
            (5..=60).contains(&self.loading_seconds) && self.loading_seconds % 5 == 0,
            "line.loading_seconds must be a multiple of 5 between 5 and 60"
        );
        anyhow::ensure!(
            self.retry_attempts >= 1,
            "line.retry_attempts must be at least 1"
        );
        anyhow::ensure!(
            self.dedupe_capacity >= 1,
            "line.dedupe_capacity must be at least 1"
        );
        let mut seen = std::collections::HashSet::new();
        for c in &self.channels {
            anyhow::ensure!(
                !c.id.is_empty()
                    && c.id
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_'),
                "line channel id {:?} must be letters, digits, - or _",
                c.id
            );
            anyhow::ensure!(seen.insert(&c.id), "line channel id {:?} is repeated", c.id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn one_channel() -> LineSettings {
        LineSettings {
            channels: vec![LineChannelSettings {
                id: "npo1".into(),
                secret_env: "S".into(),
                token_env: "T".into(),
                language: "ja".into(),
                priority: 0,
            }],
            ..LineSettings::default()
        }
    }

    #[test]
    fn a_line_section_in_toml_configures_several_channels() {
        let toml = r#"
            [line]
            api_base = "http://127.0.0.1:9999"
            channels = [
              { id = "npo1", secret_env = "A_SECRET", token_env = "A_TOKEN" },
              { id = "youth", secret_env = "B_SECRET", token_env = "B_TOKEN", language = "ja-easy", priority = 1 },
            ]
        "#;
        let s = crate::config::Settings::from_toml(toml);
        assert_eq!(s.line.api_base, "http://127.0.0.1:9999");
        assert_eq!(s.line.channels.len(), 2);
        assert_eq!(s.line.channels[0].language, "ja");
        assert_eq!(s.line.channels[1].language, "ja-easy");
        assert_eq!(s.line.channels[1].priority, 1);
        assert_eq!(s.line.reply_token_ttl_ms, 50_000, "defaults fill the rest");
    }

    #[test]
    fn secrets_come_from_the_named_variables() {
        let chans = one_channel()
            .resolve(|k| Some(format!("value-of-{k}")))
            .unwrap();
        assert_eq!(chans[0].secret.expose_secret(), "value-of-S");
        assert_eq!(chans[0].token.expose_secret(), "value-of-T");
    }

    #[test]
    fn a_missing_or_empty_secret_is_an_error_naming_the_variable() {
        let err = one_channel()
            .resolve(|k| (k == "T").then(|| "tok".into()))
            .unwrap_err();
        assert!(err.to_string().contains("variable S"), "{err}");
        let err = one_channel()
            .resolve(|k| Some(if k == "T" { " ".into() } else { "s".into() }))
            .unwrap_err();
        assert!(err.to_string().contains("variable T"), "{err}");
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let chans = one_channel()
            .resolve(|_| Some("supersecret".into()))
            .unwrap();
        assert!(!format!("{:?}", chans[0]).contains("supersecret"));
    }

    #[test]
    fn repeated_or_odd_channel_ids_are_refused() {
        let mut s = one_channel();
        s.channels.push(s.channels[0].clone());
        assert!(s.resolve(|_| Some("x".into())).is_err());
        let mut s = one_channel();
        s.channels[0].id = "a/b".into();
        assert!(s.resolve(|_| Some("x".into())).is_err());
    }
}
