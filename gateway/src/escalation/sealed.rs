//! Records at rest: a magic header, a random 24-byte nonce and the XChaCha20-Poly1305
//! ciphertext of the JSON record, with the record id as associated data (the same bytes the
//! directory store of earlier versions wrote to `<expires_at>-<id>.rec`). Nothing is stored in
//! plaintext; the expiry and delivery state beside the blob let the retention sweep and the
//! webhook delivery work without decrypting. A change is a read-modify-write that names the
//! version it read, so two nodes changing one record at once never lose a change: the later
//! one reads again and reapplies.

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::XNonce;
use ulid::Ulid;

use super::{EscalationError, Escalations, Record};

const MAGIC: &[u8; 4] = b"TSG1";
const NONCE_LEN: usize = 24;

/// How often a change is reapplied when other writers keep changing the record in between; a
/// flagged conversation has a handful of writers at most (its nodes, a coordinator), so this is
/// never reached but by a fault.
const MAX_ATTEMPTS: usize = 16;

impl Escalations {
    pub(super) fn seal(&self, record: &Record) -> Result<Vec<u8>, EscalationError> {
        let json = serde_json::to_vec(record).map_err(|_| EscalationError::Corrupt)?;
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let nonce = XNonce::from_slice(&nonce_bytes);
        let aad = record.id.to_bytes();
        let ct = self
            .cipher
            .encrypt(
                nonce,
                Payload {
                    msg: &json,
                    aad: &aad,
                },
            )
            .map_err(|_| EscalationError::Corrupt)?;
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + ct.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypts the sealed bytes of record `id`.
    pub(super) fn unseal(&self, id: Ulid, bytes: &[u8]) -> Result<Record, EscalationError> {
        if bytes.len() < MAGIC.len() + NONCE_LEN || &bytes[..MAGIC.len()] != MAGIC {
            return Err(EscalationError::Corrupt);
        }
        let (nonce, ct) = bytes[MAGIC.len()..].split_at(NONCE_LEN);
        let aad = id.to_bytes();
        let json = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| EscalationError::Corrupt)?;
        let rec: Record = serde_json::from_slice(&json).map_err(|_| EscalationError::Corrupt)?;
        if rec.id != id {
            return Err(EscalationError::Corrupt);
        }
        Ok(rec)
    }

    /// Reads and decrypts record `id`, with its delivery time as the database has it.
    pub(super) async fn load(&self, id: Ulid) -> Result<Record, EscalationError> {
        let row = self
            .db
            .escalation(id)
            .await?
            .ok_or(EscalationError::NotFound)?;
        let mut rec = self.unseal(id, &row.sealed)?;
        rec.delivered_at = rec.delivered_at.or(row.delivered_at);
        Ok(rec)
    }

    /// Changes a record (read, decrypt, change, encrypt, replace if nobody replaced it in
    /// between; otherwise again from the read). `change` may run more than once, each time on
    /// the record as then stored.
    pub async fn update(
        &self,
        id: Ulid,
        mut change: impl FnMut(&mut Record),
    ) -> Result<Record, EscalationError> {
        for _ in 0..MAX_ATTEMPTS {
            let row = self
                .db
                .escalation(id)
                .await?
                .ok_or(EscalationError::NotFound)?;
            let mut rec = self.unseal(id, &row.sealed)?;
            change(&mut rec);
            let sealed = self.seal(&rec)?;
            let closed_at = rec.closed.then(|| self.clock.now_ms());
            if self
                .db
                .replace_escalation(id, row.version, sealed, rec.expires_at, closed_at)
                .await?
            {
                rec.delivered_at = rec.delivered_at.or(row.delivered_at);
                return Ok(rec);
            }
        }
        Err(EscalationError::Busy)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{db, flag, message, store, store_in};
    use super::super::*;
    use crate::conversation::Conversation;
    use crate::protocol::Channel;

    #[tokio::test]
    async fn records_are_encrypted_at_rest_and_readable_with_the_key() {
        let esc = store().await;
        let conv = Conversation::new(Ulid::new(), Channel::Web, None, None, 0);
        let id = Ulid::new();
        esc.create(
            &conv,
            id,
            Some("U-line-user".into()),
            flag(),
            &[message(1, "canary-text")],
        )
        .await
        .unwrap();
        esc.append_log(id, &[message(2, "later canary"), message(1, "dup")])
            .await
            .unwrap();
        for row in esc.db().escalations().await.unwrap() {
            let text = String::from_utf8_lossy(&row.sealed);
            assert!(!text.contains("canary"));
            assert!(!text.contains("U-line-user"));
            assert!(!text.contains("want to die"));
        }
        let coordinator = Actor::account(Ulid::new(), "Coordinator");
        let rec = esc.read(id, &coordinator).await.unwrap();
        assert_eq!(rec.transcript.len(), 2, "seq 1 is not appended twice");
        assert_eq!(rec.transcript[1].text, "later canary");
        assert_eq!(rec.channel_ref.as_deref(), Some("U-line-user"));
        let trail = esc.audit_trail().await.unwrap();
        assert_eq!(trail.last().unwrap().action, "view");
        assert_eq!(trail.last().unwrap().actor, "Coordinator");
        assert_eq!(trail.last().unwrap().actor_id, coordinator.id);
    }

    #[tokio::test]
    async fn a_wrong_key_or_a_tampered_blob_does_not_decrypt() {
        let db = db().await;
        let esc = store_in(db.clone(), "11");
        let conv = Conversation::new(Ulid::new(), Channel::Web, None, None, 0);
        let id = Ulid::new();
        esc.create(&conv, id, None, flag(), &[]).await.unwrap();
        let other = store_in(db.clone(), "22");
        assert!(matches!(
            other.read(id, &Actor::system()).await,
            Err(EscalationError::Corrupt)
        ));
        let row = db.escalation(id).await.unwrap().unwrap();
        let mut bytes = row.sealed.clone();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(db
            .replace_escalation(id, row.version, bytes, row.expires_at, None)
            .await
            .unwrap());
        assert!(matches!(
            esc.read(id, &Actor::system()).await,
            Err(EscalationError::Corrupt)
        ));
    }

    #[tokio::test]
    async fn two_writers_changing_one_record_at_once_lose_no_change() {
        let esc = std::sync::Arc::new(store().await);
        let conv = Conversation::new(Ulid::new(), Channel::Web, None, None, 0);
        let id = Ulid::new();
        esc.create(&conv, id, None, flag(), &[]).await.unwrap();
        let writers: Vec<_> = (0..4)
            .map(|i| {
                let esc = std::sync::Arc::clone(&esc);
                tokio::spawn(async move {
                    esc.update(id, |r| {
                        r.actions.push(Action {
                            at: i,
                            actor: format!("writer {i}"),
                            actor_id: None,
                            action: "note".into(),
                            detail: None,
                        })
                    })
                    .await
                    .unwrap();
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
        let rec = esc.read(id, &Actor::system()).await.unwrap();
        assert_eq!(rec.actions.iter().filter(|a| a.action == "note").count(), 4);
    }
}
