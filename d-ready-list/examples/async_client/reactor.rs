//! The reactor: chapter 4's `Poll`, and per registered source two slots,
//! one for the task that reads it and one for the task that writes it.
//!
//! A source is registered once, for both directions, edge-triggered: the
//! kernel reports each change of readiness once, and the reactor keeps
//! what it was told, per direction, until a system call says `WouldBlock`.
//! A future that finds its direction not ready leaves its waker in the
//! slot and returns `Pending`; a wait turns events, expired timers and
//! wakes from other threads into wakes. The reactor never runs a task.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{self, Context, Waker};
use std::time::{Duration, Instant};

use d_ready_list::{Events, Interest, Token};

use crate::timers::{TimerKey, Timers};
use crate::trace::{Stats, Trace};
use crate::unpark::Unpark;
use crate::uring::ring::Ring;

// ANCHOR: slots
/// Which way a task uses a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Read,
    Write,
}

/// One direction of one source: what the kernel last said about it, and
/// the tasks waiting for it to change. Usually one; but two tasks that
/// share a stream may both wait to read it, and neither may take the
/// other's place. Each waiting future holds the key of its entry, and
/// takes the entry out when it is dropped (tokio's `Readiness` future),
/// so a future that gives up (cut short by a timeout) leaves nothing
/// behind for the next event to wake.
#[derive(Debug, Default)]
struct Slot {
    ready: bool,
    /// By key, which is the order the futures began to wait.
    waiters: BTreeMap<WaiterKey, Waker>,
    next_key: u64,
}

/// A future's entry among a slot's waiters. Keys are never reused within
/// a slot, so a future whose entry an event already took out cannot take
/// out another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WaiterKey(u64);

impl Slot {
    /// An event is good for one wake: the wakers are taken out as they
    /// fire, and a task leaves a new one if it has to wait again.
    fn set_ready(&mut self, woken: &mut Vec<Waker>) {
        self.ready = true;
        woken.extend(std::mem::take(&mut self.waiters).into_values());
    }

    /// Keeps `waker` until the next event. A future polled again before
    /// then (its task woken for another reason) finds its entry by its key
    /// and gives it the latest waker, rather than adding a second one.
    fn wait(&mut self, key: Option<WaiterKey>, waker: &Waker) -> WaiterKey {
        if let Some(key) = key {
            if let Some(kept) = self.waiters.get_mut(&key) {
                kept.clone_from(waker);
                return key;
            }
        }
        let key = WaiterKey(self.next_key);
        self.next_key += 1;
        self.waiters.insert(key, waker.clone());
        key
    }
}

/// A reader and a writer can wait on one socket at once, and neither
/// takes the other's place (tokio's `ScheduledIo`).
#[derive(Debug, Default)]
struct Source {
    reader: Slot,
    writer: Slot,
}

impl Source {
    fn slot(&mut self, direction: Direction) -> &mut Slot {
        match direction {
            Direction::Read => &mut self.reader,
            Direction::Write => &mut self.writer,
        }
    }
}
// ANCHOR_END: slots

// ANCHOR: reactor
/// One per thread, shared by `Rc` between the executor and every future.
#[derive(Debug)]
pub struct Reactor {
    poll: d_ready_list::Poll,
    events: RefCell<Events>,
    sources: RefCell<HashMap<Token, Source>>,
    /// Tokens are never reused, so a late event cannot find a new socket.
    next_token: Cell<usize>,
    timers: RefCell<Timers>,
    unpark: Arc<Unpark>,
    /// Counts, and a record of the waits for the book's picture.
    trace: Trace,
    /// io_uring: the ring, if made by `with_ring` (see the end of this file).
    ring: Option<Ring>,
}

/// The unpark eventfd's token; sources get the ones after it.
const UNPARK: Token = Token(0);
// ANCHOR_END: reactor

impl Reactor {
    pub fn new() -> io::Result<Rc<Reactor>> {
        let poll = d_ready_list::Poll::new()?;
        let unpark = Arc::new(Unpark::new(poll.registry(), UNPARK)?);
        Ok(Rc::new(Reactor {
            poll,
            events: RefCell::new(Events::with_capacity(64)),
            sources: RefCell::new(HashMap::new()),
            next_token: Cell::new(UNPARK.0 + 1),
            timers: RefCell::new(Timers::default()),
            unpark,
            trace: Trace::default(),
            ring: None,
        }))
    }

    /// What every task's waker needs to end a wait from another thread.
    pub fn unpark(&self) -> Arc<Unpark> {
        Arc::clone(&self.unpark)
    }

    /// Sets a timer, or gives one already set its latest waker. The timer
    /// queue is borrowed only inside this call and `cancel_timer`, so no
    /// caller can hold it while another `Sleep` is polled or dropped.
    pub fn set_timer(&self, key: Option<TimerKey>, deadline: Instant, waker: &Waker) -> TimerKey {
        self.timers.borrow_mut().set(key, deadline, waker)
    }

    pub fn cancel_timer(&self, key: TimerKey) {
        self.timers.borrow_mut().cancel(key);
    }

    /// How many sources are registered now (the tests look).
    #[allow(dead_code)]
    pub fn registered(&self) -> usize {
        self.sources.borrow().len()
    }

    /// What the waits cost so far.
    pub fn stats(&self) -> Stats {
        Stats {
            waits: self.poll.waits(),
            ..self.trace.stats()
        }
    }

    /// The counts' keeper, which can also record every wait.
    #[allow(dead_code)]
    pub fn trace(&self) -> &Trace {
        &self.trace
    }
}

/// The epoll fd, so that a test can read the kernel's own view of the
/// interest list in /proc.
impl AsFd for Reactor {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.poll.as_fd()
    }
}

// ANCHOR: register
impl Reactor {
    /// Registers `source` once, for both directions, edge-triggered. Its
    /// readiness starts unknown (not ready); if it is ready now, the
    /// kernel reports that to the next wait, as it does for any change.
    pub fn register(&self, source: &impl AsFd) -> io::Result<Token> {
        let token = Token(self.next_token.get());
        self.next_token.set(token.0 + 1);
        let both = Interest::READABLE | Interest::WRITABLE;
        self.poll.registry().register(source, token, both)?;
        self.sources.borrow_mut().insert(token, Source::default());
        Ok(token)
    }

    /// Stops watching a source that is about to be closed.
    pub fn deregister(&self, source: &impl AsFd, token: Token) {
        if self.sources.borrow_mut().remove(&token).is_some() {
            // It fails only if `source` is not the registered fd (closed
            // already, or another one): a bug that a test should see.
            let result = self.poll.registry().deregister(source);
            debug_assert!(result.is_ok(), "deregister {token:?}: {result:?}");
        }
    }

    /// `Ready` if the kernel said `direction` is ready and no system call
    /// has said `WouldBlock` since; otherwise the task's waker goes in the
    /// slot, and `Pending` means "wake me when that changes". `waiter` is
    /// the calling future's entry in the slot: `None` until it first
    /// waits, and given to `stop_waiting` when the future is dropped.
    pub fn poll_ready(
        &self,
        token: Token,
        direction: Direction,
        waiter: &mut Option<WaiterKey>,
        cx: &mut Context<'_>,
    ) -> task::Poll<io::Result<()>> {
        let mut sources = self.sources.borrow_mut();
        let Some(source) = sources.get_mut(&token) else {
            // Deregistered while its stream lives: no event will come, so
            // `Pending` would never end, and `Ready` would have the caller
            // retry its system call for ever.
            return task::Poll::Ready(Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the reactor no longer watches this source",
            )));
        };
        let slot = source.slot(direction);
        if slot.ready {
            return task::Poll::Ready(Ok(()));
        }
        *waiter = Some(slot.wait(*waiter, cx.waker()));
        task::Poll::Pending
    }

    /// A future that waited is dropped: its entry, if no event has taken
    /// it out yet, goes.
    pub fn stop_waiting(&self, token: Token, direction: Direction, waiter: WaiterKey) {
        if let Some(source) = self.sources.borrow_mut().get_mut(&token) {
            source.slot(direction).waiters.remove(&waiter);
        }
    }

    /// A system call said `WouldBlock`: the readiness we kept is used up,
    /// and only a new event will bring it back.
    pub fn clear_ready(&self, token: Token, direction: Direction) {
        if let Some(source) = self.sources.borrow_mut().get_mut(&token) {
            source.slot(direction).ready = false;
        }
    }
}
// ANCHOR_END: register

// ANCHOR: turn
impl Reactor {
    /// One look at the kernel. If `nothing_to_run` says so, it sleeps in
    /// epoll until the earliest timer (for ever if there is none), an
    /// event, or a wake from another thread; otherwise it only looks (a
    /// zero timeout). Then it wakes the tasks whose direction became
    /// ready, and the timers that are due.
    pub fn turn(&self, nothing_to_run: impl FnOnce() -> bool) -> io::Result<()> {
        // The wakes so far have queued their tasks, and `nothing_to_run`
        // looks at the queue. A wake after `awake` makes `fall_asleep`
        // fail, or, once the fall succeeded, writes the eventfd.
        self.unpark.awake();
        // io_uring: the round's submissions go before the wait.
        self.ring_submit()?;
        let asleep = nothing_to_run() && self.unpark.fall_asleep();
        let timeout = if asleep {
            self.timers.borrow().time_to_next(Instant::now())
        } else {
            Some(Duration::ZERO)
        };
        let mut events = self.events.borrow_mut();
        let waited = self.poll.poll(&mut events, timeout);
        self.unpark.awake();
        waited?;

        let mut woken = Vec::new();
        let mut sources = self.sources.borrow_mut();
        for event in events.iter() {
            // The unpark's token, or a source dropped since the event came:
            // there is nothing to wake.
            let Some(source) = sources.get_mut(&event.token()) else {
                continue;
            };
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                source.reader.set_ready(&mut woken);
            }
            if event.is_writable() || event.is_error() {
                source.writer.set_ready(&mut woken);
            }
        }
        drop(sources);
        // io_uring: an event on the ring's token or not, read what came.
        self.ring_complete(&mut woken);
        let mut timers = self.timers.borrow_mut();
        let (fired, due): (Vec<_>, Vec<_>) = timers.expired(Instant::now()).into_iter().unzip();
        // Counts, and the book's picture: nothing here depends on them.
        self.trace.turn(timeout, asleep, &events, &fired, &timers);
        drop(events);
        drop(timers);
        // A waker may run any code, even code that registers a socket or
        // sets a timer: every borrow is let go first.
        woken.into_iter().chain(due).for_each(Waker::wake);
        Ok(())
    }
}
// ANCHOR_END: turn

// ANCHOR: ring_hooks
// io_uring (the page "From readiness to completion"): the ring's fd in
// the interest list under a token of its own, as the unpark's eventfd is;
// a completion makes it readable, so a sleeping wait ends.

/// The ring's token: sources count up from 1 and never reach it.
#[allow(dead_code)] // tests/async_client.rs never makes a ring
const RING: Token = Token(usize::MAX);

impl Reactor {
    /// A reactor with an io_uring beside its epoll.
    #[allow(dead_code)] // tests/async_client.rs never makes a ring
    pub fn with_ring() -> io::Result<Rc<Reactor>> {
        let ring = Ring::new(crate::uring::ENTRIES)?;
        let mut reactor = Reactor::new()?;
        let only = Rc::get_mut(&mut reactor).expect("not shared yet");
        only.poll
            .registry()
            .register(&ring, RING, Interest::READABLE)?;
        only.ring = Some(ring);
        Ok(reactor)
    }

    pub fn ring(&self) -> Option<&Ring> {
        self.ring.as_ref()
    }

    /// One `io_uring_enter` for whatever the round queued. A completion
    /// it brings at once makes the ring's fd readable, as any other does,
    /// so the wait after it does not sleep.
    fn ring_submit(&self) -> io::Result<()> {
        match &self.ring {
            Some(ring) => ring.submit(),
            None => Ok(()),
        }
    }

    fn ring_complete(&self, woken: &mut Vec<Waker>) {
        if let Some(ring) = &self.ring {
            ring.complete(woken);
        }
    }
}
// ANCHOR_END: ring_hooks
