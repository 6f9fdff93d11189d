//! Alert calls to the coordinator on call (issue 21, item 3): the connector places the call
//! for alert delivery (`crate::oncall`, through [`PhonePager`]), and these are the documents the
//! call hears: the alert spoken in Japanese, then one key (`<Gather numDigits="1">`) whose
//! result acknowledges it. Never a `<Record>`. The URLs carry a single-use acknowledgement
//! token; the provider's requests to them are signed like its webhooks
//! ([`Voice::signed_by_provider`]).
//!
//! Logs carry the outcome, never the number called.

use futures_util::future::BoxFuture;

use super::client::Outcome as ApiOutcome;
use super::signature;
use super::twiml::Twiml;
use super::Voice;
use crate::oncall::{Outcome, PhonePager};

/// The text-to-speech voice of alert calls.
const JA: &str = "ja-JP";
/// Seconds to wait for the key after the prompt.
const KEY_TIMEOUT_SECS: u32 = 8;

/// The alert (`spoken`), then the prompt for the key that acknowledges it, posted to
/// `action`; said twice, then goodbye.
pub fn alert(spoken: &str, action: &str) -> String {
    let prompt = || {
        Twiml::new().say(
            JA,
            "確認した場合は、1を押してください。コーディネーター画面からも確認できます。",
        )
    };
    Twiml::new()
        .say(JA, spoken)
        .gather(1, KEY_TIMEOUT_SECS, action, prompt())
        .say(JA, spoken)
        .gather(1, KEY_TIMEOUT_SECS, action, prompt())
        .say(JA, "確認されませんでした。次の担当者に連絡します。")
        .hangup()
        .build()
}

/// Another key than 1: the alert again from `url`.
pub fn again(url: &str) -> String {
    Twiml::new().redirect(url).build()
}

/// The key 1 was pressed: acknowledged now, or by someone before.
pub fn acknowledged(now: bool) -> String {
    let words = if now {
        "確認しました。ありがとうございます。コーディネーター画面で対応してください。"
    } else {
        "このアラートはすでに確認されています。"
    };
    Twiml::new().say(JA, words).hangup().build()
}

/// The token is unknown, used or expired.
pub fn gone() -> String {
    Twiml::new()
        .say(
            JA,
            "このアラートは確認済みか、期限切れです。コーディネーター画面を確認してください。",
        )
        .hangup()
        .build()
}

impl Voice {
    /// Whether `sig` is the provider's signature of a request to `url` with `params`.
    pub fn signed_by_provider(
        &self,
        url: &str,
        params: &[(String, String)],
        sig: Option<&[u8]>,
    ) -> bool {
        signature::verify(&self.auth_token, url, params, sig)
    }
}

impl PhonePager for Voice {
    fn public_base(&self) -> Option<String> {
        self.settings.public_url.clone()
    }

    fn call<'a>(
        &'a self,
        to: &'a str,
        from: Option<&'a str>,
        twiml_url: &'a str,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let from = from.or(self.settings.caller_id.as_deref());
            let Some(from) = from else {
                return Outcome::GiveUp("no caller number".into());
            };
            match self.api.create_call(to, from, twiml_url).await {
                ApiOutcome::Done => Outcome::Sent,
                ApiOutcome::Rejected(status) => Outcome::GiveUp(format!("status {status}")),
                ApiOutcome::GaveUp => Outcome::Retry("provider unreachable".into()),
            }
        })
    }
}
