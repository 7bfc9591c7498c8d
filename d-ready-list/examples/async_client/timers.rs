//! Timers, the third reason a task is woken: a queue of deadlines, each
//! with the waker of the task that waits for it, and `sleep` and `timeout`
//! as plain futures over it. The reactor asks the queue how long it may
//! wait in epoll, and wakes what has expired after every wait.

use std::collections::BTreeMap;
use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::reactor::Reactor;

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
    pub fn expired(&mut self, now: Instant) -> Vec<Waker> {
        let mut due = Vec::new();
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().deadline > now {
                break;
            }
            due.push(entry.remove());
        }
        due
    }
}
// ANCHOR_END: queue

// ANCHOR: sleep
/// A future that is ready at `deadline`: `tokio::time::Sleep`, in small.
#[derive(Debug)]
pub struct Sleep {
    reactor: Rc<Reactor>,
    deadline: Instant,
    /// Set by the first `Pending`: the timer's place in the queue.
    key: Option<TimerKey>,
}

/// Ready once `duration` has passed. A duration too long for an `Instant`
/// (`Duration::MAX`, say) means "never", as in tokio: about 30 years.
pub fn sleep(reactor: &Rc<Reactor>, duration: Duration) -> Sleep {
    let now = Instant::now();
    let never = Duration::from_secs(30 * 365 * 24 * 60 * 60);
    Sleep {
        reactor: Rc::clone(reactor),
        deadline: now.checked_add(duration).unwrap_or_else(|| now + never),
        key: None,
    }
}

impl Future for Sleep {
    type Output = ();

    /// The clock decides, not the wake: a task may be woken for another
    /// reason, and a sleep polled early just sets its timer again.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if Instant::now() >= this.deadline {
            if let Some(key) = this.key.take() {
                this.reactor.timers().cancel(key);
            }
            return Poll::Ready(());
        }
        let key = this
            .reactor
            .timers()
            .set(this.key, this.deadline, cx.waker());
        this.key = Some(key);
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.reactor.timers().cancel(key);
        }
    }
}
// ANCHOR_END: sleep

// ANCHOR: timeout
/// What `timeout` returns when the time ran out first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut(pub Duration);

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "timed out after {} ms", self.0.as_millis())
    }
}

impl From<TimedOut> for io::Error {
    fn from(timed_out: TimedOut) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, timed_out.to_string())
    }
}

/// Runs `future` for at most `duration`. When the time runs out, the
/// future is dropped where it stands, and with it whatever it owns: a
/// request's connection is deregistered and closed.
pub async fn timeout<F: Future>(
    reactor: &Rc<Reactor>,
    duration: Duration,
    future: F,
) -> Result<F::Output, TimedOut> {
    let mut future = pin!(future);
    let mut sleep = sleep(reactor, duration);
    poll_fn(|cx| {
        // The future first: an answer that came in the same turn as the
        // deadline still counts.
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        Pin::new(&mut sleep)
            .poll(cx)
            .map(|()| Err(TimedOut(duration)))
    })
    .await
}
// ANCHOR_END: timeout
