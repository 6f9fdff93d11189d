//! Emergency flags: the holding operator (while active or wrapping up) or a coordinator (on any
//! live conversation) flags or adds a category; a coordinator clears an open flag. A flag is the
//! one path to escalation and retention.

use serde::{Deserialize, Serialize};
use ulid::Ulid;

use super::{Conversation, OperatorId, StateKind, Step, TransitionError, LIVE};
use crate::protocol::Millis;

/// The emergency categories an operator or coordinator may record (DESIGN.md, principle 3).
pub const EMERGENCY_CATEGORIES: [&str; 6] = [
    "self_harm",
    "harm_to_others",
    "abuse_dv",
    "medical",
    "crime",
    "other",
];

/// An emergency flag on a conversation: the one path to escalation and retention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Emergency {
    /// The escalation record this conversation writes to.
    pub record: Ulid,
    pub open: bool,
    pub categories: Vec<String>,
    pub raised_at: Millis,
    pub raised_by: String,
}

impl Conversation {
    /// Flags an emergency, or adds a category to it; raises a cleared one again. `operator` is
    /// the holder flagging; `None` is a coordinator.
    pub(super) fn flag(
        &mut self,
        operator: Option<OperatorId>,
        by: String,
        category: String,
        record: Ulid,
        now: Millis,
    ) -> Step {
        if !EMERGENCY_CATEGORIES.contains(&category.as_str()) {
            return Err(TransitionError::UnknownCategory);
        }
        match operator {
            Some(op) => self.held_by(op, &[StateKind::Active, StateKind::WrapUp])?,
            None => self.only_in(&LIVE)?,
        }
        let e = self.emergency.get_or_insert_with(|| {
            Box::new(Emergency {
                record,
                open: true,
                categories: Vec::new(),
                raised_at: now,
                raised_by: by.clone(),
            })
        });
        if !e.open {
            e.open = true;
            e.raised_at = now;
            e.raised_by = by;
        }
        if !e.categories.contains(&category) {
            e.categories.push(category);
        }
        Ok(vec![])
    }

    /// A coordinator clears an open emergency of a live conversation.
    pub(super) fn clear_flag(&mut self) -> Step {
        let refused = self.not_allowed();
        match &mut self.emergency {
            Some(e) if e.open && !self.state.is_terminal() => {
                e.open = false;
                Ok(vec![])
            }
            _ => Err(refused),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{active, op, queued, wrap_up, T0};
    use super::super::*;

    fn flag(operator: Option<OperatorId>, category: &str) -> Command {
        Command::Flag {
            operator,
            by: "Sakura".into(),
            category: category.into(),
            record: Ulid::new(),
        }
    }
    #[test]
    fn the_holding_operator_flags_an_emergency_and_can_add_to_it() {
        let o = op();
        let mut c = active(o);
        c.apply(flag(Some(o), "self_harm"), T0 + 1).unwrap();
        let record = c.emergency.as_ref().unwrap().record;
        c.apply(flag(Some(o), "medical"), T0 + 2).unwrap();
        let e = c.emergency.as_ref().unwrap();
        assert!(e.open);
        assert_eq!(e.record, record, "one record per conversation");
        assert_eq!(e.categories, vec!["self_harm", "medical"]);
        assert_eq!(e.raised_at, T0 + 1);
    }
    #[test]
    fn only_the_holder_may_flag_and_only_known_categories() {
        let o = op();
        let mut c = active(o);
        assert_eq!(
            c.apply(flag(Some(op()), "self_harm"), T0),
            Err(TransitionError::NotYours)
        );
        assert_eq!(
            c.apply(flag(Some(o), "gossip"), T0),
            Err(TransitionError::UnknownCategory)
        );
        let mut q = queued();
        assert!(q.apply(flag(Some(o), "self_harm"), T0).is_err());
        assert!(c.emergency.is_none());
    }
    #[test]
    fn a_coordinator_may_flag_any_live_conversation_and_clear_it() {
        let mut q = queued();
        q.apply(flag(None, "abuse_dv"), T0).unwrap();
        assert!(q.emergency.as_ref().unwrap().open);
        q.apply(Command::ClearFlag, T0 + 1).unwrap();
        assert!(!q.emergency.as_ref().unwrap().open);
        assert!(
            q.apply(Command::ClearFlag, T0 + 2).is_err(),
            "already clear"
        );
        q.apply(flag(None, "crime"), T0 + 3).unwrap();
        let e = q.emergency.as_ref().unwrap();
        assert!(e.open, "raised again");
        assert_eq!(e.categories, vec!["abuse_dv", "crime"]);
    }
    #[test]
    fn the_operator_may_still_flag_during_wrap_up() {
        let o = op();
        let mut c = wrap_up(o);
        c.apply(flag(Some(o), "other"), T0 + 50).unwrap();
        assert!(c.emergency.is_some());
    }
}
