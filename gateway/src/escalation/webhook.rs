//! Delivery to the organisation's case system: each closed record is POSTed, signed
//! ([`webhook_signature`]), and retried with backoff until acknowledged (2xx); every delivery
//! is audited, and one the trail cannot show is not committed. The delivery state (attempts,
//! next attempt, delivered) is in the database: a node claims a delivery (a conditional
//! update) before sending it, so with several nodes one of them sends it.

use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;

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

impl Escalations {
    /// The wait before the next attempt after `attempts` failed ones: the first backoff,
    /// doubled per attempt, at most `webhook_max_backoff_ms`.
    fn backoff(&self, attempts: u32) -> u64 {
        let doublings = attempts.saturating_sub(1).min(32);
        self.cfg
            .webhook_backoff_ms
            .saturating_mul(1u64 << doublings)
            .min(self.cfg.webhook_max_backoff_ms)
    }

    /// Delivers closed, undelivered records to the case system (when configured), respecting
    /// each record's backoff and other nodes' claims. Returns how many were acknowledged.
    pub async fn deliver_pending(&self, now: Millis) -> usize {
        let (Some(url), Some(secret)) = (&self.cfg.webhook_url, &self.cfg.webhook_secret) else {
            return 0;
        };
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
            let Ok(row) = self.db.escalation(id).await else {
                continue;
            };
            let Some(row) = row else { continue };
            let Ok(rec) = self.unseal(id, &row.sealed) else {
                tracing::error!(record = %id, "escalation record does not decrypt; not delivered");
                continue;
            };
            let Ok(body) = serde_json::to_vec(&rec) else {
                continue;
            };
            let ts = now / 1000;
            let sig = webhook_signature(secret.expose_secret().as_bytes(), ts, &body);
            let result = self
                .http
                .post(url)
                .header("content-type", "application/json")
                .header("x-tsunagu-timestamp", ts.to_string())
                .header("x-tsunagu-signature", format!("v1={sig}"))
                .header("x-tsunagu-record", id.to_string())
                .body(body)
                .send()
                .await;
            let ok = matches!(&result, Ok(r) if r.status().is_success());
            if ok {
                // Audited and marked (or deleted) in one transaction. A delivery the trail
                // cannot show is not committed: the claim lapses, and the record is delivered
                // (the case system sees the same record id) and audited again.
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
            } else {
                let status = result.as_ref().ok().map(|r| r.status().as_u16());
                let backoff = self.backoff(row.delivery_attempts);
                if let Err(e) = self.db.delivery_failed(id, now + backoff).await {
                    tracing::warn!(record = %id, error = %e, "could not record a failed escalation delivery");
                }
                tracing::warn!(record = %id, status = ?status, retry_in_ms = backoff, "escalation delivery failed; will retry");
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
