//! An operator's commands: accept or decline an offer, take from the queue, hand back to the
//! queue, transfer to a colleague, write, acknowledge, end, record the wrap-up category.

use super::{Conversation, OperatorId, State, StateKind, Step};
use crate::protocol::{ClientId, EndReason, EventBody, LeftReason, Millis, Side};

impl Conversation {
    /// The offered operator accepts.
    pub(super) fn accept(&mut self, operator: OperatorId, name: String, now: Millis) -> Step {
        self.held_by(operator, &[StateKind::Offered])?;
        Ok(self.become_active(operator, name, now))
    }

    /// An operator takes a queued conversation directly.
    pub(super) fn take(&mut self, operator: OperatorId, name: String, now: Millis) -> Step {
        self.only_in(&[StateKind::Queued])?;
        Ok(self.become_active(operator, name, now))
    }

    /// The offered operator declines.
    pub(super) fn decline(&mut self, operator: OperatorId, now: Millis) -> Step {
        self.held_by(operator, &[StateKind::Offered])?;
        Ok(self.offer_returned(operator, now))
    }

    /// The holder hands the conversation back (or vanished past the grace): front of the queue.
    pub(super) fn requeue(&mut self, operator: OperatorId, now: Millis) -> Step {
        self.held_by(operator, &[StateKind::Active, StateKind::Offered])?;
        let was_active = self.state.kind() == StateKind::Active;
        self.declined_by.clear();
        self.handover_note = None;
        self.requeue_front(now);
        if was_active {
            Ok(vec![EventBody::OperatorLeft {
                reason: LeftReason::Requeued,
            }])
        } else {
            Ok(vec![])
        }
    }

    /// The holder offers the conversation to a colleague (not themself).
    pub(super) fn transfer(
        &mut self,
        from: OperatorId,
        to: OperatorId,
        note: Option<String>,
        expires_at: Millis,
    ) -> Step {
        self.held_by(from, &[StateKind::Active])?;
        if to == from {
            return Err(self.not_allowed());
        }
        let from_name = self.operator_name.take().unwrap_or_default();
        self.state = State::Offered {
            operator: to,
            expires_at,
            transfer_from: Some(from_name),
        };
        self.handover_note = note;
        self.declined_by.clear();
        Ok(vec![EventBody::OperatorLeft {
            reason: LeftReason::Transferred,
        }])
    }

    /// A message from the operator: only the holder, only while active.
    pub(super) fn operator_message(
        &mut self,
        operator: Option<OperatorId>,
        id: ClientId,
        text: String,
        now: Millis,
    ) -> Step {
        self.held_by(operator, &[StateKind::Active])?;
        self.last_activity = now;
        Ok(vec![EventBody::Message {
            from: Side::Operator,
            id,
            text,
            operator: self.operator_name.clone(),
        }])
    }

    /// The holder ends the conversation: wrap-up.
    pub(super) fn operator_end(&mut self, operator: OperatorId, now: Millis) -> Step {
        self.held_by(operator, &[StateKind::Active])?;
        Ok(self.ended(Side::Operator, EndReason::Ended, now))
    }

    /// The holder records the wrap-up category: closed.
    pub(super) fn wrap_up(&mut self, operator: OperatorId, category: String) -> Step {
        self.held_by(operator, &[StateKind::WrapUp])?;
        self.category = Some(category);
        self.state = State::Closed;
        Ok(vec![])
    }

    /// The operator's side has read up to `seq`: never past the log, never backwards.
    pub(super) fn operator_ack(&mut self, seq: u64) -> Step {
        self.operator_acked = self.operator_acked.max(seq.min(self.last_seq));
        Ok(vec![])
    }

    /// An offer declined or lapsed (`system.rs`): the operator is not offered it again; a
    /// transfer goes to the front of the queue, a first offer back to its place.
    pub(super) fn offer_returned(&mut self, operator: OperatorId, now: Millis) -> Vec<EventBody> {
        let was_transfer = matches!(
            self.state,
            State::Offered {
                transfer_from: Some(_),
                ..
            }
        );
        if !self.declined_by.contains(&operator) {
            self.declined_by.push(operator);
        }
        if was_transfer {
            self.handover_note = None;
            self.requeue_front(now);
        } else {
            self.state = State::Queued;
        }
        vec![]
    }

    fn become_active(
        &mut self,
        operator: OperatorId,
        operator_name: String,
        now: Millis,
    ) -> Vec<EventBody> {
        self.state = State::Active { operator };
        self.answered_at.get_or_insert(now);
        self.last_activity = now;
        self.operator_name = Some(operator_name.clone());
        self.declined_by.clear();
        vec![EventBody::OperatorJoined {
            operator: operator_name,
        }]
    }

    fn requeue_front(&mut self, now: Millis) {
        self.state = State::Queued;
        self.requeued = true;
        self.queued_at = now;
        // A new place, at the back of the requeued: the store numbers it.
        self.arrival = 0;
        self.operator_name = None;
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{active, offered, op, queued, wrap_up, T0};
    use super::super::*;
    use crate::protocol::{LeftReason, VisitorState};

    #[test]
    fn offered_to_active_on_accept_by_the_offered_operator_only() {
        let o = op();
        let mut c = offered(o);
        let err = c
            .apply(
                Command::Accept {
                    operator: op(),
                    operator_name: "x".into(),
                },
                T0,
            )
            .unwrap_err();
        assert_eq!(err, TransitionError::NotYours);
        let out = c
            .apply(
                Command::Accept {
                    operator: o,
                    operator_name: "Sakura".into(),
                },
                T0 + 5,
            )
            .unwrap();
        assert_eq!(c.state, State::Active { operator: o });
        assert_eq!(c.answered_at, Some(T0 + 5));
        assert_eq!(
            out.log,
            vec![EventBody::OperatorJoined {
                operator: "Sakura".into()
            }]
        );
    }
    #[test]
    fn offered_back_to_queued_on_decline_keeping_its_place() {
        let o = op();
        let mut c = offered(o);
        let key_before = c.queue_key();
        c.apply(Command::Decline { operator: o }, T0 + 100).unwrap();
        assert_eq!(c.state, State::Queued);
        assert_eq!(c.queue_key(), key_before);
        assert_eq!(c.declined_by, vec![o]);
    }
    #[test]
    fn queued_to_active_when_an_operator_takes_it() {
        let o = op();
        let c = active(o);
        assert_eq!(c.state, State::Active { operator: o });
        assert_eq!(c.operator_name.as_deref(), Some("Sakura"));
    }
    #[test]
    fn active_back_to_the_front_of_the_queue_on_requeue() {
        let o = op();
        let mut c = active(o);
        let out = c.apply(Command::Requeue { operator: o }, T0 + 500).unwrap();
        assert_eq!(c.state, State::Queued);
        assert!(c.requeued);
        assert_eq!(c.queue_key().tier, 0);
        assert_eq!(
            out.log,
            vec![EventBody::OperatorLeft {
                reason: LeftReason::Requeued
            }]
        );
        // A newer, first-time arrival sorts after it even though it queued earlier.
        let mut older = queued();
        older.queued_at = T0 - 1000;
        assert!(c.queue_key() < older.queue_key());
    }
    #[test]
    fn requeue_by_someone_else_is_refused() {
        let mut c = active(op());
        assert_eq!(
            c.apply(Command::Requeue { operator: op() }, T0),
            Err(TransitionError::NotYours)
        );
    }
    #[test]
    fn active_to_offered_on_transfer_and_front_of_queue_if_declined() {
        let a = op();
        let b = op();
        let mut c = active(a);
        c.apply(
            Command::Transfer {
                from: a,
                to: b,
                note: Some("talked about school".into()),
                expires_at: T0 + 60_000,
            },
            T0 + 50,
        )
        .unwrap();
        assert_eq!(c.state.kind(), StateKind::Offered);
        assert_eq!(c.state.operator(), Some(b));
        assert_eq!(c.handover_note.as_deref(), Some("talked about school"));
        c.apply(Command::Decline { operator: b }, T0 + 60).unwrap();
        assert_eq!(c.state, State::Queued);
        assert!(c.requeued);
        assert_eq!(c.handover_note, None);
    }
    #[test]
    fn transfer_to_oneself_or_from_non_owner_is_refused() {
        let a = op();
        let mut c = active(a);
        let t = |from, to| Command::Transfer {
            from,
            to,
            note: None,
            expires_at: T0,
        };
        assert!(c.apply(t(a, a), T0).is_err());
        assert_eq!(c.apply(t(op(), a), T0), Err(TransitionError::NotYours));
    }
    #[test]
    fn active_to_wrap_up_when_the_operator_ends() {
        let o = op();
        let c = wrap_up(o);
        assert_eq!(
            c.state,
            State::WrapUp {
                operator: o,
                since: T0 + 20
            }
        );
        assert_eq!(c.visitor_state(), VisitorState::Ended);
        assert_eq!(c.token_hash, None);
    }
    #[test]
    fn wrap_up_to_closed_with_a_category() {
        let o = op();
        let mut c = wrap_up(o);
        assert_eq!(
            c.apply(
                Command::WrapUp {
                    operator: op(),
                    category: "family".into()
                },
                T0
            ),
            Err(TransitionError::NotYours)
        );
        c.apply(
            Command::WrapUp {
                operator: o,
                category: "family".into(),
            },
            T0 + 40,
        )
        .unwrap();
        assert_eq!(c.state, State::Closed);
        assert_eq!(c.category.as_deref(), Some("family"));
    }
    #[test]
    fn visitor_may_write_while_waiting_but_operator_only_when_active_and_owner() {
        let o = op();
        let mut c = queued();
        let msg = |from, operator| Command::Message {
            from,
            operator,
            id: Ulid::new().into(),
            text: "hello".into(),
        };
        c.apply(msg(Side::Visitor, None), T0).unwrap();
        assert!(c.apply(msg(Side::Operator, Some(o)), T0).is_err());
        c.apply(
            Command::Take {
                operator: o,
                operator_name: "Sakura".into(),
            },
            T0,
        )
        .unwrap();
        assert_eq!(
            c.apply(msg(Side::Operator, Some(op())), T0),
            Err(TransitionError::NotYours)
        );
        let out = c.apply(msg(Side::Operator, Some(o)), T0 + 7).unwrap();
        assert!(
            matches!(&out.log[0], EventBody::Message { operator: Some(n), .. } if n == "Sakura")
        );
        assert_eq!(c.last_activity, T0 + 7);
    }
}
