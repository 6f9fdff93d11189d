//! A conversation's deadlines (pure): which timer command is due at a given time
//! ([`Deadlines::due`]) and the earliest time one will be ([`Deadlines::next`]), so that a
//! store can index conversations by their next deadline and the sweep reads only those due.

use super::{Command, Conversation, State};
use crate::protocol::{Channel, EndReason, Millis};

/// The lengths every deadline counts (from `[conversation]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    pub visitor_grace_ms: u64,
    pub idle_limit_ms: u64,
    pub max_duration_ms: u64,
    pub wrap_up_ms: u64,
}

impl Deadlines {
    /// The command a conversation's deadlines call for at `now`, if any.
    pub fn due(&self, c: &Conversation, now: Millis) -> Option<Command> {
        if self.gone_at(c).is_some_and(|t| t <= now) {
            return Some(Command::VisitorGone);
        }
        let emergency_open = c.emergency.as_ref().is_some_and(|e| e.open);
        match &c.state {
            State::Offered {
                operator,
                expires_at,
                ..
            } if *expires_at <= now => Some(Command::OfferExpired {
                operator: *operator,
                expires_at: *expires_at,
            }),
            State::Active { .. } if self.idle_at(c).is_some_and(|t| t <= now) => {
                Some(Command::Timeout {
                    reason: EndReason::Idle,
                })
            }
            State::Active { .. }
                if !emergency_open
                    && c.answered_at
                        .is_some_and(|t| t.saturating_add(self.max_duration_ms) <= now) =>
            {
                Some(Command::Timeout {
                    reason: EndReason::MaxDuration,
                })
            }
            State::WrapUp { since, .. } if since.saturating_add(self.wrap_up_ms) <= now => {
                Some(Command::WrapUpExpired)
            }
            _ => None,
        }
    }

    /// The earliest time at which [`Self::due`] will call for a command, if ever (while the
    /// conversation does not change): `due(c, now)` is `Some` exactly when `now >= next(c)`.
    pub fn next(&self, c: &Conversation) -> Option<Millis> {
        let emergency_open = c.emergency.as_ref().is_some_and(|e| e.open);
        let own = match &c.state {
            State::Offered { expires_at, .. } => Some(*expires_at),
            State::Active { .. } => {
                let max = c
                    .answered_at
                    .filter(|_| !emergency_open)
                    .map(|t| t.saturating_add(self.max_duration_ms));
                [self.idle_at(c), max].into_iter().flatten().min()
            }
            State::WrapUp { since, .. } => Some(since.saturating_add(self.wrap_up_ms)),
            _ => None,
        };
        [self.gone_at(c), own].into_iter().flatten().min()
    }

    /// When the person's grace period ends (they are disconnected while it can matter).
    fn gone_at(&self, c: &Conversation) -> Option<Millis> {
        if c.visitor_connected
            || !matches!(
                c.state,
                State::Queued | State::Offered { .. } | State::Active { .. }
            )
        {
            return None;
        }
        c.visitor_gone_since
            .map(|t| t.saturating_add(self.visitor_grace_ms))
    }

    /// When an active conversation is closed for idleness: never during an open emergency,
    /// nor on the phone (a call logs no messages while people talk; its callbacks end it).
    fn idle_at(&self, c: &Conversation) -> Option<Millis> {
        let emergency_open = c.emergency.as_ref().is_some_and(|e| e.open);
        (!emergency_open && c.channel != Channel::Phone)
            .then(|| c.last_activity.saturating_add(self.idle_limit_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ulid::Ulid;

    const D: Deadlines = Deadlines {
        visitor_grace_ms: 100,
        idle_limit_ms: 1_000,
        max_duration_ms: 5_000,
        wrap_up_ms: 300,
    };

    fn conv() -> Conversation {
        Conversation::new(Ulid::new(), Channel::Web, None, None, 10)
    }

    /// `due` is `Some` exactly from `next` on, at every time around it.
    fn agrees(c: &Conversation) {
        match D.next(c) {
            None => {
                for t in [0, 10, 1_000, 100_000, u64::MAX / 2] {
                    assert_eq!(D.due(c, t), None, "nothing due at {t}");
                }
            }
            Some(at) => {
                assert_eq!(D.due(c, at.saturating_sub(1)), None, "not before {at}");
                assert!(D.due(c, at).is_some(), "due at {at}");
                assert!(D.due(c, at + 10_000).is_some(), "still due after {at}");
            }
        }
    }

    #[test]
    fn a_connected_waiting_person_has_no_deadline() {
        let mut c = conv();
        c.visitor_connected = true;
        assert_eq!(D.next(&c), None);
        agrees(&c);
    }

    #[test]
    fn a_disconnected_waiting_person_is_due_after_the_grace() {
        let mut c = conv();
        c.visitor_connected = false;
        c.visitor_gone_since = Some(50);
        assert_eq!(D.next(&c), Some(150));
        assert_eq!(D.due(&c, 150), Some(Command::VisitorGone));
        agrees(&c);
    }

    #[test]
    fn an_offer_is_due_when_it_expires() {
        let mut c = conv();
        c.visitor_connected = true;
        c.state = State::Offered {
            operator: Ulid::new(),
            expires_at: 400,
            transfer_from: None,
        };
        assert_eq!(D.next(&c), Some(400));
        agrees(&c);
    }

    #[test]
    fn an_active_conversation_is_due_at_idleness_or_length_whichever_first() {
        let mut c = conv();
        c.visitor_connected = true;
        c.state = State::Active {
            operator: Ulid::new(),
        };
        c.last_activity = 100;
        c.answered_at = Some(0);
        assert_eq!(D.next(&c), Some(1_100));
        agrees(&c);
        c.last_activity = 4_500;
        assert_eq!(D.next(&c), Some(5_000));
        agrees(&c);
        c.channel = Channel::Phone;
        assert_eq!(
            D.next(&c),
            Some(5_000),
            "a call is not idle, but has a length"
        );
        agrees(&c);
    }

    #[test]
    fn wrap_up_is_due_after_its_limit() {
        let mut c = conv();
        c.visitor_connected = true;
        c.state = State::WrapUp {
            operator: Ulid::new(),
            since: 1_000,
        };
        assert_eq!(D.next(&c), Some(1_300));
        agrees(&c);
    }
}
