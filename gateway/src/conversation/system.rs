//! What the router and the timers do (the engine's sweep, `engine/timers.rs`): offer a queued
//! conversation, lapse an offer, end an idle or too long conversation, give up on a person gone
//! past the grace period, close a wrap-up left open.

use super::{Conversation, OperatorId, State, StateKind, Step, VISITOR_OPEN};
use crate::protocol::{EndReason, Millis, Side};

impl Conversation {
    /// The router offers a queued conversation to an operator until `expires_at`.
    pub(super) fn offer(&mut self, operator: OperatorId, expires_at: Millis) -> Step {
        self.only_in(&[StateKind::Queued])?;
        self.state = State::Offered {
            operator,
            expires_at,
            transfer_from: None,
        };
        Ok(vec![])
    }

    /// The offer made until `expires_at` lapsed: as if declined. A stale timer (a newer offer
    /// replaced that one) is refused.
    pub(super) fn offer_expired(
        &mut self,
        operator: OperatorId,
        expires_at: Millis,
        now: Millis,
    ) -> Step {
        self.held_by(operator, &[StateKind::Offered])?;
        if !matches!(self.state, State::Offered { expires_at: current, .. } if current == expires_at)
        {
            return Err(self.not_allowed());
        }
        Ok(self.offer_returned(operator, now))
    }

    /// The person's connection did not come back within the grace period.
    pub(super) fn visitor_gone(&mut self, now: Millis) -> Step {
        self.only_in(&VISITOR_OPEN)?;
        if self.visitor_connected {
            return Err(self.not_allowed());
        }
        Ok(self.ended(Side::System, EndReason::VisitorGone, now))
    }

    /// Idle limit or maximum duration reached: wrap-up.
    pub(super) fn timeout(&mut self, reason: EndReason, now: Millis) -> Step {
        self.only_in(&[StateKind::Active])?;
        Ok(self.ended(Side::System, reason, now))
    }

    /// The wrap-up was left open too long: closed with category `other`.
    pub(super) fn wrap_up_expired(&mut self) -> Step {
        self.only_in(&[StateKind::WrapUp])?;
        self.category = Some("other".to_owned());
        self.state = State::Closed;
        Ok(vec![])
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{active, offered, op, queued, wrap_up, T0};
    use super::super::*;
    use crate::protocol::VisitorState;

    #[test]
    fn queued_to_offered_on_offer() {
        let o = op();
        let c = offered(o);
        assert_eq!(c.state.kind(), StateKind::Offered);
        assert_eq!(c.state.operator(), Some(o));
        assert_eq!(c.visitor_state(), VisitorState::Queued);
    }
    #[test]
    fn offered_back_to_queued_when_the_offer_lapses() {
        let o = op();
        let mut c = offered(o);
        // A stale timer for an older offer does nothing.
        assert!(c
            .apply(
                Command::OfferExpired {
                    operator: o,
                    expires_at: T0
                },
                T0 + 1
            )
            .is_err());
        c.apply(
            Command::OfferExpired {
                operator: o,
                expires_at: T0 + 30_000,
            },
            T0 + 30_001,
        )
        .unwrap();
        assert_eq!(c.state, State::Queued);
    }
    #[test]
    fn active_to_wrap_up_on_idle_and_max_duration() {
        for reason in [EndReason::Idle, EndReason::MaxDuration] {
            let mut c = active(op());
            c.apply(Command::Timeout { reason }, T0 + 99).unwrap();
            assert_eq!(c.state.kind(), StateKind::WrapUp);
        }
        let mut q = queued();
        assert!(q
            .apply(
                Command::Timeout {
                    reason: EndReason::Idle
                },
                T0
            )
            .is_err());
    }
    #[test]
    fn wrap_up_to_closed_when_left_open_too_long() {
        let mut c = wrap_up(op());
        c.apply(Command::WrapUpExpired, T0 + 1_000_000).unwrap();
        assert_eq!(c.state, State::Closed);
        assert_eq!(c.category.as_deref(), Some("other"));
    }
    #[test]
    fn queued_to_abandoned_only_when_the_visitor_is_still_gone() {
        let mut q = queued();
        assert!(
            q.apply(Command::VisitorGone, T0).is_err(),
            "still connected"
        );
        q.apply(Command::VisitorDisconnected, T0 + 1).unwrap();
        assert_eq!(q.visitor_gone_since, Some(T0 + 1));
        q.apply(Command::VisitorConnected, T0 + 2).unwrap();
        assert!(q.apply(Command::VisitorGone, T0 + 3).is_err());
        q.apply(Command::VisitorDisconnected, T0 + 4).unwrap();
        let out = q.apply(Command::VisitorGone, T0 + 5).unwrap();
        assert_eq!(q.state, State::Abandoned);
        assert_eq!(
            out.log,
            vec![EventBody::Ended {
                by: Side::System,
                reason: EndReason::VisitorGone
            }]
        );
    }
}
