//! Delivery to the organisation's case system: each closed record is POSTed, signed
//! ([`webhook_signature`]), and retried with backoff until acknowledged (2xx); every delivery
//! is audited, and one the trail cannot show is not committed.

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

impl Escalations {
    /// Delivers closed, undelivered records to the case system (when configured), respecting
    /// each record's backoff. Returns how many were acknowledged.
    pub async fn deliver_pending(&self, now: Millis) -> usize {
        let (Some(url), Some(secret)) = (&self.cfg.webhook_url, &self.cfg.webhook_secret) else {
            return 0;
        };
        let due: Vec<Ulid> = {
            let retry = self.retry.lock().unwrap_or_else(|e| e.into_inner());
            self.summaries()
                .into_iter()
                .filter(|s| !s.open && !s.delivered)
                .filter(|s| retry.get(&s.id).is_none_or(|(at, _)| *at <= now))
                .map(|s| s.id)
                .collect()
        };
        let mut delivered = 0;
        for id in due {
            let rec = {
                let _g = self.guard();
                match self.load(id) {
                    Ok(r) => r,
                    Err(_) => continue,
                }
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
                // A delivery the trail cannot show is not committed: the record stays pending
                // and is delivered (the case system sees the same record id) and audited again.
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
            } else {
                let status = result.as_ref().ok().map(|r| r.status().as_u16());
                let mut retry = self.retry.lock().unwrap_or_else(|e| e.into_inner());
                let backoff = retry
                    .get(&id)
                    .map(|(_, b)| (b * 2).min(self.cfg.webhook_max_backoff_ms))
                    .unwrap_or(self.cfg.webhook_backoff_ms);
                retry.insert(id, (now + backoff, backoff));
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
