//! Failed logins: who is locked out, and who is slowed down.
//!
//! The policy (docs/operations.md, "Sign-in protection"):
//! - **Locked per (username, address).** [`LOCK_AFTER`] failures for one username from one
//!   address lock that pair for [`LOCK_FIRST_MS`], doubling with each further failure up to
//!   [`LOCK_MAX_MS`]. Someone else's guesses from other addresses never refuse the owner's
//!   password from theirs (issue 17, item 7: five wrong passwords from anywhere used to lock
//!   the operator out).
//! - **Slowed per username.** Once a username has [`LOCK_AFTER`] failures from any addresses
//!   within [`NAME_WINDOW_MS`], every attempt on it waits before its password is checked:
//!   [`SLOW_FIRST_MS`], doubling per further failure up to [`SLOW_MAX_MS`]. A correct password
//!   is still accepted after the wait.
//! - **Counted atomically.** An attempt is counted when it starts ([`Lockout::begin`] reserves
//!   it under the same lock that checks the limit), not when its check ends, so attempts sent
//!   at once cannot all pass the check before any is counted: of 29 wrong guesses and the
//!   right password sent together from one address, at most [`LOCK_AFTER`] are checked.
//!
//! Unknown usernames are counted the same way, so a lock or a delay says nothing about which
//! usernames exist. Addresses are the anonymous keys of [`crate::limits`]; records are bounded
//! in number so a spray of names and addresses cannot grow memory without bound.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::limits::AddrKey;
use crate::protocol::Millis;

/// Failures from one address before the (username, address) pair locks.
pub const LOCK_AFTER: u32 = 5;
/// The first lock's length; each further failure after a lock doubles it, up to
/// [`LOCK_MAX_MS`].
pub const LOCK_FIRST_MS: u64 = 30_000;
pub const LOCK_MAX_MS: u64 = 60 * 60_000;
/// The wait before a check once a username is under attack, doubling per failure.
pub const SLOW_FIRST_MS: u64 = 250;
/// At most this: long enough to make guessing slow, short enough that the owner signs in.
pub const SLOW_MAX_MS: u64 = 4_000;
/// A username's failures older than this (since its last failure) are forgotten.
pub const NAME_WINDOW_MS: u64 = 15 * 60_000;
/// While attempts are still being checked, a pair that already has its full count in flight
/// is refused for this long.
const IN_FLIGHT_RETRY_MS: u64 = 1_000;
/// Records kept at most, of each kind; the one unused longest is forgotten first.
const MAX_RECORDS: usize = 10_000;

#[derive(Debug, Clone, Copy, Default)]
struct Pair {
    failures: u32,
    /// Attempts begun and not yet finished: counted against the limit with `failures`.
    pending: u32,
    locked_until: Millis,
    last: Millis,
}

#[derive(Debug, Clone, Copy, Default)]
struct Name {
    failures: u32,
    last: Millis,
}

#[derive(Default)]
struct Books {
    pairs: HashMap<(String, AddrKey), Pair>,
    names: HashMap<String, Name>,
}

/// Failed-login accounting, shared by every login.
#[derive(Default)]
pub struct Lockout {
    books: Mutex<Books>,
}

/// Refused without checking the password: try again after this many milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked(pub u64);

/// A login attempt admitted by [`Lockout::begin`]: wait `delay_ms`, check the password, then
/// [`Attempt::succeeded`] or [`Attempt::failed`]. Dropped unfinished (the request went away),
/// it is not counted.
pub struct Attempt<'a> {
    lockout: &'a Lockout,
    name: String,
    addr: AddrKey,
    pub delay_ms: u64,
    finished: bool,
}

fn forget_oldest<K: Clone + Eq + std::hash::Hash, V>(
    map: &mut HashMap<K, V>,
    key: &K,
    last: impl Fn(&V) -> Millis,
) {
    if map.len() >= MAX_RECORDS && !map.contains_key(key) {
        if let Some(oldest) = map
            .iter()
            .min_by_key(|(_, v)| last(v))
            .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
    }
}

impl Lockout {
    pub fn new() -> Self {
        Lockout::default()
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks the limit and counts the attempt, in one step.
    pub fn begin(&self, name: &str, addr: AddrKey, now: Millis) -> Result<Attempt<'_>, Locked> {
        let mut books = self.books();
        let key = (name.to_owned(), addr);
        forget_oldest(&mut books.pairs, &key, |p| p.last);
        let pair = books.pairs.entry(key).or_default();
        if pair.locked_until > now {
            return Err(Locked(pair.locked_until - now));
        }
        if pair.failures + pair.pending >= LOCK_AFTER && pair.failures < LOCK_AFTER {
            // The rest of the allowance is being checked now; its outcome decides.
            return Err(Locked(IN_FLIGHT_RETRY_MS));
        }
        if pair.failures >= LOCK_AFTER && pair.pending > 0 {
            // Past a lock, one attempt at a time: the next failure locks again.
            return Err(Locked(IN_FLIGHT_RETRY_MS));
        }
        pair.pending += 1;
        pair.last = now;
        let delay_ms = match books.names.get(name) {
            Some(n) if now.saturating_sub(n.last) <= NAME_WINDOW_MS && n.failures >= LOCK_AFTER => {
                let doublings = (n.failures - LOCK_AFTER).min(16);
                (SLOW_FIRST_MS << doublings).min(SLOW_MAX_MS)
            }
            _ => 0,
        };
        Ok(Attempt {
            lockout: self,
            name: name.to_owned(),
            addr,
            delay_ms,
            finished: false,
        })
    }

    /// Failures and in-flight attempts of a (username, address) pair (for tests and
    /// operations).
    pub fn attempts(&self, name: &str, addr: AddrKey) -> u32 {
        self.books()
            .pairs
            .get(&(name.to_owned(), addr))
            .map_or(0, |p| p.failures + p.pending)
    }

    /// Ends an attempt's reservation; returns the books, still locked, for what follows.
    fn end(&self, name: &str, addr: AddrKey) -> std::sync::MutexGuard<'_, Books> {
        let mut books = self.books();
        if let Some(p) = books.pairs.get_mut(&(name.to_owned(), addr)) {
            p.pending = p.pending.saturating_sub(1);
        }
        books
    }
}

impl Attempt<'_> {
    /// The password was right: the pair's failures are forgotten. The username's are not (they
    /// were someone else's, perhaps), and fade after [`NAME_WINDOW_MS`].
    pub fn succeeded(mut self) {
        self.finished = true;
        let mut books = self.lockout.end(&self.name, self.addr);
        books.pairs.remove(&(self.name.clone(), self.addr));
    }

    /// The password was wrong: counts the failure; returns the lock's length if the pair is
    /// now locked.
    pub fn failed(mut self, now: Millis) -> Option<u64> {
        self.finished = true;
        let mut books = self.lockout.end(&self.name, self.addr);
        forget_oldest(&mut books.names, &self.name, |n| n.last);
        let n = books.names.entry(self.name.clone()).or_default();
        if now.saturating_sub(n.last) > NAME_WINDOW_MS {
            n.failures = 0;
        }
        n.failures += 1;
        n.last = now;
        let pair = books
            .pairs
            .entry((self.name.clone(), self.addr))
            .or_default();
        pair.failures += 1;
        pair.last = now;
        if pair.failures < LOCK_AFTER {
            return None;
        }
        let doublings = (pair.failures - LOCK_AFTER).min(16);
        let ms = (LOCK_FIRST_MS << doublings).min(LOCK_MAX_MS);
        pair.locked_until = now + ms;
        Some(ms)
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.finished {
            drop(self.lockout.end(&self.name, self.addr));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: AddrKey = 1;
    const B: AddrKey = 2;

    #[test]
    fn failures_lock_the_pair_with_growing_locks_and_a_success_resets_it() {
        let l = Lockout::new();
        for _ in 0..LOCK_AFTER - 1 {
            assert_eq!(l.begin("sakura", A, 0).unwrap().failed(0), None);
        }
        assert_eq!(
            l.begin("sakura", A, 0).unwrap().failed(0),
            Some(LOCK_FIRST_MS)
        );
        assert_eq!(
            l.begin("sakura", A, 1).err(),
            Some(Locked(LOCK_FIRST_MS - 1))
        );
        let later = LOCK_FIRST_MS;
        assert_eq!(
            l.begin("sakura", A, later).unwrap().failed(later),
            Some(2 * LOCK_FIRST_MS),
            "past the lock, another failure locks twice as long"
        );
        let later = later + 2 * LOCK_FIRST_MS;
        l.begin("sakura", A, later).unwrap().succeeded();
        assert_eq!(l.attempts("sakura", A), 0, "success resets the pair");
    }

    #[test]
    fn a_locked_pair_does_not_lock_the_same_name_from_another_address() {
        let l = Lockout::new();
        for _ in 0..LOCK_AFTER {
            l.begin("sakura", A, 0).unwrap().failed(0);
        }
        assert!(l.begin("sakura", A, 1).is_err());
        let attempt = l
            .begin("sakura", B, 1)
            .expect("another address is not locked");
        assert_eq!(
            attempt.delay_ms, SLOW_FIRST_MS,
            "but the name is slowed down"
        );
    }

    #[test]
    fn attempts_begun_at_once_count_before_any_is_checked() {
        let l = Lockout::new();
        let begun: Vec<_> = (0..30).map(|_| l.begin("sakura", A, 0)).collect();
        let admitted = begun.iter().filter(|a| a.is_ok()).count();
        assert_eq!(admitted, LOCK_AFTER as usize);
        drop(begun);
        assert_eq!(
            l.attempts("sakura", A),
            0,
            "unfinished attempts are not counted"
        );
    }

    #[test]
    fn the_slowdown_grows_with_failures_and_is_capped_and_fades() {
        let l = Lockout::new();
        for i in 0..40 {
            l.begin("sakura", i, 0).unwrap().failed(0);
        }
        assert_eq!(l.begin("sakura", 99, 0).unwrap().delay_ms, SLOW_MAX_MS);
        let later = NAME_WINDOW_MS + 1;
        assert_eq!(l.begin("sakura", 98, later).unwrap().delay_ms, 0);
    }
}
