//! Requests waiting for a connection, and the two limits that make them
//! wait: how many connections a worker keeps open (`--max-open`), and how
//! many it opens in one pass of its loop.

use std::collections::VecDeque;
use std::net::SocketAddr;

// ANCHOR: opens_per_pass
/// How many waiting requests one pass of the worker's loop opens, at its
/// start and when an answer frees a place, together. Opening is work like
/// reading: a worker that opened its thousands of connections in one go
/// would send none of their requests (and so start none of the server's
/// delays) until the last connect was made.
pub const OPENS_PER_PASS: usize = 64;
// ANCHOR_END: opens_per_pass

/// A request not yet sent, and whether it goes out on two connections.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) addr: SocketAddr,
    pub(crate) request: usize,
    pub(crate) path: String,
    pub(crate) hedged: bool,
}

/// The requests that wait, in order, and the count they wait on.
#[derive(Debug)]
pub(crate) struct Waiting {
    queue: VecDeque<Request>,
    max_open: usize,
    /// Connections that carry a request, open now (the endless sender's
    /// does not count).
    open: usize,
    /// What this pass of the loop may still open.
    allowance: usize,
}

impl Waiting {
    pub(crate) fn new() -> Waiting {
        Waiting {
            queue: VecDeque::new(),
            max_open: usize::MAX,
            open: 0,
            allowance: OPENS_PER_PASS,
        }
    }

    /// At most `max_open` connections open at once for requests (a hedged
    /// request needs two; when nothing else is open it goes anyway, even if
    /// the limit is 1); 0: no limit.
    pub(crate) fn limit(&mut self, max_open: usize) {
        self.max_open = if max_open == 0 { usize::MAX } else { max_open };
    }

    pub(crate) fn push(&mut self, request: Request) {
        self.queue.push_back(request);
    }

    /// A new pass of the loop: a new allowance.
    pub(crate) fn new_pass(&mut self) {
        self.allowance = OPENS_PER_PASS;
    }

    /// Whether a request waits and the limit on open connections lets it
    /// open (this pass's allowance aside).
    pub(crate) fn can_open(&self) -> bool {
        self.queue.front().is_some_and(|next| {
            let needed = if next.hedged { 2 } else { 1 };
            self.open + needed <= self.max_open || self.open == 0
        })
    }

    /// The next request to open now, if the limit and the allowance agree.
    pub(crate) fn pop(&mut self) -> Option<Request> {
        if self.allowance == 0 || !self.can_open() {
            return None;
        }
        self.allowance -= 1;
        self.queue.pop_front()
    }

    pub(crate) fn opened(&mut self) {
        self.open += 1;
    }

    pub(crate) fn closed(&mut self) {
        self.open -= 1;
    }

    pub(crate) fn open(&self) -> usize {
        self.open
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Request> {
        self.queue.iter()
    }
}
