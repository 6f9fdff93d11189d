//! [`EngineError`]: why the engine refused an action, in the engine's terms. The wire's
//! [`ErrorCode`] is derived from it in one place ([`EngineError::code`], also `From`), which the
//! sockets and connectors use; the HTTP API maps it to its own responses.

use crate::conversation::{StateKind, TransitionError};
use crate::protocol::ErrorCode;
use crate::store::{ApplyError, StoreError};

/// Why an engine action was refused.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No such conversation, operator (record) or colleague.
    #[error("not found")]
    NotFound,
    /// The conversation is not held by (or offered to) this operator.
    #[error("the conversation is not this operator's")]
    NotYours,
    /// The conversation's state does not allow this action (now).
    #[error("not allowed in state {0:?}")]
    WrongState(StateKind),
    /// A wrap-up or emergency category that is not configured.
    #[error("unknown category")]
    UnknownCategory,
    /// A flag or its clearing without a reason.
    #[error("a reason is required")]
    NoReason,
    /// A reason longer than a note may be.
    #[error("the reason is too long")]
    ReasonTooLong,
    /// The operator (or the colleague a conversation is transferred to) has no room for it.
    #[error("no capacity left")]
    AtCapacity,
    /// Emergency flagging is not configured.
    #[error("emergency flagging is not enabled")]
    FlaggingDisabled,
    /// The escalation record could not be written, so the step was not taken (the record is
    /// the trail of who did what).
    #[error("the escalation record could not be written")]
    RecordUnavailable,
    /// The store did not answer.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EngineError {
    /// The code a client is sent for this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            // An operator is not told that a conversation they do not hold exists.
            EngineError::NotFound | EngineError::NotYours => ErrorCode::NotFound,
            EngineError::WrongState(_) => ErrorCode::OutOfOrder,
            EngineError::UnknownCategory | EngineError::NoReason => ErrorCode::Invalid,
            EngineError::ReasonTooLong => ErrorCode::TextTooLong,
            EngineError::AtCapacity => ErrorCode::Capacity,
            EngineError::FlaggingDisabled => ErrorCode::NotEnabled,
            EngineError::RecordUnavailable | EngineError::Store(_) => ErrorCode::Unavailable,
        }
    }
}

impl From<EngineError> for ErrorCode {
    fn from(e: EngineError) -> Self {
        e.code()
    }
}

impl From<TransitionError> for EngineError {
    fn from(e: TransitionError) -> Self {
        match e {
            TransitionError::NotAllowed(state) => EngineError::WrongState(state),
            TransitionError::NotYours => EngineError::NotYours,
            TransitionError::UnknownCategory => EngineError::UnknownCategory,
        }
    }
}

impl From<ApplyError> for EngineError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::NotFound => EngineError::NotFound,
            ApplyError::Refused(e) => e.into(),
            ApplyError::Store(e) => EngineError::Store(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_keeps_the_code_clients_were_sent_before() {
        let cases = [
            (ApplyError::NotFound.into(), ErrorCode::NotFound),
            (
                ApplyError::Refused(TransitionError::NotYours).into(),
                ErrorCode::NotFound,
            ),
            (
                ApplyError::Refused(TransitionError::UnknownCategory).into(),
                ErrorCode::Invalid,
            ),
            (
                ApplyError::Refused(TransitionError::NotAllowed(StateKind::Queued)).into(),
                ErrorCode::OutOfOrder,
            ),
            (
                ApplyError::Store(StoreError::Unavailable("down".into())).into(),
                ErrorCode::Unavailable,
            ),
            (EngineError::NoReason, ErrorCode::Invalid),
            (EngineError::ReasonTooLong, ErrorCode::TextTooLong),
            (EngineError::AtCapacity, ErrorCode::Capacity),
            (EngineError::FlaggingDisabled, ErrorCode::NotEnabled),
            (EngineError::RecordUnavailable, ErrorCode::Unavailable),
        ];
        for (err, code) in cases {
            assert_eq!(ErrorCode::from(err), code);
        }
    }
}
