//! One worker thread's event loop: its own epoll, its own connections, and
//! the two lists this chapter is about. The ready list gives every ready
//! connection a turn of at most one budget's work; the cleanup list lets a
//! connection be closed while the turn may still name it.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::client::{Budget, Completed, ENDLESS_PATH, Error, Problem, Stats, WAKER};
use crate::connection::{Body, Connection, Progress};
use crate::http::Response;
use crate::slab::Slab;
use crate::{Events, Poll, Registry, Token};

/// How many events one wait can return; more stay queued for the next wait.
const EVENTS_CAPACITY: usize = 64;

/// How many waiting requests one pass of the loop opens. Opening is work
/// like reading: a worker that opened its thousands of connections in one
/// go would send none of their requests (and so start none of the
/// server's delays) until the last connect was made.
pub const OPENS_PER_TURN: usize = 64;

// ANCHOR: worker
/// One thread's share of the work.
#[derive(Debug)]
pub struct Worker {
    poll: Poll,
    events: Events,
    connections: Slab<Connection>,
    /// Connections with work to do, in the order they get their turns.
    ready_list: VecDeque<Token>,
    /// Connections closed during this turn. After it, their tokens leave
    /// the ready list and their slots are freed.
    cleanup_list: Vec<Token>,
    /// Requests that wait for a connection while `max_open` are open.
    waiting: VecDeque<Request>,
    max_open: usize,
    /// Connections that carry a request: all but the endless sender's.
    open_for_requests: usize,
    budget: Budget,
    start: Instant,
    /// Requests with a connection, not yet answered (a hedged pair counts
    /// once).
    remaining: usize,
    stats: Stats,
}

/// What a wait brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Events, or none before the timeout: either way, take a turn.
    Ready,
    /// The waker: stop.
    Woken,
}
// ANCHOR_END: worker

/// A request not yet sent, and whether it goes out on two connections.
#[derive(Debug, Clone)]
struct Request {
    addr: SocketAddr,
    request: usize,
    path: String,
    hedged: bool,
}

impl Worker {
    pub fn new(start: Instant, budget: Budget) -> io::Result<Worker> {
        Ok(Worker {
            poll: Poll::new()?,
            events: Events::with_capacity(EVENTS_CAPACITY),
            connections: Slab::new(),
            ready_list: VecDeque::new(),
            cleanup_list: Vec::new(),
            waiting: VecDeque::new(),
            max_open: usize::MAX,
            open_for_requests: 0,
            budget,
            start,
            remaining: 0,
            stats: Stats::default(),
        })
    }

    /// Keeps at most `max_open` connections open at once for requests (a
    /// hedged request needs two, and goes alone if the limit is 1; the
    /// endless sender does not count); requests beyond that wait for one to
    /// finish. 0 means no limit.
    pub fn limit_open(&mut self, max_open: usize) {
        self.max_open = if max_open == 0 { usize::MAX } else { max_open };
    }

    pub fn registry(&self) -> &Registry {
        self.poll.registry()
    }

    /// Adds request number `request` to the requests waiting for a
    /// connection: [`open_waiting`](Worker::open_waiting) opens it.
    pub fn queue(&mut self, addr: SocketAddr, request: usize, path: &str, hedged: bool) {
        self.waiting.push_back(Request {
            addr,
            request,
            path: path.to_string(),
            hedged,
        });
    }

    /// Opens connections for up to `OPENS_PER_TURN` waiting requests, while
    /// the limit allows. The worker's loop calls it before each wait, and
    /// `complete` when a response frees a place.
    pub fn open_waiting(&mut self) -> Result<(), Error> {
        for _ in 0..OPENS_PER_TURN {
            if !self.can_open() {
                break;
            }
            let next = self.waiting.pop_front().expect("can_open looked");
            if next.hedged {
                self.open_hedged(next.addr, next.request, &next.path)?;
            } else {
                self.open(next.addr, next.request, &next.path)?;
            }
        }
        Ok(())
    }

    /// Whether a request waits, and the limit lets it open now.
    fn can_open(&self) -> bool {
        self.waiting.front().is_some_and(|next| {
            let needed = if next.hedged { 2 } else { 1 };
            self.open_for_requests + needed <= self.max_open || self.open_for_requests == 0
        })
    }

    /// Connections that carry a request, open now.
    pub fn open_for_requests(&self) -> usize {
        self.open_for_requests
    }

    /// Opens a connection for request number `request`, now, and registers
    /// it.
    pub fn open(&mut self, addr: SocketAddr, request: usize, path: &str) -> Result<Token, Error> {
        let token = self.add(Connection::open(addr, request, path, Body::Keep)?)?;
        self.remaining += 1;
        Ok(token)
    }

    /// Opens two connections for the same request, each the other's twin.
    pub fn open_hedged(
        &mut self,
        addr: SocketAddr,
        request: usize,
        path: &str,
    ) -> Result<(Token, Token), Error> {
        let first = self.open(addr, request, path)?;
        let second = self.add(Connection::open(addr, request, path, Body::Keep)?)?;
        for (token, twin) in [(first, second), (second, first)] {
            if let Some(connection) = self.connections.get_mut(token) {
                connection.twin = Some(twin);
            }
        }
        Ok((first, second))
    }

    /// Opens the endless sender's connection; it never counts as an answer.
    pub fn open_endless(&mut self, addr: SocketAddr, request: usize) -> Result<Token, Error> {
        let body = Body::endless();
        self.add(Connection::open(addr, request, ENDLESS_PATH, body)?)
    }

    fn add(&mut self, connection: Connection) -> Result<Token, Error> {
        let interest = connection.interest();
        if matches!(connection.body, Body::Keep) {
            self.open_for_requests += 1;
        }
        let token = self.connections.insert(connection);
        let connection = self.connections.get(token).expect("just inserted");
        self.poll
            .registry()
            .register(&connection.stream, token, interest)
            .map_err(Error::Poll)?;
        Ok(token)
    }

    /// Requests not yet answered, whether they have a connection yet or not.
    pub fn remaining(&self) -> usize {
        self.remaining + self.waiting.len()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The connections waiting for their turn, in order.
    pub fn ready_list(&self) -> &VecDeque<Token> {
        &self.ready_list
    }

    /// Whether `token` names an open connection.
    pub fn is_open(&self, token: Token) -> bool {
        self.connections.get(token).is_some()
    }
}

impl Worker {
    // ANCHOR: wait
    /// Waits for events and puts each connection they name at the back of
    /// the ready list. While the list has work on it, or requests wait to
    /// be opened, this does not wait: it only collects what else became
    /// ready, so that a connection that is never done cannot keep the others
    /// from being heard.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<Wait, Error> {
        let timeout = if self.ready_list.is_empty() && !self.can_open() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        self.poll
            .poll(&mut self.events, timeout)
            .map_err(Error::Poll)?;
        let mut woken = false;
        for event in self.events.iter() {
            if event.token() == WAKER {
                woken = true;
                continue;
            }
            self.stats.events += 1;
            // One-shot: a connection reports nothing more until it is
            // re-armed, and it is re-armed only as it leaves the list, so it
            // is never on the list twice.
            match self.connections.get_mut(event.token()) {
                Some(connection) => {
                    connection.note(&event);
                    self.ready_list.push_back(event.token());
                }
                None => self.stats.ignored += 1,
            }
        }
        Ok(if woken { Wait::Woken } else { Wait::Ready })
    }
    // ANCHOR_END: wait
}

impl Worker {
    // ANCHOR: turn
    /// One turn: each connection on the ready list, in order, does at most a
    /// budget's worth of work. Finished responses go to `done`.
    pub fn turn(&mut self, done: &mut Vec<Completed>) -> Result<(), Error> {
        let result = self.take_turns(done);
        self.clean_up();
        result
    }

    fn take_turns(&mut self, done: &mut Vec<Completed>) -> Result<(), Error> {
        for _ in 0..self.ready_list.len() {
            let Some(token) = self.ready_list.pop_front() else {
                break;
            };
            let Some(connection) = self.connections.get_mut(token) else {
                // Closed since it was put on the list (by its twin, earlier
                // in this turn): whatever readiness it had is about a socket
                // that is gone.
                self.stats.ignored += 1;
                continue;
            };
            self.stats.turns += 1;
            let progress = match connection.work(self.budget) {
                Ok(progress) => progress,
                Err(problem) => {
                    self.fail_one(token, problem)?;
                    continue;
                }
            };
            match progress {
                Progress::StillReady => self.ready_list.push_back(token),
                Progress::Idle => {
                    // Off the list, so listen again: re-arm.
                    let interest = connection.interest();
                    self.poll
                        .registry()
                        .reregister(&connection.stream, token, interest)
                        .map_err(Error::Poll)?;
                    self.stats.rearms += 1;
                }
                Progress::Checksummed { bytes, crc } => {
                    self.stats.endless_bytes += bytes as u64;
                    self.stats.endless_crc = crc;
                    self.ready_list.push_back(token);
                }
                Progress::Complete(response) => done.push(self.complete(token, response)?),
            }
        }
        Ok(())
    }
    // ANCHOR_END: turn
}

impl Worker {
    // ANCHOR: complete
    /// A response is complete: close its connection and, if it was hedged,
    /// its twin, which may be anywhere on the ready list, even later in
    /// this same turn. Then a waiting request may take a connection: it is
    /// opened in the middle of the turn.
    fn complete(&mut self, token: Token, response: Response) -> Result<Completed, Error> {
        let connection = self.close(token)?.expect("the connection just answered");
        if let Some(twin) = connection.twin {
            if self.close(twin)?.is_some() {
                self.stats.twins_closed += 1;
            }
        }
        self.remaining -= 1;
        self.open_waiting()?;
        Ok(Completed {
            request: connection.request,
            path: connection.path,
            elapsed: self.start.elapsed(),
            body: response.body,
        })
    }
    // ANCHOR_END: complete

    // ANCHOR: fail_one
    /// A connection failed. If it has a twin still open, only this one is
    /// closed: the twin may still answer, which is what hedging is for. The
    /// request fails when its last connection does, naming both problems.
    fn fail_one(&mut self, token: Token, problem: Problem) -> Result<(), Error> {
        let mut failed = self.close(token)?.expect("the connection just failed");
        let twin = failed.twin.and_then(|twin| self.connections.get_mut(twin));
        match (twin, failed.twin_problem.take()) {
            (Some(twin), _) => {
                twin.twin = None;
                twin.twin_problem = Some(problem);
                self.stats.twins_failed += 1;
                Ok(())
            }
            (None, Some(first)) => Err(failed.error(Problem::Hedged {
                first: Box::new(first),
                second: Box::new(problem),
            })),
            (None, None) => Err(failed.error(problem)),
        }
    }
    // ANCHOR_END: fail_one

    // ANCHOR: close
    /// Deregisters a connection and marks its slot removed, so that a token
    /// for it, later on the ready list, finds nothing; and puts it on the
    /// cleanup list. Returns it: its fd is closed when the caller drops it.
    fn close(&mut self, token: Token) -> Result<Option<Connection>, Error> {
        let Some(connection) = self.connections.get(token) else {
            return Ok(None);
        };
        // Deregister while the fd is still ours: once closed, its number can
        // be handed to the next socket we open.
        self.poll
            .registry()
            .deregister(&connection.stream)
            .map_err(Error::Poll)?;
        self.cleanup_list.push(token);
        let connection = self.connections.remove(token);
        if connection
            .as_ref()
            .is_some_and(|c| matches!(c.body, Body::Keep))
        {
            self.open_for_requests -= 1;
        }
        Ok(connection)
    }

    /// After the turn: the closed connections' tokens leave the ready list
    /// (one pushed back earlier in the turn may still be there), and only
    /// then are their slots freed. A slot is reused once no token for it
    /// is left, so a token always means the connection it was given to.
    fn clean_up(&mut self) {
        let closed = &self.cleanup_list;
        if !closed.is_empty() {
            self.ready_list.retain(|token| !closed.contains(token));
        }
        for token in self.cleanup_list.drain(..) {
            self.connections.release(token);
        }
    }
    // ANCHOR_END: close

    /// The requests not yet answered, each once, in order: those with a
    /// connection, and those waiting for one.
    pub(crate) fn missing(&self) -> Vec<(usize, String)> {
        let open = self
            .connections
            .values()
            .filter(|connection| matches!(connection.body, Body::Keep))
            .map(|connection| (connection.request, connection.path.clone()));
        let waiting = self
            .waiting
            .iter()
            .map(|waiting| (waiting.request, waiting.path.clone()));
        let missing: BTreeMap<usize, String> = open.chain(waiting).collect();
        missing.into_iter().collect()
    }
}
