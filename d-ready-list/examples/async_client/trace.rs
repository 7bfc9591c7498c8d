//! What the reactor's waits did, kept apart from the reactor's lesson: the
//! counts that the tests, the demo's summary line and the `--wakes`
//! measurement print, and, once `record` is called, every wait, which the
//! book's picture of the timer queue draws. The reactor tells it about
//! each wait in one call.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use d_ready_list::{Events, Token};

use crate::timers::{TimerKey, Timers};

/// What the reactor's waits cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Calls to `epoll_wait`, counted by chapter 4's `Poll`, which makes
    /// them; and how many turns could sleep.
    pub waits: usize,
    pub sleeps: usize,
    pub events: usize,
    pub timers_fired: usize,
}

/// One wait, as the book's picture of the timer queue draws it.
#[allow(dead_code)]
#[derive(Debug, Clone)]
pub struct Turn {
    /// What `epoll_wait` was asked to wait (`None`: for ever).
    pub timeout: Option<Duration>,
    /// The timer queue during the wait, earliest first.
    pub queued: Vec<TimerKey>,
    /// The sources that came back, and whether readable, writable.
    pub events: Vec<(Token, bool, bool)>,
    /// The timers that were due after it.
    pub fired: Vec<TimerKey>,
}

/// The counts, and the record of every wait once `record` is called.
#[derive(Debug, Default)]
pub struct Trace {
    stats: Cell<Stats>,
    log: RefCell<Option<Vec<Turn>>>,
}

// The tests and the book's picture use some of these; the demo does not.
#[allow(dead_code)]
impl Trace {
    /// From now on, keep a `Turn` for every wait.
    pub fn record(&self) {
        *self.log.borrow_mut() = Some(Vec::new());
    }

    pub fn recording(&self) -> Vec<Turn> {
        self.log.borrow().clone().unwrap_or_default()
    }

    /// The counts so far (`waits` is the reactor's to fill in).
    pub fn stats(&self) -> Stats {
        self.stats.get()
    }

    /// One turn of the reactor: the wait it asked for, whether it could
    /// sleep, the events it got, the timers that fired after it, and the
    /// timers left.
    pub fn turn(
        &self,
        timeout: Option<Duration>,
        asleep: bool,
        events: &Events,
        fired: &[TimerKey],
        left: &Timers,
    ) {
        let mut stats = self.stats.get();
        stats.sleeps += usize::from(asleep);
        stats.events += events.len();
        stats.timers_fired += fired.len();
        self.stats.set(stats);
        if let Some(log) = self.log.borrow_mut().as_mut() {
            // The fired timers were the earliest in the queue.
            let queued = fired.iter().copied().chain(left.keys()).collect();
            log.push(Turn {
                timeout,
                queued,
                events: events
                    .iter()
                    .map(|event| (event.token(), event.is_readable(), event.is_writable()))
                    .collect(),
                fired: fired.to_vec(),
            });
        }
    }
}
