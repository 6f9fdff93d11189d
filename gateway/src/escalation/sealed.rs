//! Records at rest: one file per record, `<expires_at>-<id>.rec`, holding a magic header, a
//! random 24-byte nonce and the XChaCha20-Poly1305 ciphertext of the JSON record, with the
//! record id as associated data. Nothing is written in plaintext; the expiry in the name lets
//! the retention sweep delete without decrypting. Callers hold [`Escalations::guard`] around a
//! read-modify-write.

use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::XNonce;
use ulid::Ulid;

use super::{EscalationError, Escalations, Record};
use crate::protocol::Millis;

const MAGIC: &[u8; 4] = b"TSG1";
const NONCE_LEN: usize = 24;

impl Escalations {
    /// The file of record `id`, if there is one.
    pub(super) fn path_of(&self, id: Ulid) -> Option<PathBuf> {
        let suffix = format!("-{id}.rec");
        std::fs::read_dir(&self.dir)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(&suffix))
            })
    }

    fn seal(&self, record: &Record) -> Result<Vec<u8>, EscalationError> {
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

    /// Decrypts the bytes of record `id`'s file.
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
        serde_json::from_slice(&json).map_err(|_| EscalationError::Corrupt)
    }

    /// Encrypts and writes a record (a temporary file renamed into place, mode 0600).
    pub(super) fn write(&self, record: &Record) -> Result<(), EscalationError> {
        let sealed = self.seal(record)?;
        let path = self
            .dir
            .join(format!("{:013}-{}.rec", record.expires_at, record.id));
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, sealed)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        }
        std::fs::rename(tmp, path)?;
        Ok(())
    }

    /// Reads and decrypts record `id`.
    pub(super) fn load(&self, id: Ulid) -> Result<Record, EscalationError> {
        let path = self.path_of(id).ok_or(EscalationError::NotFound)?;
        let bytes = std::fs::read(path)?;
        self.unseal(id, &bytes)
    }
}

/// `<expires_at>-<id>.rec` → (expires_at, id).
pub(super) fn parse_name(path: &Path) -> Option<(Millis, Option<Ulid>)> {
    let name = path.file_name()?.to_str()?.strip_suffix(".rec")?;
    let (expiry, id) = name.split_once('-')?;
    Some((expiry.parse().ok()?, Ulid::from_string(id).ok()))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{flag, message, store, tmp};
    use super::super::*;
    use crate::conversation::Conversation;
    use crate::protocol::Channel;

    #[test]
    fn records_are_encrypted_at_rest_and_readable_with_the_key() {
        let dir = tmp();
        let esc = store(&dir);
        let conv = Conversation::new(Ulid::new(), Channel::Web, None, None, 0);
        let id = Ulid::new();
        esc.create(
            &conv,
            id,
            Some("U-line-user".into()),
            flag(),
            &[message(1, "canary-text")],
        )
        .unwrap();
        esc.append_log(id, &[message(2, "later canary"), message(1, "dup")])
            .unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains("canary"));
            assert!(!text.contains("U-line-user"));
            assert!(!text.contains("want to die"));
        }
        let coordinator = Actor::account(Ulid::new(), "Coordinator");
        let rec = esc.read(id, &coordinator).unwrap();
        assert_eq!(rec.transcript.len(), 2, "seq 1 is not appended twice");
        assert_eq!(rec.transcript[1].text, "later canary");
        assert_eq!(rec.channel_ref.as_deref(), Some("U-line-user"));
        let trail = esc.audit_trail();
        assert_eq!(trail.last().unwrap().action, "view");
        assert_eq!(trail.last().unwrap().actor, "Coordinator");
        assert_eq!(trail.last().unwrap().actor_id, coordinator.id);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_wrong_key_or_a_tampered_file_does_not_decrypt() {
        let dir = tmp();
        let esc = store(&dir);
        let conv = Conversation::new(Ulid::new(), Channel::Web, None, None, 0);
        let id = Ulid::new();
        esc.create(&conv, id, None, flag(), &[]).unwrap();
        let other = Escalations::open(
            &EscalationSettings {
                key: Some("22".repeat(32).into()),
                dir: dir.display().to_string(),
                ..EscalationSettings::default()
            },
            esc.clock().clone(),
        )
        .unwrap()
        .unwrap();
        assert!(matches!(
            other.read(id, &Actor::system()),
            Err(EscalationError::Corrupt)
        ));
        let path = esc.path_of(id).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(
            esc.read(id, &Actor::system()),
            Err(EscalationError::Corrupt)
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
