//! A small event queue in the shape of mio's, built on the FFI in `ffi.rs`.
//!
//! `Poll` owns an epoll instance and waits on it; `Registry` says which file
//! descriptors it watches and for what; `Events` is the buffer a wait fills.

use std::ffi::c_int;
use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::ops::BitOr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr;
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
/// The bits `epoll_ctl` gets for an interest: every registration is
/// one-shot. After one event the kernel reports nothing more for the fd, to
/// any thread, until `reregister` re-arms it: whoever got the event has the
/// connection to itself.
///
/// `EPOLLET` stays from chapter 2, though under one-shot it changes nothing
/// the program does: one event disarms the fd with or without it, and a
/// re-arm checks readiness afresh either way. No test of behaviour fails
/// without it; only the one that reads the kernel's copy of the mask in
/// /proc sees it gone. It stays because it says what the code is written
/// for (every handler still reads and writes until `WouldBlock`, as
/// chapter 2's did), and so that this chapter's change to this line is the
/// one flag it adds.
fn epoll_flags(interest: Interest) -> u32 {
    interest.0 | ffi::EPOLLET | ffi::EPOLLONESHOT
}
// ANCHOR_END: epoll_flags

// ANCHOR: poll
/// An epoll instance, and the one place that waits on it. Several threads
/// may wait on one `Poll` at once (share it by reference or in an `Arc`).
#[derive(Debug)]
pub struct Poll {
    registry: Registry,
}

impl Poll {
    pub fn new() -> io::Result<Poll> {
        // SAFETY: epoll_create1 takes no pointers and accepts any flags value.
        let fd = syscall(unsafe { ffi::epoll_create1(ffi::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` was returned by the kernel just now, is open, and
        // nothing else holds it, so the OwnedFd is its only owner.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Poll {
            registry: Registry { epoll },
        })
    }

    /// Where sources are registered, reregistered and deregistered.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}
// ANCHOR_END: poll

// ANCHOR: wait
impl Poll {
    /// Waits until at least one registered source is ready or `timeout` has
    /// passed (`None` waits for ever), and fills `events` with what is ready.
    /// An empty `events` after `Ok` means the timeout passed.
    ///
    /// `&self`: any number of threads may wait at once, each with its own
    /// `Events`. A one-shot registration (what `register` and `reregister`
    /// make) hands its fd's event to one of them, and to no other until it
    /// is re-armed; a level-triggered fd left ready, like the waker's, can
    /// be handed to each of them.
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
        })
    }

    fn ctl(&self, op: c_int, fd: BorrowedFd<'_>, entry: Option<(Token, u32)>) -> io::Result<()> {
        let mut event = entry.map(|(token, flags)| ffi::EpollEvent {
            events: flags,
            data: token.0 as u64,
        });
        let event_ptr = event.as_mut().map_or(ptr::null_mut(), ptr::from_mut);
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
    /// and not one-shot, unlike `register`. Threads that share this epoll
    /// may then accept from it at once, which is safe, since each `accept`
    /// takes a connection of its own, and nothing needs re-arming.
    ///
    /// `exclusive` is for a listener that other epoll instances watch too,
    /// such as one shared by workers that each have a `Poll` of their own:
    /// when a connection arrives, the kernel then wakes one of those
    /// instances, or a few, not every one (`EPOLLEXCLUSIVE`). The kernel
    /// refuses it with `EPOLLONESHOT` or `EPOLLRDHUP` (a listener has no
    /// peer to hang up), and refuses `reregister` for it.
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
/// A stop latch: after one `wake`, every thread waiting on the `Poll` wakes,
/// and so does every later wait, for ever. That is how this chapter tells
/// its workers to stop. It is an eventfd that nothing ever reads, so once
/// written it stays readable, and it is the one registration here that is
/// level-triggered and not one-shot, so every wait reports it. Here the
/// thundering herd is what we want.
///
/// It borrows the name of mio's `Waker` but is not one: mio's is
/// edge-triggered, so each wake is one new event, and it can be woken
/// again and again. This one cannot be reset: a loop that went back to
/// waiting after a wake would find every wait returning at once, for ever,
/// and spin. Chapter 4 has a reusable waker.
/// (Nor is it `std::task::Waker`, which wakes an async task.)
#[derive(Debug)]
pub struct Waker {
    eventfd: File,
}

impl Waker {
    pub fn new(registry: &Registry, token: Token) -> io::Result<Waker> {
        // SAFETY: eventfd takes no pointers and accepts any flags value.
        let fd = syscall(unsafe { ffi::eventfd(0, ffi::EFD_CLOEXEC | ffi::EFD_NONBLOCK) })?;
        // SAFETY: `fd` was returned by the kernel just now and nothing else
        // holds it, so the File is its only owner.
        let eventfd = unsafe { File::from_raw_fd(fd) };
        let level_triggered = Interest::READABLE.0;
        registry.ctl(
            ffi::EPOLL_CTL_ADD,
            eventfd.as_fd(),
            Some((token, level_triggered)),
        )?;
        Ok(Waker { eventfd })
    }

    /// Makes the waker's token ready in every wait from now on.
    pub fn wake(&self) -> io::Result<()> {
        match (&self.eventfd).write(&1u64.to_ne_bytes()) {
            Ok(_) => Ok(()),
            // The counter is full, which means it was woken long ago.
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(error) => Err(error),
        }
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
