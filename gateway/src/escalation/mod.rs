//! Escalation records: the one thing of a conversation kept beyond its close, and only after an
//! emergency flag (DESIGN.md, principle 3; APPI Art. 27(1)(ii)).
//!
//! A record holds the transcript (from the start, and everything after the flag), the flags,
//! the operators' and coordinators' actions, and the channel identifier needed to reach the
//! person again (a LINE user id, a caller's number) when the channel has one. The key comes from
//! configuration only; nothing is ever written in plaintext. Times are read from the [`Clock`]
//! given at [`Escalations::open`].
//!
//! Parts:
//! - this file: [`EscalationSettings`], [`Escalations`] (opening the store, creating and
//!   changing records);
//! - [`record`]: what a record holds, and how log entries extend it;
//! - [`sealed`]: one encrypted file per record (XChaCha20-Poly1305, `<expires_at>-<id>.rec`);
//! - [`audit`]: the audit trail, which fails closed, and the audited list and view;
//! - [`sweep`]: deletion at the end of retention;
//! - [`webhook`]: signed delivery to the organisation's case system, retried with backoff.

mod audit;
mod record;
mod sealed;
mod sweep;
mod webhook;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::XChaCha20Poly1305;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

pub use audit::{Actor, AuditEntry};
pub use record::{Action, FlagEntry, Record, RecordSummary, TranscriptEntry};
pub use webhook::webhook_signature;

use crate::clock::Clock;
use crate::conversation::Conversation;
use crate::protocol::{LogEntry, Millis};
use record::append_entries;

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
    /// Open records whose delivery at the flag failed: when to try next, and the backoff.
    raise_retry: Mutex<HashMap<Ulid, (Millis, u64)>>,
    /// Failed delivery attempts since start (`tsunagu_escalation_delivery_failures_total`).
    failures: std::sync::atomic::AtomicU64,
    /// Where "now" comes from: when a record is opened, and each audit entry.
    clock: Clock,
}

impl Escalations {
    /// Opens the record store, reading the time from `clock`; `None` when flagging is not
    /// enabled.
    pub fn open(cfg: &EscalationSettings, clock: Clock) -> anyhow::Result<Option<Self>> {
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
            raise_retry: Mutex::new(HashMap::new()),
            failures: std::sync::atomic::AtomicU64::new(0),
            clock,
        }))
    }

    pub fn checklist(&self) -> &[String] {
        &self.cfg.checklist
    }

    /// The clock records and audit entries are timed by.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Held around every read-modify-write of a record and every append to the audit trail.
    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
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
        let now = self.clock.now_ms();
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

    /// The directory records live in (for tests and operations).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// What the tests of every part share: a store on a manual clock, and records' ingredients.
#[cfg(test)]
mod testing {
    use std::path::{Path, PathBuf};

    use ulid::Ulid;

    use super::{EscalationSettings, Escalations, FlagEntry};
    use crate::clock::Clock;
    use crate::protocol::{EventBody, LogEntry, Side};

    /// A store with a 60 s retention, on a manual clock standing at 1 700 000 000 000.
    pub(super) fn store(dir: &Path) -> Escalations {
        let cfg = EscalationSettings {
            key: Some("11".repeat(32).into()),
            dir: dir.display().to_string(),
            retention_ms: 60_000,
            ..EscalationSettings::default()
        };
        Escalations::open(&cfg, Clock::manual(1_700_000_000_000))
            .unwrap()
            .unwrap()
    }

    pub(super) fn tmp() -> PathBuf {
        std::env::temp_dir().join(format!("tsunagu-esc-{}", Ulid::new()))
    }

    pub(super) fn flag() -> FlagEntry {
        FlagEntry {
            id: None,
            category: "self_harm".into(),
            reason: "said they want to die".into(),
            by: "Sakura".into(),
            by_id: None,
            at: 1,
        }
    }

    pub(super) fn message(seq: u64, text: &str) -> LogEntry {
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
}
