//! Delivery to the organisation's case system: each record is POSTed, signed, when its flag is
//! raised (`X-Tsunagu-Stage: raised`) and again when it is closed (`closed`, the completed
//! record), signed ([`webhook_signature`]) and retried with backoff until acknowledged (2xx); every delivery
//! is audited, and one the trail cannot show is not committed.

use std::collections::HashMap;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;
use ulid::Ulid;

use super::{Actor, Escalations};
use crate::protocol::Millis;

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
/// the close (the completed record). Sent as `X-Tsunagu-Stage`; receivers dedupe on the record
/// id (`X-Tsunagu-Record`) and keep the latest.
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
    /// Posts a record, signed; `None` when no case system is configured (or the record cannot
    /// be read), else whether the case system acknowledged it (2xx).
    async fn post(&self, id: Ulid, stage: Stage, now: Millis) -> Option<bool> {
        let (Some(url), Some(secret)) = (&self.cfg.webhook_url, &self.cfg.webhook_secret) else {
            return None;
        };
        let rec = {
            let _g = self.guard();
            self.load(id).ok()?
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
        if !ok {
            self.failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let status = result.as_ref().ok().map(|r| r.status().as_u16());
            tracing::warn!(record = %id, stage = stage.as_str(), status = ?status, "escalation delivery failed; will retry");
        }
        Some(ok)
    }

    /// The next backoff of a record in `retry` (doubling up to the maximum), recorded from `now`.
    fn back_off(&self, retry: &Mutex<HashMap<Ulid, (Millis, u64)>>, id: Ulid, now: Millis) {
        let mut retry = retry.lock().unwrap_or_else(|e| e.into_inner());
        let backoff = retry
            .get(&id)
            .map(|(_, b)| (b * 2).min(self.cfg.webhook_max_backoff_ms))
            .unwrap_or(self.cfg.webhook_backoff_ms);
        retry.insert(id, (now + backoff, backoff));
    }

    /// Delivers a record when its flag is raised (issue 21, item 5), so the organisation's
    /// systems see an emergency at once rather than at the close; retried with backoff by
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
                let _ = self.audit(&Actor::system(), "delivered_at_flag", Some(id));
                tracing::info!(record = %id, "escalation record delivered at the flag");
                true
            }
            Some(false) => {
                self.back_off(&self.raise_retry, id, now);
                false
            }
        }
    }

    /// Records whose delivery is failing now (waiting for a retry), at the flag or the close.
    pub fn failing_deliveries(&self) -> u32 {
        let a = self.retry.lock().unwrap_or_else(|e| e.into_inner()).len();
        let b = self
            .raise_retry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len();
        (a + b) as u32
    }

    /// Failed delivery attempts since this process started.
    pub fn delivery_failures(&self) -> u64 {
        self.failures.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Delivers closed, undelivered records to the case system (when configured), respecting
    /// each record's backoff, and retries deliveries at the flag of records still open. Returns
    /// how many closed records were acknowledged.
    pub async fn deliver_pending(&self, now: Millis) -> usize {
        if self.cfg.webhook_url.is_none() || self.cfg.webhook_secret.is_none() {
            return 0;
        }
        let summaries = self.summaries();
        let (due, raised_due): (Vec<Ulid>, Vec<Ulid>) = {
            let retry = self.retry.lock().unwrap_or_else(|e| e.into_inner());
            let mut raise_retry = self.raise_retry.lock().unwrap_or_else(|e| e.into_inner());
            // A closed (or deleted) record's delivery at the close carries everything.
            raise_retry.retain(|id, _| summaries.iter().any(|s| s.id == *id && s.open));
            let due = summaries
                .iter()
                .filter(|s| !s.open && !s.delivered)
                .filter(|s| retry.get(&s.id).is_none_or(|(at, _)| *at <= now))
                .map(|s| s.id)
                .collect();
            let raised_due = raise_retry
                .iter()
                .filter(|(_, (at, _))| *at <= now)
                .map(|(id, _)| *id)
                .collect();
            (due, raised_due)
        };
        for id in raised_due {
            self.deliver_raised(id, now).await;
        }
        let mut delivered = 0;
        for id in due {
            match self.post(id, Stage::Closed, now).await {
                None => continue,
                Some(false) => self.back_off(&self.retry, id, now),
                Some(true) => {
                    // A delivery the trail cannot show is not committed: the record stays
                    // pending and is delivered (the case system sees the same record id) and
                    // audited again.
                    if self.audit(&Actor::system(), "delivered", Some(id)).is_err() {
                        continue;
                    }
                    delivered += 1;
                    self.retry
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&id);
                    let delete = self.cfg.delete_after_delivery
                        && self
                            .audit(&Actor::system(), "deleted_after_delivery", Some(id))
                            .is_ok();
                    if delete {
                        let _g = self.guard();
                        if let Some(p) = self.path_of(id) {
                            let _ = std::fs::remove_file(p);
                        }
                    } else {
                        let _ = self.update(id, |r| r.delivered_at = Some(now));
                    }
                    tracing::info!(record = %id, "escalation record delivered to the case system");
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
        assert_ne!(a, webhook_signature(b"secret", 1_700_000_001, b"{}"));
        assert_ne!(a, webhook_signature(b"secret", 1_700_000_000, b"{ }"));
        assert_ne!(a, webhook_signature(b"other", 1_700_000_000, b"{}"));
    }
}
