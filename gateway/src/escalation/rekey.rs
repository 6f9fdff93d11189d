//! Key rotation (`gateway rekey`): every record decrypted with the configured key and sealed
//! again under a new one. All records are opened first, so a record the configured key cannot
//! open stops the rotation before anything is written. A record already under the new key (a
//! rotation that stopped half-way, run again) is left as it is. Each rewrite names the version
//! it read; a record changed in between is read again (rotate with the gateway stopped).

use super::{EscalationError, Escalations, Record};

/// What a rotation did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rekeyed {
    /// Records sealed again under the new key.
    pub rekeyed: usize,
    /// Records already under the new key.
    pub already: usize,
}

impl Escalations {
    /// Seals every record again under `new`'s key (see the module doc).
    pub async fn rekey(&self, new: &Escalations) -> Result<Rekeyed, EscalationError> {
        let rows = self.db.escalations().await?;
        let mut todo: Vec<(ulid::Ulid, i64, Record, u64, Option<u64>)> = Vec::new();
        let mut done = Rekeyed::default();
        for row in rows {
            match self.unseal(row.id, &row.sealed) {
                Ok(rec) => todo.push((row.id, row.version, rec, row.expires_at, row.closed_at)),
                Err(_) if new.unseal(row.id, &row.sealed).is_ok() => done.already += 1,
                Err(e) => return Err(e),
            }
        }
        for (id, version, rec, expires_at, closed_at) in todo {
            let sealed = new.seal(&rec)?;
            if !self
                .db
                .replace_escalation(id, version, sealed, expires_at, closed_at)
                .await?
            {
                return Err(EscalationError::Busy);
            }
            done.rekeyed += 1;
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::db::{DatabaseSettings, Db};
    use crate::escalation::{Actor, EscalationSettings, FlagEntry};
    use crate::protocol::Channel;

    fn esc(db: &Db, key: &str) -> Escalations {
        let cfg = EscalationSettings {
            key: Some(key.repeat(32).into()),
            ..EscalationSettings::default()
        };
        Escalations::open(&cfg, db.clone(), Clock::manual(1_800_000_000_000))
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn records_open_with_the_new_key_only_after_a_rotation_and_a_second_run_changes_nothing()
    {
        let db = Db::open(&DatabaseSettings {
            url: Some("memory".into()),
            ..DatabaseSettings::default()
        })
        .await
        .unwrap();
        let old = esc(&db, "11");
        let new = esc(&db, "22");
        let flag = FlagEntry {
            id: None,
            category: "other".into(),
            reason: "rotation test".into(),
            by: "op".into(),
            by_id: None,
            at: 1,
        };
        let conv =
            crate::conversation::Conversation::new(ulid::Ulid::new(), Channel::Web, None, None, 0);
        let id = ulid::Ulid::new();
        old.create(&conv, id, None, flag, &[]).await.unwrap();
        assert!(new.read(id, &Actor::system()).await.is_err());
        assert_eq!(
            old.rekey(&new).await.unwrap(),
            Rekeyed {
                rekeyed: 1,
                already: 0
            }
        );
        assert!(old.read(id, &Actor::system()).await.is_err());
        let rec = new.read(id, &Actor::system()).await.unwrap();
        assert_eq!(rec.flags[0].reason, "rotation test");
        assert_eq!(
            old.rekey(&new).await.unwrap(),
            Rekeyed {
                rekeyed: 0,
                already: 1
            }
        );
        // A key that opens nothing stops before writing.
        let stranger = esc(&db, "33");
        assert!(stranger.rekey(&old).await.is_err());
        assert!(new.read(id, &Actor::system()).await.is_ok());
    }
}
