//! The delays, as a timer queue: every connection waiting for its delay
//! has one entry, and the earliest deadline is how long the worker's
//! `epoll_wait` may sleep. No thread and no `sleep` per connection.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use d_ready_list::Token;

// ANCHOR: timers
/// Deadlines, earliest first, each with the connection it is for. A
/// `BTreeSet` rather than a heap so that a connection that goes away
/// before its deadline can take its entry out (see the cleanup list).
#[derive(Debug, Default)]
pub struct Timers {
    queue: BTreeSet<(Instant, Token)>,
}

impl Timers {
    pub fn insert(&mut self, deadline: Instant, token: Token) {
        self.queue.insert((deadline, token));
    }

    pub fn cancel(&mut self, deadline: Instant, token: Token) {
        self.queue.remove(&(deadline, token));
    }

    /// How long the worker may wait before the earliest deadline: `None`
    /// (for ever) when none is set. `Poll::poll` rounds a part of a
    /// millisecond up, so the wait never ends just before the deadline and
    /// spins through its last millisecond.
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        let (earliest, _) = self.queue.first()?;
        Some(earliest.saturating_duration_since(now))
    }

    /// Takes out every entry whose deadline has passed.
    pub fn expired(&mut self, now: Instant) -> Vec<Token> {
        let mut due = Vec::new();
        while let Some(&(deadline, token)) = self.queue.first() {
            if deadline > now {
                break;
            }
            self.queue.pop_first();
            due.push(token);
        }
        due
    }
}
// ANCHOR_END: timers
