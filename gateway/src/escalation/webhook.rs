//! Delivery to the organisation's case system: each record is POSTed, signed
//! ([`webhook_signature`]), when its flag is raised (`X-Tsunagu-Stage: raised`, the record as it
//! stands) and again when it is closed (`closed`, the completed record); receivers dedupe on
//! the record id (`X-Tsunagu-Record`) and keep the latest. Both are retried with backoff until
//! acknowledged (2xx) and audited; a delivery the trail cannot show is not committed.
//!
//! The delivery at the close is the one that must happen: its state (attempts, next attempt,
//! delivered) is in the database, and a node claims it (a conditional update) before sending,
//! so with several nodes one of them sends it. The delivery at the flag is sent at once by the
//! node where the flag was raised and retried by that node while the record stays open (if
//! that node stops, the delivery at the close still carries everything).

use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;
use ulid::Ulid;

use super::Escalations;
use crate::protocol::Millis;

/// How long a node's claim on a delivery holds: longer than the request may take (the client's
/// 10 s timeout), so no other node sends while it is in flight; a node that dies mid-delivery
/// leaves the record to the others after this.
const CLAIM_MS: u64 = 60_000;

type HmacSha256 = Hmac<Sha256>;

/// The signature of a webhook delivery: hex HMAC-SHA256 over `"<timestamp>.<raw body>"`, sent
/// as `X-Tsunagu-Signature: v1=<hex>` with `X-Tsunagu-Timestamp: <unix seconds>`.
pub fn webhook_signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Which delivery of a record this is: at the flag (the record as it stands, still open) or at
/// the close (the completed record). Sent as `X-Tsunagu-Stage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Raised,
    Closed,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Stage::Raised => "raised",
            Stage::Closed => "closed",
        }
    }
}

impl Escalations {
    /// The wait before the next attempt after `attempts` failed ones: the first backoff,
    /// doubled per attempt, at most `webhook_max_backoff_ms`.
    fn backoff(&self, attempts: u32) -> u64 {
        crate::clock::doubling_backoff(
            self.cfg.webhook_backoff_ms,
            self.cfg.webhook_max_backoff_ms,
            attempts,
        )
    }

    /// Posts record `id`, signed, at `stage`: `None` when no case system is configured or the
    /// record cannot be read (gone, or it does not decrypt), else whether the case system
    /// acknowledged it (2xx). A failure is counted and the record marked failing on this node.
    async fn post(&self, id: Ulid, stage: Stage, now: Millis) -> Option<bool> {
        let (Some(url), Some(secret)) = (&self.cfg.webhook_url, &self.cfg.webhook_secret) else {
            return None;
        };
        let row = self.db.escalation(id).await.ok()??;
        let Ok(rec) = self.unseal(id, &row.sealed) else {
            tracing::error!(record = %id, "escalation record does not decrypt; not delivered");
            return None;
        };
        let body = serde_json::to_vec(&rec).ok()?;
        let ts = now / 1000;
        let sig = webhook_signature(secret.expose_secret().as_bytes(), ts, &body);
        let result = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("x-tsunagu-timestamp", ts.to_string())
            .header("x-tsunagu-signature", format!("v1={sig}"))
            .header("x-tsunagu-record", id.to_string())
            .header("x-tsunagu-stage", stage.as_str())
            .body(body)
            .send()
            .await;
        let ok = matches!(&result, Ok(r) if r.status().is_success());
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        if ok {
            failing.remove(&id);
        } else {
            failing.insert(id);
            self.failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let status = result.as_ref().ok().map(|r| r.status().as_u16());
            tracing::warn!(record = %id, stage = stage.as_str(), status = ?status, "escalation delivery failed; will retry");
        }
        Some(ok)
    }

    /// Delivers a record when its flag is raised, so the organisation's systems see an
    /// emergency at once rather than at the close; retried with backoff by
    /// [`Self::deliver_pending`] while the record stays open. Returns whether it was
    /// acknowledged (`false` too when no case system is configured).
    pub async fn deliver_raised(&self, id: Ulid, now: Millis) -> bool {
        match self.post(id, Stage::Raised, now).await {
            None => false,
            Some(true) => {
                self.raise_retry
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                let _ = self
                    .audit(&super::Actor::system(), "delivered_at_flag", Some(id))
                    .await;
                tracing::info!(record = %id, "escalation record delivered at the flag");
                true
            }
            Some(false) => {
                let mut retry = self.raise_retry.lock().unwrap_or_else(|e| e.into_inner());
                let backoff = retry
                    .get(&id)
                    .map(|(_, b)| (b * 2).min(self.cfg.webhook_max_backoff_ms))
                    .unwrap_or(self.cfg.webhook_backoff_ms);
                retry.insert(id, (now + backoff, backoff));
                false
            }
        }
    }

    /// Records whose last delivery attempt by this node failed and is not yet retried with
    /// success (at the flag or the close).
    pub fn failing_deliveries(&self) -> u32 {
        let n = self.failing.lock().unwrap_or_else(|e| e.into_inner()).len();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Failed delivery attempts since this process started.
    pub fn delivery_failures(&self) -> u64 {
        self.failures.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Retries the deliveries at the flag that are due (of records still open: a closed one's
    /// delivery at the close carries everything), then delivers closed, undelivered records,
    /// respecting each record's backoff and other nodes' claims. Returns how many closed
    /// records were acknowledged.
    pub async fn deliver_pending(&self, now: Millis) -> usize {
        if self.cfg.webhook_url.is_none() || self.cfg.webhook_secret.is_none() {
            return 0;
        }
        let raised_due: Vec<Ulid> = self
            .raise_retry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in raised_due {
            let open = matches!(self.db.escalation(id).await, Ok(Some(r)) if r.closed_at.is_none());
            if open {
                self.deliver_raised(id, now).await;
            } else {
                self.raise_retry
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
            }
        }
        let due = match self.db.due_deliveries(now).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "could not read pending escalation deliveries");
                return 0;
            }
        };
        let mut delivered = 0;
        for id in due {
            match self.db.claim_delivery(id, now, CLAIM_MS).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(record = %id, error = %e, "could not claim an escalation delivery");
                    continue;
                }
            }
            let attempts = match self.db.escalation(id).await {
                Ok(Some(row)) => row.delivery_attempts,
                _ => continue,
            };
            match self.post(id, Stage::Closed, now).await {
                None => continue,
                Some(true) => {
                    // Audited and marked (or deleted) in one transaction. A delivery the trail
                    // cannot show is not committed: the claim lapses, and the record is
                    // delivered (the case system sees the same record id) and audited again.
                    let done_at = self.clock.now_ms();
                    if let Err(e) = self
                        .db
                        .delivery_succeeded(id, done_at, self.cfg.delete_after_delivery)
                        .await
                    {
                        tracing::error!(record = %id, error = %e, "could not record an escalation delivery; will deliver again");
                        continue;
                    }
                    delivered += 1;
                    tracing::info!(record = %id, "escalation record delivered to the case system");
                }
                Some(false) => {
                    let backoff = self.backoff(attempts);
                    if let Err(e) = self.db.delivery_failed(id, now + backoff).await {
                        tracing::warn!(record = %id, error = %e, "could not record a failed escalation delivery");
                    }
                }
            }
        }
        delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_webhook_signature_covers_timestamp_and_body() {
        let a = webhook_signature(b"secret", 1_700_000_000, b"{}");
        assert_eq!(a.len(), 64);
        assert_ne!(a, webhook_signature(b"secret", 1_700_000_000, b"{ }"));
        assert_ne!(a, webhook_signature(b"secret", 1_700_000_001, b"{}"));
        assert_ne!(a, webhook_signature(b"other", 1_700_000_000, b"{}"));
    }
}
