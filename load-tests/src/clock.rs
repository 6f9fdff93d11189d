//! A timer finer than tokio's for the open-loop writers. Tokio's timer wheel has 1 ms ticks and
//! fires a deadline at the tick after it, so a message scheduled for `t` went out 0.5-1.8 ms
//! late (the burst's dump showed it), and that lateness was in every target's latency, since
//! latency counts from the scheduled time: about 1.2 ms of each p50, and a floor under the 5 ms
//! line. One thread keeps the deadlines in a heap and waits on a condition variable with a
//! timeout (a futex: tens of µs late, not a millisecond), then completes each due deadline's
//! oneshot, which wakes its task on the runtime. The thread inherits the generator's core.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Instant;

use tokio::sync::oneshot;

struct Entry {
    at: Instant,
    seq: u64,
    done: oneshot::Sender<()>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Default)]
struct Deadlines {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
}

struct Clock {
    deadlines: Mutex<Deadlines>,
    changed: Condvar,
}

fn clock() -> &'static Arc<Clock> {
    static CLOCK: OnceLock<Arc<Clock>> = OnceLock::new();
    CLOCK.get_or_init(|| {
        let clock = Arc::new(Clock {
            deadlines: Mutex::new(Deadlines::default()),
            changed: Condvar::new(),
        });
        let c = Arc::clone(&clock);
        std::thread::Builder::new()
            .name("precise-clock".into())
            .spawn(move || c.run())
            .expect("clock thread");
        clock
    })
}

impl Clock {
    fn run(&self) {
        let mut d = self.deadlines.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let now = Instant::now();
            while d.heap.peek().is_some_and(|Reverse(e)| e.at <= now) {
                if let Some(Reverse(e)) = d.heap.pop() {
                    let _ = e.done.send(());
                }
            }
            d = match d.heap.peek().map(|Reverse(e)| e.at) {
                Some(at) => {
                    let wait = at.saturating_duration_since(Instant::now());
                    self.changed
                        .wait_timeout(d, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self.changed.wait(d).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

/// Completes at `at`, tens of µs late rather than up to 2 ms (tokio's timer). Dropping it
/// leaves its entry to expire unnoticed.
pub async fn sleep_until(at: Instant) {
    if at <= Instant::now() {
        return;
    }
    let (done, wait) = oneshot::channel();
    let clock = clock();
    {
        let mut d = clock.deadlines.lock().unwrap_or_else(|e| e.into_inner());
        d.seq += 1;
        let seq = d.seq;
        let earliest = d.heap.peek().is_none_or(|Reverse(e)| at < e.at);
        d.heap.push(Reverse(Entry { at, seq, done }));
        if earliest {
            clock.changed.notify_one();
        }
    }
    let _ = wait.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn deadlines_complete_in_order_and_not_before_their_time() {
        let start = Instant::now();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (i, ms) in [30u64, 10, 20].into_iter().enumerate() {
            let order = Arc::clone(&order);
            tasks.push(tokio::spawn(async move {
                let at = start + Duration::from_millis(ms);
                sleep_until(at).await;
                assert!(Instant::now() >= at, "not before its time");
                order.lock().unwrap().push(i);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![1, 2, 0]);
    }

    #[tokio::test]
    async fn a_deadline_in_the_past_completes_at_once() {
        let before = Instant::now() - Duration::from_millis(5);
        tokio::time::timeout(Duration::from_millis(100), sleep_until(before))
            .await
            .expect("at once");
    }
}
