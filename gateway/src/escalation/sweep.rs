//! Retention: records past their expiry (read from the file name, without decrypting) are
//! deleted, each deletion audited first.

use std::path::PathBuf;

use ulid::Ulid;

use super::sealed::parse_name;
use super::{Actor, Escalations};
use crate::protocol::Millis;

impl Escalations {
    /// Deletes every record past its retention; returns how many.
    pub fn sweep(&self, now: Millis) -> usize {
        let expired: Vec<(PathBuf, Option<Ulid>)> = {
            let Ok(dir) = std::fs::read_dir(&self.dir) else {
                return 0;
            };
            dir.filter_map(Result::ok)
                .filter_map(|e| {
                    let path = e.path();
                    let (expiry, id) = parse_name(&path)?;
                    (expiry <= now).then_some((path, id))
                })
                .collect()
        };
        let mut n = 0;
        for (path, id) in expired {
            // Audited first: a deletion the trail cannot show is not made (the next sweep tries
            // again).
            if self.audit(&Actor::system(), "expired", id).is_err() {
                continue;
            }
            let removed = {
                let _g = self.guard();
                std::fs::remove_file(&path).is_ok()
            };
            if removed {
                n += 1;
                tracing::info!(record = ?id, "escalation record deleted at the end of its retention");
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{flag, store, tmp};
    use super::super::*;
    use crate::conversation::Conversation;
    use crate::protocol::Channel;

    #[test]
    fn retention_deletes_expired_records_and_says_so_in_the_audit_trail() {
        let dir = tmp();
        let esc = store(&dir);
        let conv = Conversation::new(Ulid::new(), Channel::Web, None, None, 0);
        let id = Ulid::new();
        esc.create(&conv, id, None, flag(), &[]).unwrap();
        let now = esc.clock().now_ms();
        assert_eq!(esc.sweep(now), 0);
        assert_eq!(esc.sweep(now + 61_000), 1);
        assert!(matches!(
            esc.read(id, &Actor::system()),
            Err(EscalationError::NotFound)
        ));
        assert!(esc
            .audit_trail()
            .iter()
            .any(|a| a.action == "expired" && a.record == Some(id)));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
