//! `sleep` and `timeout`: the futures a task awaits for time to pass
//! (`tokio::time`, in small), over the reactor's timer queue in
//! `timers.rs`.

use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::reactor::Reactor;
use crate::timers::TimerKey;

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
                this.reactor.cancel_timer(key);
            }
            return Poll::Ready(());
        }
        let key = this.reactor.set_timer(this.key, this.deadline, cx.waker());
        this.key = Some(key);
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.reactor.cancel_timer(key);
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

/// Runs `future` for at most `duration`, counted from now, when `timeout`
/// is called, not from the first poll (as `tokio::time::timeout`): a
/// timeout made and awaited later has less time left. When the time runs
/// out, the future is dropped where it stands, and with it whatever it
/// owns: a request's connection is deregistered and closed.
pub fn timeout<F: Future>(
    reactor: &Rc<Reactor>,
    duration: Duration,
    future: F,
) -> impl Future<Output = Result<F::Output, TimedOut>> + use<F> {
    let mut sleep = sleep(reactor, duration);
    async move {
        let mut future = pin!(future);
        poll_fn(|cx| {
            // The future first: an answer that came in the same turn as
            // the deadline still counts.
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(Ok(output));
            }
            Pin::new(&mut sleep)
                .poll(cx)
                .map(|()| Err(TimedOut(duration)))
        })
        .await
    }
}
// ANCHOR_END: timeout
