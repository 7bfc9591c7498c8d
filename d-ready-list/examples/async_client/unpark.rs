//! The unpark: how a wake from another thread reaches an executor that is
//! blocked in `epoll_wait`. Chapter 4's `Waker` is an eventfd that epoll
//! watches; writing it ends the wait. A state word says whether the
//! executor is asleep, so that only a wake that finds it asleep pays for
//! the write.

use std::io;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use d_ready_list::{Registry, Token};

// ANCHOR: unpark
/// The executor is running: it will look at its run queue before it
/// sleeps again, so a wake need do nothing more than queue the task.
const AWAKE: u8 = 0;
/// The executor is in `epoll_wait`, or about to be, with a timeout that
/// may be long: a wake must write the eventfd.
const ASLEEP: u8 = 1;
/// A wake came since the state was last set: if the executor was asleep,
/// that wake wrote the eventfd, and later ones need not write again; if
/// it was awake, it must not fall asleep without another look.
const NOTIFIED: u8 = 2;

#[derive(Debug)]
pub struct Unpark {
    state: AtomicU8,
    eventfd: d_ready_list::Waker,
    /// How many wakes wrote the eventfd.
    writes: AtomicUsize,
}

impl Unpark {
    pub fn new(registry: &Registry, token: Token) -> io::Result<Unpark> {
        Ok(Unpark {
            state: AtomicU8::new(AWAKE),
            eventfd: d_ready_list::Waker::new(registry, token)?,
            writes: AtomicUsize::new(0),
        })
    }

    /// Called by every wake, on any thread, once its task is on the run
    /// queue.
    pub fn unpark(&self) {
        let was = self.state.swap(NOTIFIED, Ordering::SeqCst);
        if was != ASLEEP {
            return;
        }
        self.writes.fetch_add(1, Ordering::Relaxed);
        // A wake cannot report an error, and this write has none to
        // report: every waker holds this `Unpark` (in an `Arc`), so the
        // eventfd is open, and `Waker::wake` empties a full counter itself.
        let _ = self.eventfd.wake();
    }

    /// Called by the executor after every wait, before it wakes anyone,
    /// and again before it looks at its run queue to decide whether to
    /// sleep: the wakes that came before are on the queue, where the look
    /// will find them, so they need no eventfd.
    pub fn awake(&self) {
        self.state.store(AWAKE, Ordering::SeqCst);
    }

    /// Called by the executor once its run queue was empty, just before
    /// the wait. `false`: a wake came since `awake`, so do not sleep.
    pub fn fall_asleep(&self) -> bool {
        self.state
            .compare_exchange(AWAKE, ASLEEP, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::Relaxed)
    }
}
// ANCHOR_END: unpark
