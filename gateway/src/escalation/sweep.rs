//! Retention: records past their expiry (a column beside the blob, read without decrypting)
//! are deleted, each deletion audited in the same transaction. With several nodes sweeping one
//! database, each record is deleted, audited and counted once (`DELETE … RETURNING`).

use super::{EscalationError, Escalations};
use crate::protocol::Millis;

impl Escalations {
    /// Deletes every record past its retention; returns how many this call deleted.
    pub async fn sweep(&self, now: Millis) -> Result<usize, EscalationError> {
        let deleted = self.db.sweep_escalations(now).await?;
        for id in &deleted {
            tracing::info!(record = %id, "escalation record deleted at the end of its retention");
        }
        Ok(deleted.len())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{flag, store};
    use super::super::*;
    use crate::conversation::Conversation;
    use crate::protocol::Channel;

    #[tokio::test]
    async fn retention_deletes_expired_records_and_says_so_in_the_audit_trail() {
        let esc = store().await;
        let conv = Conversation::new(Ulid::new(), Channel::Web, None, None, 0);
        let id = Ulid::new();
        esc.create(&conv, id, None, flag(), &[]).await.unwrap();
        let now = esc.clock().now_ms();
        assert_eq!(esc.sweep(now).await.unwrap(), 0);
        assert_eq!(esc.sweep(now + 61_000).await.unwrap(), 1);
        assert_eq!(esc.sweep(now + 62_000).await.unwrap(), 0);
        assert!(matches!(
            esc.read(id, &Actor::system()).await,
            Err(EscalationError::NotFound)
        ));
        let trail = esc.audit_trail().await.unwrap();
        assert_eq!(
            trail
                .iter()
                .filter(|a| a.action == "expired" && a.record == Some(id))
                .count(),
            1
        );
    }
}
