//! Timers, the third reason a task is woken: a queue of deadlines, each
//! with the waker of the task that waits for it (`time.rs` has the futures
//! over it, `sleep` and `timeout`). The reactor asks the queue how long it
//! may wait in epoll, and wakes what has expired after every wait.

use std::collections::BTreeMap;
use std::task::Waker;
use std::time::{Duration, Instant};

// ANCHOR: queue
/// Where a timer sits in the queue. The derived order compares the fields
/// as written: by deadline first, and two timers due at the same instant
/// by the order they were set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimerKey {
    deadline: Instant,
    seq: u64,
}

// The book's picture reads them; the demo does not.
#[allow(dead_code)]
impl TimerKey {
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The order the timer was set in: 0 for the first.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

/// Every timer that a task waits for, earliest first.
#[derive(Debug, Default)]
pub struct Timers {
    queue: BTreeMap<TimerKey, Waker>,
    next_seq: u64,
}

impl Timers {
    /// Sets a timer, or gives one already set the waker of its latest poll.
    pub fn set(&mut self, key: Option<TimerKey>, deadline: Instant, waker: &Waker) -> TimerKey {
        if let Some(key) = key {
            if let Some(kept) = self.queue.get_mut(&key) {
                kept.clone_from(waker);
                return key;
            }
        }
        let key = TimerKey {
            deadline,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        self.queue.insert(key, waker.clone());
        key
    }

    /// A timer whose future was dropped leaves the queue: it wakes no one.
    pub fn cancel(&mut self, key: TimerKey) {
        self.queue.remove(&key);
    }

    /// How long epoll may wait: until the earliest deadline, or for ever
    /// when no timer is set. `Poll::poll` rounds it up to whole
    /// milliseconds, so the wait never ends before the deadline.
    pub fn time_to_next(&self, now: Instant) -> Option<Duration> {
        let (earliest, _) = self.queue.first_key_value()?;
        Some(earliest.deadline.saturating_duration_since(now))
    }

    /// The timers set now, earliest first.
    pub fn keys(&self) -> Vec<TimerKey> {
        self.queue.keys().copied().collect()
    }

    /// Takes out every timer that is due, earliest first.
    pub fn expired(&mut self, now: Instant) -> Vec<(TimerKey, Waker)> {
        let mut due = Vec::new();
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().deadline > now {
                break;
            }
            due.push(entry.remove_entry());
        }
        due
    }
}
// ANCHOR_END: queue
