//! The person's commands: write, withdraw a message, acknowledge, connect and disconnect (the
//! grace period counts from the disconnect; `system.rs` gives up when it passes), end.

use super::{Conversation, Step, LIVE, VISITOR_OPEN};
use crate::protocol::{ClientId, EndReason, EventBody, Millis, Side};

impl Conversation {
    /// A message from the person: allowed while they wait and while active.
    pub(super) fn visitor_message(&mut self, id: ClientId, text: String, now: Millis) -> Step {
        self.only_in(&VISITOR_OPEN)?;
        self.last_activity = now;
        Ok(vec![EventBody::Message {
            from: Side::Visitor,
            id,
            text,
            operator: None,
        }])
    }

    /// The person withdraws an earlier message of theirs.
    pub(super) fn retract(&mut self, id: ClientId) -> Step {
        self.only_in(&VISITOR_OPEN)?;
        Ok(vec![EventBody::Retracted { id }])
    }

    /// The person ends: active goes to wrap-up, waiting is abandoned.
    pub(super) fn visitor_end(&mut self, now: Millis) -> Step {
        self.only_in(&VISITOR_OPEN)?;
        Ok(self.ended(Side::Visitor, EndReason::Ended, now))
    }

    pub(super) fn connected(&mut self) -> Step {
        self.only_in(&LIVE)?;
        self.visitor_connected = true;
        self.visitor_gone_since = None;
        Ok(vec![])
    }

    pub(super) fn disconnected(&mut self, now: Millis) -> Step {
        self.only_in(&LIVE)?;
        self.visitor_connected = false;
        self.visitor_gone_since = Some(now);
        Ok(vec![])
    }

    /// The person has read up to `seq`: never past the log, never backwards.
    pub(super) fn visitor_ack(&mut self, seq: u64) -> Step {
        self.visitor_acked = self.visitor_acked.max(seq.min(self.last_seq));
        Ok(vec![])
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{active, offered, op, queued, T0};
    use super::super::*;

    #[test]
    fn active_to_wrap_up_when_the_visitor_ends() {
        let o = op();
        let mut c = active(o);
        let out = c.apply(Command::VisitorEnd, T0 + 30).unwrap();
        assert_eq!(c.state.kind(), StateKind::WrapUp);
        assert_eq!(
            out.log,
            vec![EventBody::Ended {
                by: Side::Visitor,
                reason: EndReason::Ended
            }]
        );
    }
    #[test]
    fn queued_or_offered_to_abandoned_when_the_visitor_ends() {
        let mut q = queued();
        q.apply(Command::VisitorEnd, T0 + 1).unwrap();
        assert_eq!(q.state, State::Abandoned);
        let mut o = offered(op());
        o.apply(Command::VisitorEnd, T0 + 1).unwrap();
        assert_eq!(o.state, State::Abandoned);
    }
    #[test]
    fn a_person_may_retract_a_message_while_the_conversation_lives() {
        let mut c = queued();
        let id = ClientId::from(Ulid::new());
        let out = c.apply(Command::VisitorRetract { id }, T0).unwrap();
        assert_eq!(out.log, vec![EventBody::Retracted { id }]);
        c.apply(Command::VisitorEnd, T0).unwrap();
        assert!(c.apply(Command::VisitorRetract { id }, T0).is_err());
    }
    #[test]
    fn acks_never_exceed_the_log_or_go_backwards() {
        let mut c = queued();
        c.last_seq = 5;
        c.apply(
            Command::Ack {
                side: Side::Visitor,
                seq: 9,
            },
            T0,
        )
        .unwrap();
        assert_eq!(c.visitor_acked, 5);
        c.apply(
            Command::Ack {
                side: Side::Visitor,
                seq: 2,
            },
            T0,
        )
        .unwrap();
        assert_eq!(c.visitor_acked, 5);
    }
}
