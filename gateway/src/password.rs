//! Password checks, bounded.
//!
//! An argon2id check is deliberately expensive: with the library's defaults (m = 19 MiB,
//! t = 2, p = 1) each one allocates 19 MiB and keeps a core busy for tens of milliseconds
//! (release build). Unbounded, 120 logins at once held 120 × 19 MiB and the process grew by
//! 833 MiB (issue 17, item 3). So checks run on the blocking pool behind a semaphore with one
//! permit per core (more would only queue inside the OS scheduler, holding their memory), a
//! short queue of checks waiting for a permit, and [`Busy`] for anything beyond: the login
//! is answered 503 with `Retry-After` instead of waiting in a line that only grows.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, PasswordVerifier};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Every permit is taken and the queue is full: try again shortly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("password checks are busy")]
pub struct Busy;

/// How long a client refused with [`Busy`] is told to wait: one check takes tens of
/// milliseconds, so a second is many times the queue's length.
pub const BUSY_RETRY_SECS: u64 = 1;

pub struct Checker {
    /// One permit per check that may run at once; a permit is held for the whole check.
    permits: Arc<Semaphore>,
    /// Checks waiting for a permit now; never more than `queue` (checked and counted in one
    /// atomic step in [`Checker::permit`]).
    waiting: AtomicUsize,
    queue: usize,
}

impl Checker {
    /// `concurrency` checks at once (0: one per core), `queue` more waiting.
    pub fn new(concurrency: usize, queue: usize) -> Self {
        let concurrency = if concurrency == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            concurrency
        };
        Checker {
            permits: Arc::new(Semaphore::new(concurrency)),
            waiting: AtomicUsize::new(0),
            queue,
        }
    }

    /// A permit to run one check: at once if one is free, after waiting in the queue if it
    /// has room, else [`Busy`]. Public so tests can hold every permit.
    pub async fn permit(&self) -> Result<OwnedSemaphorePermit, Busy> {
        if let Ok(p) = Arc::clone(&self.permits).try_acquire_owned() {
            return Ok(p);
        }
        let joined = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                (w < self.queue).then_some(w + 1)
            });
        if joined.is_err() {
            return Err(Busy);
        }
        // Leaves the queue however the wait ends (also when the request is dropped).
        struct Leave<'a>(&'a AtomicUsize);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let _leave = Leave(&self.waiting);
        // The semaphore is never closed.
        Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| Busy)
    }

    /// Checks waiting for a permit now (for tests and operations).
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Whether `password` matches the PHC-format `hash`, checked on the blocking pool while
    /// holding a permit.
    pub async fn verify(&self, password: String, hash: String) -> Result<bool, Busy> {
        let permit = self.permit().await?;
        let ok = tokio::task::spawn_blocking(move || {
            let ok = verify(&password, &hash);
            drop(permit);
            ok
        })
        .await
        .unwrap_or(false);
        Ok(ok)
    }
}

/// A new argon2id hash of `password` with a random salt (PHC string).
pub fn hash(password: &str) -> Option<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .ok()
}

/// Whether `password` matches `hash` (false for a malformed hash). Blocking and slow.
pub fn verify(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn checks_beyond_the_permits_and_the_queue_are_refused_as_busy() {
        let c = Arc::new(Checker::new(1, 1));
        let held = c.permit().await.unwrap();
        let queued = {
            let c = Arc::clone(&c);
            tokio::spawn(async move { c.permit().await.map(drop) })
        };
        while c.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(c.permit().await.unwrap_err(), Busy, "the queue is full");
        drop(held);
        assert!(queued.await.unwrap().is_ok(), "the queued check runs");
        assert_eq!(c.waiting.load(Ordering::Acquire), 0);
        assert!(c.permit().await.is_ok());
    }

    #[tokio::test]
    async fn a_check_verifies_the_password_against_its_hash() {
        let c = Checker::new(0, 4);
        let h = hash("correct horse battery").unwrap();
        assert!(c
            .verify("correct horse battery".into(), h.clone())
            .await
            .unwrap());
        assert!(!c.verify("wrong".into(), h).await.unwrap());
    }
}
