//! Escalation records: the one thing of a conversation kept beyond its close, and only after an
//! emergency flag (DESIGN.md, principle 3; APPI Art. 27(1)(ii)).
//!
//! A record holds the transcript (from the start, and everything after the flag), the flags,
//! the operators' and coordinators' actions, and the channel identifier needed to reach the
//! person again (a LINE user id, a caller's number) when the channel has one. Each record is one
//! file, `<expires_at>-<id>.rec`: a magic header, a random 24-byte nonce and the XChaCha20-Poly1305
//! ciphertext of the JSON record, with the record id as associated data. The key comes from
//! configuration only. Nothing is ever written in plaintext; the expiry in the file name lets the
//! retention sweep delete without decrypting.
//!
//! `audit.jsonl` beside the records is the audit trail: who listed, viewed, delivered or let
//! expire which record, when. It holds ids and names, never content. Each entry names its actor
//! by account id (display names are not unique) and shows the name beside it. The trail fails
//! closed: an action whose entry cannot be written is refused (a list or a view returns an
//! error and no content; a deletion or a delivery is not committed and is tried again later).
//!
//! Records are optionally delivered to the organisation's case system by webhook when their
//! conversation closes (see [`webhook_signature`]), retried with backoff until acknowledged.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use ulid::Ulid;

use crate::clock::now_ms;
use crate::conversation::{Conversation, ConversationId};
use crate::protocol::{Channel, EventBody, LogEntry, Millis, Side};

/// Emergency flags and escalation records. Flagging is enabled exactly when a key is set
/// (or `enabled = true`, which then requires a key: a startup error otherwise).
/// `[escalation]` in the configuration; owned here, `config` assembles it into `Settings`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct EscalationSettings {
    /// `None`: enabled if and only if `key` is set. `Some(true)` without a key refuses to start.
    pub enabled: Option<bool>,
    /// 32 bytes as 64 hex characters: the XChaCha20-Poly1305 key records are encrypted under.
    /// Never in the repository: set it through `TSUNAGU_ESCALATION__KEY` or a file kept apart.
    #[serde(skip_serializing)]
    pub key: Option<secrecy::SecretString>,
    /// Where encrypted records and the audit trail are written.
    pub dir: String,
    /// How long a record is kept, from when it was opened.
    pub retention_ms: u64,
    /// How often expired records are deleted and pending webhook deliveries retried.
    pub sweep_ms: u64,
    /// Steps shown to the operator while an emergency is open.
    pub checklist: Vec<String>,
    /// The organisation's case system: each record is POSTed here when its conversation
    /// closes, signed with `webhook_secret`, and retried with backoff until acknowledged (2xx).
    pub webhook_url: Option<String>,
    #[serde(skip_serializing)]
    pub webhook_secret: Option<secrecy::SecretString>,
    /// Delete the local record once the case system has acknowledged it.
    pub delete_after_delivery: bool,
    /// First retry delay for webhook delivery; doubles per attempt up to `webhook_max_backoff_ms`.
    pub webhook_backoff_ms: u64,
    pub webhook_max_backoff_ms: u64,
}

impl Default for EscalationSettings {
    fn default() -> Self {
        EscalationSettings {
            enabled: None,
            key: None,
            dir: "data/escalations".into(),
            retention_ms: 30 * 24 * 60 * 60_000,
            sweep_ms: 60_000,
            checklist: [
                "相談者がいまどこにいるか、安全な場所かを確かめる",
                "命に関わる危険があれば 119（救急）・110（警察）の案内をする",
                "相談者とのやりとりを続け、ひとりにしない",
                "コーディネーターに状況を伝え、指示を受ける",
                "聞き取れたこと（場所・状況）を記録に残す",
            ]
            .map(String::from)
            .to_vec(),
            webhook_url: None,
            webhook_secret: None,
            delete_after_delivery: false,
            webhook_backoff_ms: 5_000,
            webhook_max_backoff_ms: 10 * 60_000,
        }
    }
}

impl EscalationSettings {
    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or(self.key.is_some())
    }
}

const MAGIC: &[u8; 4] = b"TSG1";
const NONCE_LEN: usize = 24;
const AUDIT_FILE: &str = "audit.jsonl";

/// Who did something: the account's id, which identifies it (display names are not unique),
/// and the name shown for it. `id` is `None` for the system and the person reaching out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Actor {
    pub id: Option<Ulid>,
    pub name: String,
}

impl Actor {
    pub fn account(id: Ulid, name: impl Into<String>) -> Self {
        Actor {
            id: Some(id),
            name: name.into(),
        }
    }

    pub fn system() -> Self {
        Actor {
            id: None,
            name: "system".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagEntry {
    /// The client id of the flag message, so a retry is recorded once.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub id: Option<Ulid>,
    pub category: String,
    pub reason: String,
    pub by: String,
    /// The account that flagged.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub by_id: Option<Ulid>,
    pub at: Millis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub at: Millis,
    pub actor: String,
    /// The account that acted (none for the system and the person).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub actor_id: Option<Ulid>,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptEntry {
    pub seq: u64,
    pub at: Millis,
    pub from: Side,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub operator: Option<String>,
    pub text: String,
}

/// One escalation record, as stored (encrypted) and as shown to coordinators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: Ulid,
    pub conversation: ConversationId,
    pub channel: Channel,
    pub channel_ref: Option<String>,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub flags: Vec<FlagEntry>,
    pub actions: Vec<Action>,
    pub transcript: Vec<TranscriptEntry>,
    /// Highest log seq copied into the transcript.
    pub last_seq: u64,
    /// The conversation has closed: the record is complete and may be delivered.
    pub closed: bool,
    pub delivered_at: Option<Millis>,
}

/// What a list of records shows: no content.
#[derive(Debug, Clone, Serialize)]
pub struct RecordSummary {
    pub id: Ulid,
    pub conversation: ConversationId,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub categories: Vec<String>,
    /// The conversation is still live (the record is still growing).
    pub open: bool,
    pub delivered: bool,
    /// `none` (no case system configured), `pending` or `delivered`.
    pub delivery: &'static str,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    pub at: Millis,
    /// The name shown for the actor.
    pub actor: String,
    /// The account that acted (none for the system): what identifies the actor.
    #[serde(default)]
    pub actor_id: Option<Ulid>,
    pub action: String,
    pub record: Option<Ulid>,
}

/// Why an escalation step failed.
#[derive(Debug, thiserror::Error)]
pub enum EscalationError {
    #[error("no such record")]
    NotFound,
    #[error("record storage failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("record could not be decrypted or parsed")]
    Corrupt,
}

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

pub struct Escalations {
    dir: PathBuf,
    cipher: XChaCha20Poly1305,
    cfg: EscalationSettings,
    /// Serialises read-modify-write of records and appends to the audit trail. Never held
    /// across an `.await`.
    lock: Mutex<()>,
    http: reqwest::Client,
    /// Records whose delivery failed: when to try next, and the current backoff.
    retry: Mutex<HashMap<Ulid, (Millis, u64)>>,
}

impl Escalations {
    /// Opens the record store; `None` when flagging is not enabled.
    pub fn open(cfg: &EscalationSettings) -> anyhow::Result<Option<Self>> {
        if !cfg.is_enabled() {
            return Ok(None);
        }
        let key = cfg
            .key
            .as_ref()
            .context("escalation.key is required when flagging is enabled")?;
        let key = hex::decode(key.expose_secret().trim()).context("escalation.key is not hex")?;
        let cipher = XChaCha20Poly1305::new_from_slice(&key)
            .map_err(|_| anyhow::anyhow!("escalation.key must be 32 bytes"))?;
        let dir = PathBuf::from(&cfg.dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating escalation dir {}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(Some(Escalations {
            dir,
            cipher,
            cfg: cfg.clone(),
            lock: Mutex::new(()),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()?,
            retry: Mutex::new(HashMap::new()),
        }))
    }

    pub fn checklist(&self) -> &[String] {
        &self.cfg.checklist
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn path_of(&self, id: Ulid) -> Option<PathBuf> {
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

    fn unseal(&self, id: Ulid, bytes: &[u8]) -> Result<Record, EscalationError> {
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

    fn write(&self, record: &Record) -> Result<(), EscalationError> {
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

    fn load(&self, id: Ulid) -> Result<Record, EscalationError> {
        let path = self.path_of(id).ok_or(EscalationError::NotFound)?;
        let bytes = std::fs::read(path)?;
        self.unseal(id, &bytes)
    }

    /// Opens a record for a conversation that was just flagged, with the transcript so far.
    pub fn create(
        &self,
        conv: &Conversation,
        record: Ulid,
        channel_ref: Option<String>,
        flag: FlagEntry,
        log: &[LogEntry],
    ) -> Result<(), EscalationError> {
        let now = now_ms();
        let mut rec = Record {
            id: record,
            conversation: conv.id,
            channel: conv.channel,
            channel_ref,
            created_at: now,
            expires_at: now + self.cfg.retention_ms,
            flags: Vec::new(),
            actions: vec![Action {
                at: flag.at,
                actor: flag.by.clone(),
                actor_id: flag.by_id,
                action: "flag_raised".into(),
                detail: Some(flag.category.clone()),
            }],
            transcript: Vec::new(),
            last_seq: 0,
            closed: false,
            delivered_at: None,
        };
        rec.flags.push(flag);
        append_entries(&mut rec, log);
        let _g = self.guard();
        self.write(&rec)
    }

    /// Changes a record in place (read, decrypt, change, encrypt, replace).
    pub fn update(
        &self,
        id: Ulid,
        change: impl FnOnce(&mut Record),
    ) -> Result<Record, EscalationError> {
        let _g = self.guard();
        let mut rec = self.load(id)?;
        change(&mut rec);
        self.write(&rec)?;
        Ok(rec)
    }

    /// Removes a record that was written for a flag the store then refused.
    pub fn discard(&self, id: Ulid) {
        let _g = self.guard();
        if let Some(p) = self.path_of(id) {
            let _ = std::fs::remove_file(p);
        }
    }

    /// The highest log seq a record holds.
    pub fn last_seq(&self, id: Ulid) -> Result<u64, EscalationError> {
        let _g = self.guard();
        Ok(self.load(id)?.last_seq)
    }

    /// Adds log entries (messages and ends) to a record's transcript and actions.
    pub fn append_log(&self, id: Ulid, entries: &[LogEntry]) -> Result<(), EscalationError> {
        self.update(id, |rec| append_entries(rec, entries))
            .map(|_| ())
    }

    fn summaries(&self) -> Vec<RecordSummary> {
        let mut out = Vec::new();
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        for entry in dir.filter_map(Result::ok) {
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".rec"))
                .and_then(|n| n.split_once('-'))
                .and_then(|(_, id)| Ulid::from_string(id).ok())
            else {
                continue;
            };
            let Ok(bytes) = std::fs::read(entry.path()) else {
                continue;
            };
            if let Ok(rec) = self.unseal(id, &bytes) {
                out.push(RecordSummary {
                    id: rec.id,
                    conversation: rec.conversation,
                    created_at: rec.created_at,
                    expires_at: rec.expires_at,
                    categories: rec.flags.iter().map(|f| f.category.clone()).collect(),
                    open: !rec.closed,
                    delivered: rec.delivered_at.is_some(),
                    delivery: match (rec.delivered_at, &self.cfg.webhook_url) {
                        (Some(_), _) => "delivered",
                        (None, Some(_)) => "pending",
                        (None, None) => "none",
                    },
                });
            }
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        out
    }

    /// Lists records without content; recorded in the audit trail first, and refused if it
    /// cannot be.
    pub fn list(&self, actor: &Actor) -> Result<Vec<RecordSummary>, EscalationError> {
        self.audit(actor, "list", None)?;
        Ok(self.summaries())
    }

    /// One record, decrypted; every read is recorded in the audit trail, and a read that
    /// cannot be recorded is refused.
    pub fn read(&self, id: Ulid, actor: &Actor) -> Result<Record, EscalationError> {
        let rec = {
            let _g = self.guard();
            self.load(id)?
        };
        self.audit(actor, "view", Some(id))?;
        tracing::info!(record = %id, "escalation record viewed");
        Ok(rec)
    }

    /// Appends an entry to the audit trail (written through to the file before returning). The
    /// caller must not go on with the action if this fails.
    pub fn audit(
        &self,
        actor: &Actor,
        action: &str,
        record: Option<Ulid>,
    ) -> Result<(), EscalationError> {
        let entry = AuditEntry {
            at: now_ms(),
            actor: actor.name.clone(),
            actor_id: actor.id,
            action: action.to_owned(),
            record,
        };
        let _g = self.guard();
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(AUDIT_FILE))?;
            let mut line = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
            line.push(b'\n');
            f.write_all(&line)?;
            f.sync_data()
        };
        write().map_err(|e| {
            tracing::error!(error = %e, action, "could not append to the audit trail; action refused");
            EscalationError::Io(e)
        })
    }

    pub fn audit_trail(&self) -> Vec<AuditEntry> {
        let _g = self.guard();
        std::fs::read_to_string(self.dir.join(AUDIT_FILE))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

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

    /// The directory records live in (for tests and operations).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// `<expires_at>-<id>.rec` → (expires_at, id).
fn parse_name(path: &Path) -> Option<(Millis, Option<Ulid>)> {
    let name = path.file_name()?.to_str()?.strip_suffix(".rec")?;
    let (expiry, id) = name.split_once('-')?;
    Some((expiry.parse().ok()?, Ulid::from_string(id).ok()))
}

fn append_entries(rec: &mut Record, entries: &[LogEntry]) {
    for e in entries {
        if e.seq <= rec.last_seq {
            continue;
        }
        rec.last_seq = e.seq;
        match &e.event {
            EventBody::Message {
                from,
                text,
                operator,
                ..
            } => rec.transcript.push(TranscriptEntry {
                seq: e.seq,
                at: e.at,
                from: *from,
                operator: operator.clone(),
                text: text.clone(),
            }),
            EventBody::OperatorJoined { operator } => rec.actions.push(Action {
                at: e.at,
                actor: operator.clone(),
                actor_id: None,
                action: "operator_joined".into(),
                detail: None,
            }),
            EventBody::OperatorLeft { reason } => rec.actions.push(Action {
                at: e.at,
                actor: "system".into(),
                actor_id: None,
                action: "operator_left".into(),
                detail: Some(format!("{reason:?}").to_lowercase()),
            }),
            EventBody::Ended { by, reason } => rec.actions.push(Action {
                at: e.at,
                actor: format!("{by:?}").to_lowercase(),
                actor_id: None,
                action: "ended".into(),
                detail: Some(reason.as_str().to_owned()),
            }),
            EventBody::Retracted { id } => rec.actions.push(Action {
                at: e.at,
                actor: "visitor".into(),
                actor_id: None,
                action: "retracted".into(),
                detail: Some(id.to_string()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> Escalations {
        let cfg = EscalationSettings {
            key: Some("11".repeat(32).into()),
            dir: dir.display().to_string(),
            retention_ms: 60_000,
            ..EscalationSettings::default()
        };
        Escalations::open(&cfg).unwrap().unwrap()
    }

    fn tmp() -> PathBuf {
        std::env::temp_dir().join(format!("tsunagu-esc-{}", Ulid::new()))
    }

    fn flag() -> FlagEntry {
        FlagEntry {
            id: None,
            category: "self_harm".into(),
            reason: "said they want to die".into(),
            by: "Sakura".into(),
            by_id: None,
            at: 1,
        }
    }

    fn message(seq: u64, text: &str) -> LogEntry {
        LogEntry {
            seq,
            at: seq,
            event: EventBody::Message {
                from: Side::Visitor,
                id: Ulid::new().into(),
                text: text.into(),
                operator: None,
            },
        }
    }

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
        let other = Escalations::open(&EscalationSettings {
            key: Some("22".repeat(32).into()),
            dir: dir.display().to_string(),
            ..EscalationSettings::default()
        })
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

    #[test]
    fn retention_deletes_expired_records_and_says_so_in_the_audit_trail() {
        let dir = tmp();
        let esc = store(&dir);
        let conv = Conversation::new(Ulid::new(), Channel::Web, None, None, 0);
        let id = Ulid::new();
        esc.create(&conv, id, None, flag(), &[]).unwrap();
        assert_eq!(esc.sweep(now_ms()), 0);
        assert_eq!(esc.sweep(now_ms() + 61_000), 1);
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

    #[test]
    fn the_webhook_signature_covers_timestamp_and_body() {
        let a = webhook_signature(b"secret", 1_700_000_000, b"{}");
        assert_eq!(a.len(), 64);
        assert_ne!(a, webhook_signature(b"secret", 1_700_000_001, b"{}"));
        assert_ne!(a, webhook_signature(b"secret", 1_700_000_000, b"{ }"));
        assert_ne!(a, webhook_signature(b"other", 1_700_000_000, b"{}"));
    }
}
