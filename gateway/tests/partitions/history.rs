//! The history checker: every send (client id), every ack (client id → seq) and every delivery
//! (seq, client id, at which client), per conversation, on both sides, and optionally the
//! conversation's log as stored (read back from seq 0 on a healthy node at the end). From these
//! it counts what the service promised never to do (docs/protocol.md, "Sequence numbers,
//! acknowledgements and resume"):
//!
//! - **lost**: a message its sender began to send that was neither acknowledged nor stored nor
//!   delivered anywhere (the sender never saw it as sent; with clients that retry until the
//!   ack, as these do, it is 0 unless a sender gave up);
//! - **acknowledged but lost**: a message its sender saw acknowledged that some side of the
//!   conversation never received, or that is missing from the stored log;
//! - **duplicated**: a message received twice by one side (by client id), an event seq received
//!   twice, or a client id stored under two seqs;
//! - **reordered**: a side receiving a message after one with a higher seq (both sides must see
//!   one order, the log's);
//! - **diverged**: a message delivered or stored under a seq other than the one its ack gave.
//!
//! Messages stored but never acknowledged (the ack was lost with a connection, and the sender
//! gave up before retrying) are counted apart: that is allowed.

use std::collections::{HashMap, HashSet};
use std::fmt;

/// What one sender did: the client ids it began to send, and the acks it got.
#[derive(Debug, Default, Clone)]
pub struct Sent {
    pub attempted: Vec<String>,
    pub acked: Vec<(String, u64)>,
}

/// What one side received: chat messages as (seq, client id) and every event seq, in arrival
/// order.
#[derive(Debug, Default, Clone)]
pub struct Received {
    pub messages: Vec<(u64, String)>,
    pub event_seqs: Vec<u64>,
}

/// One conversation's history.
#[derive(Debug, Default, Clone)]
pub struct History {
    pub senders: Vec<Sent>,
    pub receivers: Vec<Received>,
    /// The stored log's messages (seq, client id), if it was read back.
    pub stored: Option<Vec<(u64, String)>>,
}

/// The checker's counts over one or more conversations.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub conversations: usize,
    pub sent: usize,
    pub acked: usize,
    pub deliveries: usize,
    pub lost: usize,
    pub acked_but_lost: usize,
    pub duplicated: usize,
    pub reordered: usize,
    pub diverged: usize,
    pub stored_unacked: usize,
}

impl Counts {
    /// The four the service promises are zero, and divergence.
    pub fn faults(&self) -> (usize, usize, usize, usize, usize) {
        (
            self.lost,
            self.acked_but_lost,
            self.duplicated,
            self.reordered,
            self.diverged,
        )
    }
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.conversations += o.conversations;
        self.sent += o.sent;
        self.acked += o.acked;
        self.deliveries += o.deliveries;
        self.lost += o.lost;
        self.acked_but_lost += o.acked_but_lost;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
        self.diverged += o.diverged;
        self.stored_unacked += o.stored_unacked;
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "history: {} conversations, {} sent, {} acknowledged, {} deliveries; lost {}, \
             acknowledged-but-lost {}, duplicated {}, reordered {}, diverged {} \
             (stored but never acknowledged: {})",
            self.conversations,
            self.sent,
            self.acked,
            self.deliveries,
            self.lost,
            self.acked_but_lost,
            self.duplicated,
            self.reordered,
            self.diverged,
            self.stored_unacked
        )
    }
}

impl History {
    pub fn check(&self) -> Counts {
        let mut c = Counts {
            conversations: 1,
            ..Counts::default()
        };
        let acked: HashMap<&str, u64> = self
            .senders
            .iter()
            .flat_map(|s| s.acked.iter().map(|(id, seq)| (id.as_str(), *seq)))
            .collect();
        c.sent = self.senders.iter().map(|s| s.attempted.len()).sum();
        c.acked = acked.len();
        let mut seen_anywhere: HashSet<&str> = HashSet::new();

        for r in &self.receivers {
            c.deliveries += r.messages.len();
            let mut times: HashMap<&str, usize> = HashMap::new();
            let mut last_seq = 0;
            for (seq, id) in &r.messages {
                seen_anywhere.insert(id);
                let n = times.entry(id.as_str()).or_insert(0);
                *n += 1;
                if *n > 1 {
                    continue; // counted as a duplicate below, not as a reordering
                }
                if *seq < last_seq {
                    c.reordered += 1;
                }
                last_seq = last_seq.max(*seq);
                if acked.get(id.as_str()).is_some_and(|a| a != seq) {
                    c.diverged += 1;
                }
            }
            c.duplicated += times.values().map(|n| n - 1).sum::<usize>();
            let mut seqs = HashSet::new();
            c.duplicated += r.event_seqs.iter().filter(|s| !seqs.insert(**s)).count();
            c.acked_but_lost += acked.keys().filter(|id| !times.contains_key(*id)).count();
        }

        if let Some(stored) = &self.stored {
            let mut by_id: HashMap<&str, Vec<u64>> = HashMap::new();
            for (seq, id) in stored {
                seen_anywhere.insert(id);
                by_id.entry(id.as_str()).or_default().push(*seq);
            }
            for (id, seqs) in &by_id {
                c.duplicated += seqs.len() - 1;
                match acked.get(id) {
                    Some(a) if !seqs.contains(a) => c.diverged += 1,
                    Some(_) => {}
                    None => c.stored_unacked += 1,
                }
            }
            c.acked_but_lost += acked.keys().filter(|id| !by_id.contains_key(*id)).count();
        }

        for s in &self.senders {
            for id in &s.attempted {
                if !acked.contains_key(id.as_str()) && !seen_anywhere.contains(id.as_str()) {
                    c.lost += 1;
                }
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(ids: &[(&str, Option<u64>)]) -> Sent {
        Sent {
            attempted: ids.iter().map(|(i, _)| i.to_string()).collect(),
            acked: ids
                .iter()
                .filter_map(|(i, s)| s.map(|s| (i.to_string(), s)))
                .collect(),
        }
    }

    fn got(_side: &str, msgs: &[(u64, &str)]) -> Received {
        Received {
            messages: msgs.iter().map(|(s, i)| (*s, i.to_string())).collect(),
            event_seqs: msgs.iter().map(|(s, _)| *s).collect(),
        }
    }

    #[test]
    fn a_clean_history_has_no_faults() {
        let h = History {
            senders: vec![
                sent(&[("a", Some(1)), ("b", Some(3))]),
                sent(&[("x", Some(2))]),
            ],
            receivers: vec![
                got("v", &[(1, "a"), (2, "x"), (3, "b")]),
                got("o", &[(1, "a"), (2, "x"), (3, "b")]),
            ],
            stored: Some(vec![(1, "a".into()), (2, "x".into()), (3, "b".into())]),
        };
        let c = h.check();
        assert_eq!(c.faults(), (0, 0, 0, 0, 0), "{c}");
        assert_eq!((c.sent, c.acked, c.deliveries), (3, 3, 6));
    }

    #[test]
    fn each_kind_of_fault_is_counted() {
        let h = History {
            // "c" was never acked nor seen: lost. "d" unacked but stored: allowed.
            senders: vec![sent(&[
                ("a", Some(1)),
                ("b", Some(2)),
                ("c", None),
                ("d", None),
            ])],
            receivers: vec![
                // b before a: one reordering; a twice: one duplicate (and its seq twice).
                got("v", &[(2, "b"), (1, "a"), (1, "a")]),
                // b missing: acknowledged but lost; a under another seq: diverged.
                got("o", &[(5, "a")]),
            ],
            stored: Some(vec![(1, "a".into()), (2, "b".into()), (3, "d".into())]),
        };
        let c = h.check();
        assert_eq!(c.lost, 1, "{c}");
        assert_eq!(c.reordered, 1, "{c}");
        assert_eq!(c.duplicated, 2, "{c}");
        assert_eq!(c.acked_but_lost, 1, "{c}");
        assert_eq!(c.diverged, 1, "{c}");
        assert_eq!(c.stored_unacked, 1, "{c}");
    }

    #[test]
    fn an_acknowledged_message_missing_from_the_store_is_acknowledged_but_lost() {
        let h = History {
            senders: vec![sent(&[("a", Some(1))])],
            receivers: vec![got("v", &[(1, "a")])],
            stored: Some(vec![]),
        };
        assert_eq!(h.check().acked_but_lost, 1);
    }
}
