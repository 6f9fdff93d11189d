//! A call's shared record ([`CallRecord`]) as the connector uses it: read, and changed by a
//! rule over the version read (retried when another node wrote first), so every change of a
//! call's phase is made once, by one node, whichever node's webhook or follower makes it.

use super::{Phase, Voice};
use crate::conversation::ConversationId;
use crate::store::{CallRecord, StoreError};

/// How long the store keeps a call's record at most (a backstop: it goes with the
/// conversation).
pub(crate) const CALL_RECORD_TTL_MS: u64 = 24 * 60 * 60 * 1000;

/// Writes lost to another node's before giving up (each retry reads again).
const ATTEMPTS: usize = 16;

/// What [`Voice::change`] did.
#[derive(Debug)]
pub(crate) enum Change {
    /// No record: the call's conversation is over (or the store lost it).
    Missing,
    /// The rule left the record as it was.
    Kept(CallRecord),
    /// The rule changed the record, and this is what it was before.
    Made { before: CallRecord },
}

impl Change {
    /// Whether this node made the change.
    pub(crate) fn made(&self) -> bool {
        matches!(self, Change::Made { .. })
    }
}

impl Voice {
    /// The call's shared record.
    pub(crate) async fn record(
        &self,
        conv: ConversationId,
    ) -> Result<Option<CallRecord>, StoreError> {
        let rec = self.engine.call_record(conv).await?;
        if let Some(r) = &rec {
            self.note_phase(conv, r.phase);
        }
        Ok(rec)
    }

    /// Creates the record of a new call.
    pub(crate) async fn open_record(
        &self,
        conv: ConversationId,
        now: u64,
    ) -> Result<(), StoreError> {
        self.engine
            .put_call(conv, &CallRecord::new(now), CALL_RECORD_TTL_MS)
            .await?;
        Ok(())
    }

    /// Applies `rule` to the call's record: it changes the record and answers true, or answers
    /// false to leave it. The change is written only over the version read; if another node
    /// wrote first, the record is read again and the rule asked again.
    pub(crate) async fn change(
        &self,
        conv: ConversationId,
        rule: impl Fn(&mut CallRecord) -> bool,
    ) -> Result<Change, StoreError> {
        for _ in 0..ATTEMPTS {
            let Some(before) = self.record(conv).await? else {
                return Ok(Change::Missing);
            };
            let mut next = before.clone();
            if !rule(&mut next) {
                return Ok(Change::Kept(before));
            }
            if let Some(written) = self
                .engine
                .put_call(conv, &next, CALL_RECORD_TTL_MS)
                .await?
            {
                self.note_phase(conv, written.phase);
                return Ok(Change::Made { before });
            }
        }
        tracing::warn!(conversation = %conv, "voice call record: too many concurrent writes");
        Err(StoreError::Unavailable(
            "voice call record: too many concurrent writes".into(),
        ))
    }

    /// Moves the call to `phase` unless it is ending already; what it was before, if changed.
    pub(crate) async fn move_to(
        &self,
        conv: ConversationId,
        phase: Phase,
    ) -> Result<Change, StoreError> {
        self.change(conv, |r| {
            if r.phase == Phase::Ending || r.phase == phase {
                return false;
            }
            r.phase = phase;
            true
        })
        .await
    }
}
