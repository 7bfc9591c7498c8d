//! What a worker counts as it goes: the numbers the tests check and the
//! summary prints.

use crate::endless::Checksum;

/// What the workers counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events for connections (the waker's are not counted).
    pub events: usize,
    /// `epoll_ctl` calls: one to register each connection, one to
    /// deregister it, and one for the worker's waker. None on the event
    /// path. Counted by the registry, in the one function that calls it.
    pub epoll_ctl: usize,
    /// `read` calls on connections, the ones that said `WouldBlock`
    /// included. Counted by the worker's one read buffer, where they are
    /// made.
    pub reads: usize,
    /// Turns given to connections on the ready list.
    pub turns: usize,
    /// Ready-list entries and events whose connection had been closed.
    pub ignored: usize,
    /// Hedged twins closed because the other answered first.
    pub twins_closed: usize,
    /// Hedged connections that failed, or could not be opened, while their
    /// twin was still open.
    pub twins_failed: usize,
    /// The endless body, read and checksummed.
    pub endless: Checksum,
}

impl Stats {
    pub(crate) fn add(&mut self, other: &Stats) {
        self.events += other.events;
        self.epoll_ctl += other.epoll_ctl;
        self.reads += other.reads;
        self.turns += other.turns;
        self.ignored += other.ignored;
        self.twins_closed += other.twins_closed;
        self.twins_failed += other.twins_failed;
        if other.endless.bytes > 0 {
            self.endless = other.endless;
        }
    }
}
