//! A small event queue in the shape of mio's, built on the FFI in `ffi.rs`.
//!
//! `Poll` owns an epoll instance and waits on it; `Registry` says which file
//! descriptors it watches and for what; `Events` is the buffer a wait fills.

use std::ffi::c_int;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::ops::BitOr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::ffi;

// ANCHOR: syscall
/// The C convention is to return -1 and leave the reason in `errno`; this
/// turns it into an `io::Result`, once, for every call below.
fn syscall(ret: c_int) -> io::Result<c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}
// ANCHOR_END: syscall

// ANCHOR: token
/// Names one registration. The kernel stores it and hands it back with every
/// event, so it is how an event finds the connection it is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Token(pub usize);
// ANCHOR_END: token

// ANCHOR: interest
/// What a registration waits for: readable, writable, or both.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Interest(u32);

impl Interest {
    /// Data to read, or the peer has closed its side. `EPOLLIN` alone
    /// reports a peer's close too, but only as "readable": the reader learns
    /// of it when a read returns 0. `EPOLLRDHUP` adds the news itself, so
    /// that an event after a peer's `shutdown(SHUT_WR)` or close says
    /// `is_read_closed` even while data is still unread (as mio asks too).
    pub const READABLE: Interest = Interest(ffi::EPOLLIN | ffi::EPOLLRDHUP);
    /// Room to write.
    pub const WRITABLE: Interest = Interest(ffi::EPOLLOUT);

    /// Both interests at once; `a | b` says the same.
    pub const fn add(self, other: Interest) -> Interest {
        Interest(self.0 | other.0)
    }

    pub const fn is_readable(self) -> bool {
        self.0 & ffi::EPOLLIN != 0
    }

    pub const fn is_writable(self) -> bool {
        self.0 & ffi::EPOLLOUT != 0
    }
}

impl BitOr for Interest {
    type Output = Interest;

    fn bitor(self, other: Interest) -> Interest {
        self.add(other)
    }
}

impl fmt::Debug for Interest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.is_readable(), self.is_writable()) {
            (true, true) => f.write_str("READABLE | WRITABLE"),
            (true, false) => f.write_str("READABLE"),
            (false, true) => f.write_str("WRITABLE"),
            (false, false) => f.write_str("(none)"),
        }
    }
}
// ANCHOR_END: interest

// ANCHOR: epoll_flags
/// The bits `epoll_ctl` gets for an interest: edge-triggered, as in
/// chapter 2, and no longer one-shot. One-shot kept threads that share an
/// epoll apart; here each worker owns its epoll, so no other thread can
/// take a connection's event, and a flag in user space keeps a connection
/// off the ready list twice (see `worker.rs`). A source is registered once
/// and never re-armed: no `epoll_ctl` on the event path.
fn epoll_flags(interest: Interest) -> u32 {
    interest.0 | ffi::EPOLLET
}
// ANCHOR_END: epoll_flags

// ANCHOR: poll
/// An epoll instance, and the one place that waits on it. In this chapter
/// each worker thread owns one.
#[derive(Debug)]
pub struct Poll {
    registry: Registry,
    /// Calls to `epoll_wait`, counted where the call is made.
    waits: AtomicUsize,
}

impl Poll {
    pub fn new() -> io::Result<Poll> {
        // SAFETY: epoll_create1 takes no pointers and accepts any flags value.
        let fd = syscall(unsafe { ffi::epoll_create1(ffi::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` was returned by the kernel just now, is open, and
        // nothing else holds it, so the OwnedFd is its only owner.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Poll {
            registry: Registry {
                epoll,
                ctl_calls: Arc::default(),
            },
            waits: AtomicUsize::new(0),
        })
    }

    /// Where sources are registered, reregistered and deregistered.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// How many times this `Poll` has called `epoll_wait`. Counted in the
    /// one function that makes the call, so that a count a test checks
    /// cannot drift from the calls made.
    pub fn waits(&self) -> usize {
        self.waits.load(Ordering::Relaxed)
    }
}
// ANCHOR_END: poll

// ANCHOR: wait
impl Poll {
    /// Waits until at least one registered source is ready or `timeout` has
    /// passed (`None` waits for ever), and fills `events` with what is ready.
    /// An empty `events` after `Ok` means the timeout passed.
    ///
    /// `&self`, as in chapter 3: the kernel lets several threads wait at
    /// once. Chapter 4 no longer does that (each worker waits on its own
    /// `Poll`), but a reactor shared by `Rc` can still wait through `&self`.
    pub fn poll(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        // A signal can end epoll_wait early with EINTR (even without a handler,
        // if the process is stopped and continued). That is not a failure, so
        // wait again, but only for the time that is left: retrying with the
        // whole timeout could wait for ever under a steady stream of signals.
        let deadline = timeout.and_then(|timeout| Instant::now().checked_add(timeout));
        let mut left = timeout;
        loop {
            match self.wait_once(events, timeout_ms(left)) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {
                    if let Some(deadline) = deadline {
                        left = Some(deadline.saturating_duration_since(Instant::now()));
                    }
                }
                result => return result,
            }
        }
    }

    fn wait_once(&self, events: &mut Events, timeout_ms: c_int) -> io::Result<()> {
        events.list.clear();
        self.waits.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the epoll fd is open while `self` lives. The pointer and
        // `capacity` describe the Vec's allocation, at least `capacity`
        // entries long, and the kernel writes no more entries than that.
        let ready = syscall(unsafe {
            ffi::epoll_wait(
                self.registry.epoll.as_raw_fd(),
                events.list.as_mut_ptr(),
                events.capacity,
                timeout_ms,
            )
        })?;
        // SAFETY: epoll_wait returned `ready` (0 ≤ ready ≤ capacity), having
        // written that many whole entries at the start of the buffer.
        unsafe { events.list.set_len(ready as usize) };
        Ok(())
    }
}
// ANCHOR_END: wait

/// The epoll fd itself, as mio offers it too: an epoll fd is readable while
/// it has events, so another event loop can watch it, and code with needs
/// of its own (the measurements) can register fds with other flags.
impl AsFd for Poll {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.registry.epoll.as_fd()
    }
}

// ANCHOR: timeout_ms
/// epoll_wait counts in whole milliseconds. Rounding 100 µs down would make
/// "wait a little" into "do not wait at all", and a loop that waits for a
/// deadline would spin through its last millisecond, so round up. A timeout
/// too long for a `c_int` (about 24.8 days) is clamped to the longest there
/// is: the caller wakes early, finds no events, and can wait again.
fn timeout_ms(timeout: Option<Duration>) -> c_int {
    match timeout {
        None => -1,
        Some(timeout) => {
            let ms = timeout.as_nanos().div_ceil(1_000_000);
            c_int::try_from(ms).unwrap_or(c_int::MAX)
        }
    }
}
// ANCHOR_END: timeout_ms

// ANCHOR: registry
/// Says which file descriptors an epoll instance watches, and for what.
#[derive(Debug)]
pub struct Registry {
    epoll: OwnedFd,
    /// Calls to `epoll_ctl` through this registry and its clones.
    ctl_calls: Arc<AtomicUsize>,
}

impl Registry {
    /// Starts watching `source`. Fails with `AlreadyExists` if it is watched.
    pub fn register(&self, source: &impl AsFd, token: Token, interest: Interest) -> io::Result<()> {
        let flags = epoll_flags(interest);
        self.ctl(ffi::EPOLL_CTL_ADD, source.as_fd(), Some((token, flags)))
    }

    /// Replaces the token and interest of a watched `source`, and re-arms it:
    /// if it is ready now, the next wait reports it.
    pub fn reregister(
        &self,
        source: &impl AsFd,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        let flags = epoll_flags(interest);
        self.ctl(ffi::EPOLL_CTL_MOD, source.as_fd(), Some((token, flags)))
    }

    /// Stops watching `source`. Fails with `NotFound` if it was not watched.
    pub fn deregister(&self, source: &impl AsFd) -> io::Result<()> {
        self.ctl(ffi::EPOLL_CTL_DEL, source.as_fd(), None)
    }

    /// A second handle on the same epoll instance (a `dup` of its fd), for
    /// code that registers sources but does not own the `Poll`.
    pub fn try_clone(&self) -> io::Result<Registry> {
        Ok(Registry {
            epoll: self.epoll.try_clone()?,
            ctl_calls: Arc::clone(&self.ctl_calls),
        })
    }

    /// How many times this registry and its clones have called
    /// `epoll_ctl`, counted in `ctl`, the one function that makes the call.
    pub fn ctl_calls(&self) -> usize {
        self.ctl_calls.load(Ordering::Relaxed)
    }

    fn ctl(&self, op: c_int, fd: BorrowedFd<'_>, entry: Option<(Token, u32)>) -> io::Result<()> {
        let mut event = entry.map(|(token, flags)| ffi::EpollEvent {
            events: flags,
            data: token.0 as u64,
        });
        let event_ptr = event.as_mut().map_or(ptr::null_mut(), ptr::from_mut);
        self.ctl_calls.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the epoll fd is open while `self` lives and `fd` is borrowed
        // for the whole call. `event_ptr` points at a live EpollEvent that the
        // kernel only reads, or is null for EPOLL_CTL_DEL, which ignores it.
        syscall(unsafe { ffi::epoll_ctl(self.epoll.as_raw_fd(), op, fd.as_raw_fd(), event_ptr) })?;
        Ok(())
    }
}
// ANCHOR_END: registry

// ANCHOR: register_listener
impl Registry {
    /// Starts watching a listening socket for connections: edge-triggered,
    /// like `register`, for reading only. Every `accept` takes a connection
    /// of its own, so nothing about a listener needs re-arming.
    ///
    /// `exclusive` is for a listener that other epoll instances watch too,
    /// such as one shared by workers that each have a `Poll` of their own:
    /// when a connection arrives, the kernel then wakes one of those
    /// instances, or a few, not every one (`EPOLLEXCLUSIVE`). The kernel
    /// refuses it with `EPOLLONESHOT` or `EPOLLRDHUP` (a listener has no
    /// peer to hang up), and refuses `reregister` for it: to stop and start
    /// again, `deregister` and register anew.
    pub fn register_listener(
        &self,
        listener: &impl AsFd,
        token: Token,
        exclusive: bool,
    ) -> io::Result<()> {
        let sharing = if exclusive { ffi::EPOLLEXCLUSIVE } else { 0 };
        let flags = ffi::EPOLLIN | ffi::EPOLLET | sharing;
        self.ctl(ffi::EPOLL_CTL_ADD, listener.as_fd(), Some((token, flags)))
    }
}
// ANCHOR_END: register_listener

// ANCHOR: waker
/// Wakes a thread blocked in [`Poll::poll`] from any other thread, as
/// often as needed: mio's `Waker`, which tokio uses to unpark its I/O
/// driver. (Not `std::task::Waker`, which wakes an async task; the futures
/// page puts the two together.) An eventfd, registered edge-triggered like
/// every source here: each write is a new edge, so the next wait reports
/// the waker's token, once (wakes before it are reported together), and
/// the count is never read back.
#[derive(Debug)]
pub struct Waker {
    eventfd: File,
    /// Writes to the eventfd, counted where they are made.
    writes: AtomicUsize,
}

impl Waker {
    pub fn new(registry: &Registry, token: Token) -> io::Result<Waker> {
        // SAFETY: eventfd takes no pointers and accepts any flags value.
        let fd = syscall(unsafe { ffi::eventfd(0, ffi::EFD_CLOEXEC | ffi::EFD_NONBLOCK) })?;
        // SAFETY: `fd` was returned by the kernel just now and nothing else
        // holds it, so the File is its only owner.
        let eventfd = unsafe { File::from_raw_fd(fd) };
        registry.register(&eventfd, token, Interest::READABLE)?;
        Ok(Waker {
            eventfd,
            writes: AtomicUsize::new(0),
        })
    }

    /// Makes the next wait (or the one under way) report the waker's token.
    pub fn wake(&self) -> io::Result<()> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        match (&self.eventfd).write(&1u64.to_ne_bytes()) {
            Ok(_) => Ok(()),
            // The counter is at its maximum after 2^64 - 2 wakes with no
            // read in between: empty it, and wake again.
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                let mut count = [0; 8];
                match (&self.eventfd).read(&mut count) {
                    Ok(_) => {}
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    Err(error) => return Err(error),
                }
                self.wake()
            }
            Err(error) => Err(error),
        }
    }

    /// How many times `wake` has written the eventfd.
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::Relaxed)
    }
}
// ANCHOR_END: waker

// ANCHOR: events
/// The buffer a wait fills: at most `capacity` events per wait. Whatever does
/// not fit stays ready in the kernel and comes back on the next wait.
#[derive(Debug)]
pub struct Events {
    list: Vec<ffi::EpollEvent>,
    capacity: c_int,
}

impl Events {
    /// # Panics
    ///
    /// If `capacity` is 0 (epoll_wait refuses an empty buffer) or more than
    /// `c_int::MAX`.
    pub fn with_capacity(capacity: usize) -> Events {
        let capacity = c_int::try_from(capacity)
            .ok()
            .filter(|&capacity| capacity > 0)
            .expect("Events capacity must be from 1 to c_int::MAX");
        Events {
            list: Vec::with_capacity(capacity as usize),
            capacity,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        self.list.iter().map(|entry| Event {
            readiness: entry.events,
            token: Token(entry.data as usize),
        })
    }
}
// ANCHOR_END: events

// ANCHOR: event
/// One ready source: its token and what it is ready for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Event {
    readiness: u32,
    token: Token,
}

impl Event {
    pub fn token(&self) -> Token {
        self.token
    }

    /// Data to read, or EOF to read (a read will not block either way).
    pub fn is_readable(&self) -> bool {
        self.readiness & ffi::EPOLLIN != 0
    }

    pub fn is_writable(&self) -> bool {
        self.readiness & ffi::EPOLLOUT != 0
    }

    /// The peer will send no more: reads reach EOF once the buffer is empty.
    pub fn is_read_closed(&self) -> bool {
        self.readiness & (ffi::EPOLLHUP | ffi::EPOLLRDHUP) != 0
    }

    /// An error is pending on the socket (a read or write will return it).
    pub fn is_error(&self) -> bool {
        self.readiness & ffi::EPOLLERR != 0
    }
}
// ANCHOR_END: event

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("token", &self.token)
            .field("readable", &self.is_readable())
            .field("writable", &self.is_writable())
            .field("read_closed", &self.is_read_closed())
            .field("error", &self.is_error())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_millisecond_timeouts_round_up() {
        assert_eq!(timeout_ms(Some(Duration::from_nanos(1))), 1);
        assert_eq!(timeout_ms(Some(Duration::from_micros(100))), 1);
        assert_eq!(timeout_ms(Some(Duration::from_micros(1_001))), 2);
    }

    #[test]
    fn whole_milliseconds_and_zero_are_kept() {
        assert_eq!(timeout_ms(Some(Duration::ZERO)), 0);
        assert_eq!(timeout_ms(Some(Duration::from_millis(250))), 250);
        assert_eq!(timeout_ms(None), -1);
    }

    #[test]
    fn huge_timeouts_are_clamped_not_wrapped() {
        assert_eq!(
            timeout_ms(Some(Duration::from_secs(30 * 24 * 3600))),
            c_int::MAX
        );
        assert_eq!(timeout_ms(Some(Duration::MAX)), c_int::MAX);
    }
}
