//! The LINE connector's part in on-call alerts (issue 21, item 3): a coordinator's own LINE
//! account is linked by a one-time code they send to the official account (recognised here
//! before the message could start a conversation: no conversation, a reply that says linked
//! or not, at most a few tries per LINE user), and alerts are pushed to it
//! ([`LinePager`]).
//!
//! The coordinator's LINE user id is stored only sealed (XChaCha20-Poly1305 under a key derived
//! from the channel's secret, which every node has; the account id as associated data), never
//! in a key name or a log line. Rotating the channel secret makes the links unreadable: the
//! coordinators link again.

use std::num::NonZeroU32;
use std::sync::Arc;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use futures_util::future::BoxFuture;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use ulid::Ulid;

use super::client::{retry_key, Outcome as ApiOutcome};
use super::events::Event;
use super::person::ReplyToken;
use super::{keys, ChannelCtx, Line, PersonKey};
use crate::db::LineLinkRow;
use crate::oncall::link::Redeemed;
use crate::oncall::{LinePager, Outcome};

const NONCE_LEN: usize = 24;
/// Link codes one LINE user may try per hour (a burst of this many, then one per 12 minutes).
const TRIES_PER_HOUR: u32 = 5;

const LINKED: &str = "つなぐのアラートをこのLINEアカウントで受け取ります。\
     解除はコーディネーター画面からできます。\n\
     This LINE account now receives Tsunagu alerts. Unlink it in the coordinator view.";
const INVALID: &str =
    "このコードは無効か期限切れです。コーディネーター画面で新しいコードを作ってください。\n\
     This code is invalid or has expired. Make a new one in the coordinator view.";
const TOO_MANY: &str = "試行回数が多すぎます。しばらくしてからお試しください。\n\
     Too many tries. Please try again later.";

/// Tries of link codes per LINE user (by its keyed hash).
pub(super) fn link_tries() -> DefaultKeyedRateLimiter<String> {
    let per_hour = NonZeroU32::new(TRIES_PER_HOUR).unwrap_or(NonZeroU32::MIN);
    RateLimiter::keyed(Quota::per_hour(per_hour).allow_burst(per_hour))
}

/// The sealing key of a channel's linked users.
fn cipher(ch: &ChannelCtx) -> XChaCha20Poly1305 {
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(ch.secret.expose_secret().as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(b"tsunagu/oncall/line-user");
    XChaCha20Poly1305::new(&mac.finalize().into_bytes())
}

fn seal(ch: &ChannelCtx, account: Ulid, user: &str) -> Option<Vec<u8>> {
    let nonce: [u8; NONCE_LEN] = rand::random();
    let aad = account.to_bytes();
    let ct = cipher(ch)
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: user.as_bytes(),
                aad: &aad,
            },
        )
        .ok()?;
    Some([nonce.as_slice(), &ct].concat())
}

fn unseal(ch: &ChannelCtx, link: &LineLinkRow) -> Option<String> {
    if link.sealed_user.len() <= NONCE_LEN {
        return None;
    }
    let (nonce, ct) = link.sealed_user.split_at(NONCE_LEN);
    let aad = link.account_id.to_bytes();
    let plain = cipher(ch)
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
        .ok()?;
    String::from_utf8(plain).ok()
}

impl Line {
    /// A message that is a link code (`code`, normalised): redeemed, and the sender told
    /// whether it worked. No conversation starts.
    pub(super) async fn link_code(
        self: &Arc<Self>,
        ch: &Arc<ChannelCtx>,
        key: &PersonKey,
        e: &Event,
        code: &str,
    ) {
        let Some(oncall) = self.engine.oncall.clone() else {
            return;
        };
        let text = if self
            .link_tries
            .check_key(&keys::person_key(ch, &key.1))
            .is_err()
        {
            tracing::warn!(channel = %ch.id, "LINE link code refused: too many tries");
            TOO_MANY
        } else {
            let user = key.1.clone();
            match oncall
                .redeem_line_code(code, &ch.id, |account| seal(ch, account, &user))
                .await
            {
                Ok(Redeemed::Linked(_)) => LINKED,
                Ok(Redeemed::Invalid) => {
                    tracing::info!(channel = %ch.id, "LINE link code invalid or expired");
                    INVALID
                }
                Err(err) => {
                    tracing::error!(channel = %ch.id, error = %err, "LINE link code could not be redeemed");
                    INVALID
                }
            }
        };
        let reply = e.reply_token.clone().map(ReplyToken::new);
        let push_key = retry_key(&[&ch.id, "link", &e.webhook_event_id]);
        self.notify_without_conversation(
            ch,
            Some(key.1.clone()),
            reply,
            vec![text.to_owned()],
            push_key,
        );
    }
}

impl LinePager for Line {
    fn push<'a>(
        &'a self,
        link: &'a LineLinkRow,
        text: String,
        key: &'a str,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let Some(ch) = self.channel(&link.channel_id) else {
                return Outcome::GiveUp("line channel gone".into());
            };
            let Some(user) = unseal(ch, link) else {
                return Outcome::GiveUp("line link unreadable".into());
            };
            let retry = retry_key(&["alert", key]);
            match self.api.push(&ch.token, &user, &[text], &retry).await {
                ApiOutcome::Delivered | ApiOutcome::AlreadyAccepted => Outcome::Sent,
                ApiOutcome::Rejected(status) => Outcome::GiveUp(format!("status {status}")),
                ApiOutcome::GaveUp => Outcome::Retry("line unreachable".into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(secret: &str) -> ChannelCtx {
        ChannelCtx {
            id: "npo".into(),
            secret: secret.to_owned().into(),
            token: "t".to_owned().into(),
            language: "ja".into(),
            priority: 0,
        }
    }

    #[test]
    fn a_sealed_line_user_opens_only_with_its_channel_and_account() {
        let (a, b) = (ch("secret-a"), ch("secret-b"));
        let account = Ulid::new();
        let user = "U0123456789abcdef0123456789abcdef";
        let sealed = seal(&a, account, user).unwrap();
        assert!(!sealed
            .windows(8)
            .any(|w| user.as_bytes().windows(8).any(|u| u == w)));
        let link = |account, sealed: &Vec<u8>| LineLinkRow {
            account_id: account,
            channel_id: "npo".into(),
            sealed_user: sealed.clone(),
            linked_at: 0,
        };
        assert_eq!(unseal(&a, &link(account, &sealed)).as_deref(), Some(user));
        assert_eq!(unseal(&b, &link(account, &sealed)), None, "another secret");
        assert_eq!(
            unseal(&a, &link(Ulid::new(), &sealed)),
            None,
            "another account"
        );
    }
}
