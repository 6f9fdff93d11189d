//! The `[voice]` section of the settings, and its resolution at startup into the provider
//! credentials, which come from environment variables (never from a file in the repository).

use anyhow::Context;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// `[voice]`: phone intake through a telephony provider with Twilio-compatible voice webhooks.
/// Off unless `enabled`; when enabled, missing credentials stop the start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct VoiceSettings {
    pub enabled: bool,
    /// Base URL of the provider's REST API (`https://api.twilio.com` for Twilio). Tests point
    /// it at a fake on loopback.
    pub api_base: String,
    /// Name of the environment variable holding the account SID (`AC…`).
    pub account_sid_env: String,
    /// Name of the environment variable holding the auth token: it signs the provider's
    /// webhooks (`X-Twilio-Signature`) and authenticates our REST calls.
    pub auth_token_env: String,
    /// The URL the provider calls, up to (not including) `/connectors/voice/…`, when it differs
    /// from what the gateway sees (behind a proxy or a TLS terminator). Signatures are computed
    /// over the URL the provider called, so this must be exact. Unset: `server.public_url`,
    /// else `http://` plus the request's `Host` header (fine on a private test setup only).
    pub public_url: Option<String>,
    /// Language of the callers: routing (an operator who speaks it) and what is announced.
    pub language: String,
    /// `language` attribute of `<Say>` (the provider's text-to-speech voice).
    pub say_language: String,
    /// Queue priority of phone conversations (0 is normal, higher is served first).
    pub priority: u8,
    /// Recorded greeting to `<Play>` instead of the spoken one (it must carry the privacy notice).
    pub greeting_audio_url: Option<String>,
    /// Audio played while holding, instead of silence between announcements.
    pub hold_music_url: Option<String>,
    /// Seconds between two position announcements while holding.
    pub announce_every_secs: u32,
    /// A caller who has waited this long hears the other helplines and the call ends politely.
    pub max_wait_secs: u64,
    /// Extra sentences spoken after the other helplines (which come from the referral
    /// directory: entries marked for closing messages) when a call ends. Empty by default.
    pub helplines: Vec<String>,
    /// Seconds an operator's phone rings before the call goes back to the queue.
    pub dial_timeout_secs: u32,
    /// Number shown to operators as the caller (`callerId` of `<Dial>`): never the caller's own
    /// number. Unset: the helpline number the person called (`To`).
    pub caller_id: Option<String>,
    /// A waiting call whose hold loop has not come back for this long is taken as gone (its
    /// status callback was lost) and ends as abandoned.
    pub hold_silence_secs: u64,
    /// Largest webhook body accepted, in bytes (larger: 413). Voice webhooks are a few dozen
    /// short form fields.
    pub max_body_bytes: usize,
    /// First retry delay after a 429, a 5xx or a network error; doubles on every attempt.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// Attempts per REST call before it is given up (and logged by conversation id).
    pub retry_attempts: u32,
    /// Time limit of one REST request.
    pub request_timeout_ms: u64,
}

impl Default for VoiceSettings {
    fn default() -> Self {
        VoiceSettings {
            enabled: false,
            api_base: "https://api.twilio.com".into(),
            account_sid_env: "TWILIO_ACCOUNT_SID".into(),
            auth_token_env: "TWILIO_AUTH_TOKEN".into(),
            public_url: None,
            language: "ja".into(),
            say_language: "ja-JP".into(),
            priority: 0,
            greeting_audio_url: None,
            hold_music_url: None,
            announce_every_secs: 30,
            max_wait_secs: 15 * 60,
            helplines: Vec::new(),
            dial_timeout_secs: 30,
            caller_id: None,
            // Four announcement intervals plus the provider's own delays.
            hold_silence_secs: 150,
            max_body_bytes: 64 * 1024,
            retry_base_ms: 500,
            retry_max_ms: 8_000,
            // About half a minute of trying: a caller on hold should not wait on us for longer.
            retry_attempts: 6,
            request_timeout_ms: 10_000,
        }
    }
}

/// The provider credentials, read from the environment. No `Debug` of the values.
pub struct VoiceCredentials {
    pub account_sid: String,
    pub auth_token: SecretString,
}

impl std::fmt::Debug for VoiceCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceCredentials").finish_non_exhaustive()
    }
}

impl VoiceSettings {
    /// Reads the credentials through `env`; a missing or empty one is an error naming the
    /// variable (never its value).
    pub fn resolve(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<VoiceCredentials> {
        self.validate()?;
        let read = |var: &str| -> anyhow::Result<String> {
            env(var)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .with_context(|| {
                    format!("voice is enabled but environment variable {var} is not set")
                })
        };
        let account_sid = read(&self.account_sid_env)?;
        anyhow::ensure!(
            account_sid.chars().all(|c| c.is_ascii_alphanumeric()),
            "the account SID in {} must be letters and digits",
            self.account_sid_env
        );
        Ok(VoiceCredentials {
            account_sid,
            auth_token: SecretString::from(read(&self.auth_token_env)?),
        })
    }

    fn validate(&self) -> anyhow::Result<()> {
        let http = |u: &str| u.starts_with("https://") || u.starts_with("http://");
        anyhow::ensure!(
            http(&self.api_base),
            "voice.api_base must be an http(s) URL"
        );
        if let Some(u) = &self.public_url {
            anyhow::ensure!(http(u), "voice.public_url must be an http(s) URL");
        }
        anyhow::ensure!(
            self.announce_every_secs >= 5,
            "voice.announce_every_secs must be at least 5"
        );
        anyhow::ensure!(
            self.hold_silence_secs > u64::from(self.announce_every_secs),
            "voice.hold_silence_secs must be longer than voice.announce_every_secs"
        );
        anyhow::ensure!(
            self.max_wait_secs >= 1,
            "voice.max_wait_secs must be at least 1"
        );
        anyhow::ensure!(
            (5..=600).contains(&self.dial_timeout_secs),
            "voice.dial_timeout_secs must be between 5 and 600"
        );
        anyhow::ensure!(
            self.retry_attempts >= 1,
            "voice.retry_attempts must be at least 1"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn on() -> VoiceSettings {
        VoiceSettings {
            enabled: true,
            ..VoiceSettings::default()
        }
    }

    #[test]
    fn a_voice_section_in_toml_is_read_with_defaults_for_the_rest() {
        let toml = r#"
            [voice]
            enabled = true
            api_base = "http://127.0.0.1:9999"
            public_url = "https://helpline.example.org"
            max_wait_secs = 600
            helplines = ["A", "B"]
        "#;
        let s = crate::config::Settings::from_toml(toml);
        assert!(s.voice.enabled);
        assert_eq!(s.voice.max_wait_secs, 600);
        assert_eq!(s.voice.helplines, ["A", "B"]);
        assert_eq!(s.voice.say_language, "ja-JP", "defaults fill the rest");
    }

    #[test]
    fn credentials_come_from_the_named_variables_and_a_missing_one_is_an_error() {
        let c = on()
            .resolve(|k| {
                Some(
                    if k == "TWILIO_ACCOUNT_SID" {
                        "AC1"
                    } else {
                        "tok"
                    }
                    .into(),
                )
            })
            .unwrap();
        assert_eq!(c.account_sid, "AC1");
        assert_eq!(c.auth_token.expose_secret(), "tok");
        assert!(!format!("{c:?}").contains("tok"));
        let err = on()
            .resolve(|k| (k == "TWILIO_ACCOUNT_SID").then(|| "AC1".into()))
            .unwrap_err();
        assert!(err.to_string().contains("TWILIO_AUTH_TOKEN"), "{err}");
        let err = on().resolve(|_| Some("  ".into())).unwrap_err();
        assert!(err.to_string().contains("TWILIO_ACCOUNT_SID"), "{err}");
    }

    #[test]
    fn nonsense_is_refused() {
        let env = |_: &str| Some("AC1".to_owned());
        let mut s = on();
        s.api_base = "ftp://x".into();
        assert!(s.resolve(env).is_err());
        let mut s = on();
        s.announce_every_secs = 60;
        s.hold_silence_secs = 30;
        assert!(s.resolve(env).is_err());
        let mut s = on();
        s.dial_timeout_secs = 1;
        assert!(s.resolve(env).is_err());
    }
}
