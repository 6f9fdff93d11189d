//! Escalation records: the one thing of a conversation kept beyond its close, and only after an
//! emergency flag (DESIGN.md, principle 3; APPI Art. 27(1)(ii)).
//!
//! A record holds the transcript (from the start, and everything after the flag), the flags,
//! the operators' and coordinators' actions, and the channel identifier needed to reach the
//! person again (a LINE user id, a caller's number) when the channel has one. Records live in
//! the database ([`crate::db`], `escalation_records`), sealed here before they get there: the
//! key comes from configuration only and never reaches the database, and nothing is written in
//! plaintext. Times are read from the [`Clock`] given at [`Escalations::open`].
//!
//! Parts:
//! - this file: [`EscalationSettings`], [`Escalations`] (opening the store, creating and
//!   changing records);
//! - [`record`]: what a record holds, and how log entries extend it;
//! - [`sealed`]: sealing (XChaCha20-Poly1305) and the versioned read-modify-write of a record;
//! - [`audit`]: the audit trail, which fails closed, and the audited list and view;
//! - [`sweep`]: deletion at the end of retention;
//! - [`webhook`]: signed delivery to the organisation's case system, retried with backoff;
//! - [`import`]: records and audit trail from the directory earlier versions kept.

mod audit;
mod import;
mod record;
mod rekey;
mod sealed;
mod sweep;
mod webhook;

use anyhow::Context;
use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::XChaCha20Poly1305;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

pub use audit::{Actor, AuditEntry};
pub use import::{ImportError, ImportReport};
pub use record::{Action, FlagEntry, Record, RecordSummary, TranscriptEntry};
pub use rekey::Rekeyed;
pub use webhook::webhook_signature;

use crate::clock::Clock;
use crate::conversation::Conversation;
use crate::db::{Db, DbError, SealedRecord};
use crate::protocol::{LogEntry, Millis};
use record::append_entries;
use std::collections::HashMap;
use std::sync::Mutex;

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
    Db(#[from] DbError),
    /// Another writer kept changing the record; the step was not applied.
    #[error("record busy")]
    Busy,
    #[error("record could not be decrypted or parsed")]
    Corrupt,
}

pub struct Escalations {
    /// Where sealed records and the audit trail are kept (shared by every node).
    db: Db,
    cipher: XChaCha20Poly1305,
    cfg: EscalationSettings,
    http: reqwest::Client,
    /// Records whose last delivery attempt by this node failed (at the flag or the close):
    /// how many are failing now, for the alert and the gauge.
    failing: Mutex<std::collections::HashSet<Ulid>>,
    /// Open records whose delivery at the flag failed: when to try next, and the backoff.
    raise_retry: Mutex<HashMap<Ulid, (Millis, u64)>>,
    /// Failed delivery attempts since start (`tsunagu_escalation_delivery_failures_total`).
    failures: std::sync::atomic::AtomicU64,
    /// Where "now" comes from: when a record is opened, and each audit entry.
    clock: Clock,
}

impl Escalations {
    /// The record store in `db`, reading the time from `clock`; `None` when flagging is not
    /// enabled.
    pub fn open(cfg: &EscalationSettings, db: Db, clock: Clock) -> anyhow::Result<Option<Self>> {
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
        Ok(Some(Escalations {
            db,
            cipher,
            cfg: cfg.clone(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()?,
            failing: Mutex::new(std::collections::HashSet::new()),
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

    /// The database records are kept in.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Opens a record for a conversation that was just flagged, with the transcript so far.
    pub async fn create(
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
        self.db
            .insert_escalation(&SealedRecord {
                id: rec.id,
                sealed: self.seal(&rec)?,
                version: 1,
                created_at: rec.created_at,
                expires_at: rec.expires_at,
                closed_at: None,
                delivered_at: None,
                delivery_attempts: 0,
                next_attempt_at: None,
            })
            .await?;
        Ok(())
    }

    /// Removes a record that was written for a flag the store then refused.
    pub async fn discard(&self, id: Ulid) {
        if let Err(e) = self.db.delete_escalation(id).await {
            tracing::error!(record = %id, error = %e, "could not discard an unused escalation record");
        }
    }

    /// The highest log seq a record holds.
    pub async fn last_seq(&self, id: Ulid) -> Result<u64, EscalationError> {
        Ok(self.load(id).await?.last_seq)
    }

    /// Adds log entries (messages and ends) to a record's transcript and actions.
    pub async fn append_log(&self, id: Ulid, entries: &[LogEntry]) -> Result<(), EscalationError> {
        self.update(id, |rec| append_entries(rec, entries))
            .await
            .map(|_| ())
    }
}

/// What the tests of every part share: a store on a manual clock, and records' ingredients.
#[cfg(test)]
mod testing {
    use ulid::Ulid;

    use super::{EscalationSettings, Escalations, FlagEntry};
    use crate::clock::Clock;
    use crate::db::{DatabaseSettings, Db};
    use crate::protocol::{EventBody, LogEntry, Side};

    /// A database of its own, in memory, migrated.
    pub(super) async fn db() -> Db {
        Db::open(&DatabaseSettings {
            url: Some("memory".into()),
            ..DatabaseSettings::default()
        })
        .await
        .unwrap()
    }

    /// A store with a 60 s retention in `db`, on a manual clock standing at 1 700 000 000 000.
    pub(super) fn store_in(db: Db, key: &str) -> Escalations {
        let cfg = EscalationSettings {
            key: Some(key.repeat(32).into()),
            retention_ms: 60_000,
            ..EscalationSettings::default()
        };
        Escalations::open(&cfg, db, Clock::manual(1_700_000_000_000))
            .unwrap()
            .unwrap()
    }

    /// [`store_in`] a fresh database.
    pub(super) async fn store() -> Escalations {
        store_in(db().await, "11")
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
