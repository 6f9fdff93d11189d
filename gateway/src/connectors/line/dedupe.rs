//! A bounded set of recently seen keys that forgets them after a while: drops LINE's
//! redeliveries (`webhookEventId`) and limits polite replies to group chats.
//!
//! Keys are SHA-256 digests, so the set holds no LINE identifier in clear.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

type Key = [u8; 32];

pub struct Recent {
    ttl: Duration,
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Key → when it was first seen. The source of truth for membership.
    seen: HashMap<Key, Instant>,
    /// Keys in the order they were seen, to expire and evict the oldest first.
    order: VecDeque<(Key, Instant)>,
}

fn digest(parts: &[&str]) -> Key {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().into()
}

impl Recent {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Recent {
            ttl,
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Remembers the key made of `parts`; true if it was already remembered (and not expired).
    pub fn check_and_insert(&self, parts: &[&str]) -> bool {
        self.check_and_insert_at(parts, Instant::now())
    }

    fn check_and_insert_at(&self, parts: &[&str], now: Instant) -> bool {
        let key = digest(parts);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((k, at)) = inner.order.front().copied() {
            if now.duration_since(at) < self.ttl && inner.order.len() < self.capacity {
                break;
            }
            inner.order.pop_front();
            if inner.seen.get(&k) == Some(&at) {
                inner.seen.remove(&k);
            }
        }
        if inner.seen.contains_key(&key) {
            return true;
        }
        inner.seen.insert(key, now);
        inner.order.push_back((key, now));
        false
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().unwrap().seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_seen_once_until_it_expires() {
        let r = Recent::new(Duration::from_secs(10), 100);
        let t0 = Instant::now();
        assert!(!r.check_and_insert_at(&["c", "e1"], t0));
        assert!(r.check_and_insert_at(&["c", "e1"], t0 + Duration::from_secs(5)));
        assert!(!r.check_and_insert_at(&["c", "e2"], t0 + Duration::from_secs(5)));
        assert!(!r.check_and_insert_at(&["c", "e1"], t0 + Duration::from_secs(11)));
    }

    #[test]
    fn parts_are_not_confused_by_concatenation() {
        let r = Recent::new(Duration::from_secs(10), 100);
        assert!(!r.check_and_insert(&["ab", "c"]));
        assert!(!r.check_and_insert(&["a", "bc"]));
    }

    #[test]
    fn the_set_never_grows_past_its_capacity() {
        let r = Recent::new(Duration::from_secs(3600), 3);
        for i in 0..10 {
            r.check_and_insert(&[&i.to_string()]);
        }
        assert!(r.len() <= 3);
        assert!(r.check_and_insert(&["9"]));
        assert!(!r.check_and_insert(&["0"]), "the oldest was forgotten");
    }
}
