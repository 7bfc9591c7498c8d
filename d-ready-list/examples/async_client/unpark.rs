//! The unpark: how a wake from another thread reaches an executor that is
//! blocked in `epoll_wait`. Chapter 4's `Waker` is an eventfd that epoll
//! watches; writing it ends the wait. A state word says whether the
//! executor is asleep, so that only a wake that finds it asleep pays for
//! the write.

use std::io;
use std::sync::atomic::{AtomicU8, Ordering};

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
}

impl Unpark {
    pub fn new(registry: &Registry, token: Token) -> io::Result<Unpark> {
        Ok(Unpark {
            state: AtomicU8::new(AWAKE),
            eventfd: d_ready_list::Waker::new(registry, token)?,
        })
    }

    /// Called by every wake, on any thread, once its task is on the run
    /// queue.
    pub fn unpark(&self) {
        let was = self.state.swap(NOTIFIED, Ordering::SeqCst);
        if was != ASLEEP {
            return;
        }
        // A wake cannot report an error, and this write should have none:
        // every waker holds this `Unpark` (in an `Arc`), so the eventfd is
        // open, and `Waker::wake` empties a full counter itself.
        let written = self.eventfd.wake();
        debug_assert!(written.is_ok(), "unpark: {written:?}");
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

    /// How many wakes wrote the eventfd, counted by chapter 4's `Waker`,
    /// which makes the write.
    pub fn writes(&self) -> usize {
        self.eventfd.writes()
    }
}
// ANCHOR_END: unpark
