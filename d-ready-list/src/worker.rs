//! One worker thread's event loop: its own epoll, its own connections, and
//! the two lists this chapter is about. The ready list gives every ready
//! connection a turn of at most one budget's work; the cleanup list lets a
//! connection be closed while the round may still name it.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use crate::connection::{Budget, Connection, Progress, ReadBuffer};
use crate::error::{Error, Problem};
use crate::http::Response;
use crate::opening::{Request, Waiting};
use crate::poll::{Events, Interest, Poll, Registry, Token};
use crate::slab::Slab;
use crate::stats::Stats;

pub use crate::opening::OPENS_PER_PASS;

/// How many events one wait can return; more stay queued for the next wait.
const EVENTS_CAPACITY: usize = 64;

/// The waker's token; no slab ever hands it out.
pub const WAKER: Token = Token(usize::MAX);

/// One response, as it was reported.
#[derive(Debug, Clone)]
pub struct Completed {
    /// Which request: its place in `Config::paths`.
    pub request: usize,
    pub path: String,
    /// From the start of the run to the moment the response was complete.
    pub elapsed: Duration,
    pub body: Vec<u8>,
}

// ANCHOR: worker
/// One thread's share of the work.
#[derive(Debug)]
pub struct Worker {
    poll: Poll,
    events: Events,
    connections: Slab<Connection>,
    /// Connections with work to do, in the order they get their turns.
    ready_list: VecDeque<Token>,
    /// Connections closed during this round. After it, their tokens leave
    /// the ready list and their slots are freed.
    cleanup_list: Vec<Token>,
    waiting: Waiting,
    budget: Budget,
    read_buffer: ReadBuffer,
    start: Instant,
    /// Requests with a connection, not yet answered (a hedged pair counts
    /// once).
    remaining: usize,
    stats: Stats,
}

/// What a wait brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Events, or none before the timeout: either way, run a round.
    Ready,
    /// The waker: stop.
    Woken,
}
// ANCHOR_END: worker

impl Worker {
    pub fn new(start: Instant, budget: Budget) -> io::Result<Worker> {
        Ok(Worker {
            poll: Poll::new()?,
            events: Events::with_capacity(EVENTS_CAPACITY),
            connections: Slab::new(),
            ready_list: VecDeque::new(),
            cleanup_list: Vec::new(),
            waiting: Waiting::new(),
            budget,
            read_buffer: ReadBuffer::new(),
            start,
            remaining: 0,
            stats: Stats::default(),
        })
    }

    pub fn registry(&self) -> &Registry {
        self.poll.registry()
    }

    /// Keeps at most `max_open` connections open at once for requests (a
    /// hedged request needs two; when nothing else is open it goes anyway,
    /// even if the limit is 1; the endless sender does not count); requests
    /// beyond that wait for one to finish. 0 means no limit.
    pub fn limit_open(&mut self, max_open: usize) {
        self.waiting.limit(max_open);
    }

    /// Adds request number `request` to the requests waiting for a
    /// connection: [`open_waiting`](Worker::open_waiting) opens it.
    pub fn queue(&mut self, addr: SocketAddr, request: usize, path: &str, hedged: bool) {
        self.waiting.push(Request {
            addr,
            request,
            path: path.to_string(),
            hedged,
        });
    }

    /// Starts a pass of the loop: opens connections for waiting requests,
    /// up to `OPENS_PER_PASS` in this pass, while the limit allows.
    pub fn open_waiting(&mut self) -> Result<(), Error> {
        self.waiting.new_pass();
        self.open_allowed()
    }

    /// Opens what the limit and this pass's allowance let through.
    fn open_allowed(&mut self) -> Result<(), Error> {
        while let Some(next) = self.waiting.pop() {
            if next.hedged {
                self.open_hedged(next.addr, next.request, &next.path)?;
            } else {
                self.open(next.addr, next.request, &next.path)?;
            }
        }
        Ok(())
    }

    /// Opens a connection for request number `request`, now, and registers
    /// it.
    pub fn open(&mut self, addr: SocketAddr, request: usize, path: &str) -> Result<Token, Error> {
        let connection = Connection::open(addr, request, path, false)
            .map_err(|source| Error::Connect { addr, source })?;
        let token = self.add(connection)?;
        self.remaining += 1;
        Ok(token)
    }

    // ANCHOR: open_hedged
    /// Opens two connections for the same request, each the other's twin.
    /// If one cannot even be opened (no free port, too many open files),
    /// the other carries the request alone, as if its twin had failed
    /// later; only when both fail does the request.
    pub fn open_hedged(
        &mut self,
        addr: SocketAddr,
        request: usize,
        path: &str,
    ) -> Result<Vec<Token>, Error> {
        let first = Connection::open(addr, request, path, false);
        let second = Connection::open(addr, request, path, false);
        let tokens = match (first, second) {
            (Ok(first), Ok(second)) => {
                let tokens = [self.add(first)?, self.add(second)?];
                for (token, twin) in [(tokens[0], tokens[1]), (tokens[1], tokens[0])] {
                    if let Some(connection) = self.connections.get_mut(token) {
                        connection.twin = Some(twin);
                    }
                }
                tokens.to_vec()
            }
            (Ok(mut alone), Err(error)) | (Err(error), Ok(mut alone)) => {
                alone.twin_problem = Some(Problem::Connect(error));
                self.stats.twins_failed += 1;
                vec![self.add(alone)?]
            }
            (Err(source), Err(_)) => return Err(Error::Connect { addr, source }),
        };
        self.remaining += 1;
        Ok(tokens)
    }
    // ANCHOR_END: open_hedged

    /// Opens the endless sender's connection; it never counts as an answer.
    pub fn open_endless(&mut self, addr: SocketAddr, request: usize) -> Result<Token, Error> {
        let path = crate::endless::ENDLESS_PATH;
        let connection = Connection::open(addr, request, path, true)
            .map_err(|source| Error::Connect { addr, source })?;
        self.add(connection)
    }

    // ANCHOR: add
    /// Registers a new connection, once, for both directions and
    /// edge-triggered: from here to its close it costs no more `epoll_ctl`.
    fn add(&mut self, connection: Connection) -> Result<Token, Error> {
        let for_a_request = connection.endless().is_none();
        let token = self.connections.insert(connection);
        let connection = self.connections.get(token).expect("just inserted");
        let both = Interest::READABLE | Interest::WRITABLE;
        if let Err(error) = self
            .poll
            .registry()
            .register(&connection.stream, token, both)
        {
            // Not watched, so not kept: no token for it is anywhere yet.
            self.connections.remove(token);
            self.connections.release(token);
            return Err(Error::Poll(error));
        }
        if for_a_request {
            self.waiting.opened();
        }
        Ok(token)
    }
    // ANCHOR_END: add

    /// Requests not yet answered, whether they have a connection yet or not.
    pub fn remaining(&self) -> usize {
        self.remaining + self.waiting.len()
    }

    /// Connections that carry a request, open now.
    pub fn open_for_requests(&self) -> usize {
        self.waiting.open()
    }

    /// Open connections whose request is not all sent yet.
    pub fn sending(&self) -> usize {
        self.connections.values().filter(|c| c.is_sending()).count()
    }

    /// What this worker counted; its system calls are counted where they
    /// are made (`Registry`, `ReadBuffer`).
    pub fn stats(&self) -> Stats {
        Stats {
            epoll_ctl: self.poll.registry().ctl_calls(),
            reads: self.read_buffer.reads(),
            ..self.stats
        }
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

/// The worker's epoll fd, so that a test can read the kernel's own view of
/// its interest list in /proc.
impl AsFd for Worker {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.poll.as_fd()
    }
}

impl Worker {
    // ANCHOR: wait
    /// Waits for events and puts each connection they name at the back of
    /// the ready list, unless it is on it already. While the list has work
    /// on it, or requests wait to be opened, this does not wait: it only
    /// collects what else became ready, so that a connection that is never
    /// done cannot keep the others from being heard.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<Wait, Error> {
        let timeout = if self.ready_list.is_empty() && !self.waiting.can_open() {
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
            match self.connections.get_mut(event.token()) {
                Some(connection) => {
                    connection.note(&event);
                    // An edge for a connection already on the list only
                    // adds to what its turn will find.
                    if !connection.queued {
                        connection.queued = true;
                        self.ready_list.push_back(event.token());
                    }
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
    /// One round: each connection on the ready list, in order, has one
    /// turn, at most a budget's worth of work. Finished responses go to `done`.
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
                // in this round): whatever readiness it had is about a socket
                // that is gone.
                self.stats.ignored += 1;
                continue;
            };
            self.stats.turns += 1;
            let progress = connection.work(self.budget, &mut self.read_buffer);
            if let Some(endless) = connection.endless() {
                self.stats.endless = endless;
            }
            match progress {
                Ok(Progress::StillReady) => self.ready_list.push_back(token),
                // Off the list until its next edge: no system call.
                Ok(Progress::Idle) => connection.queued = false,
                Ok(Progress::Complete(response)) => done.push(self.complete(token, response)?),
                Err(problem) => self.fail_one(token, problem)?,
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
    /// this same round. Then a waiting request may take the place: it is
    /// opened in the middle of the round.
    fn complete(&mut self, token: Token, response: Response) -> Result<Completed, Error> {
        let connection = self.close(token)?.expect("the connection just answered");
        if let Some(twin) = connection.twin {
            if self.close(twin)?.is_some() {
                self.stats.twins_closed += 1;
            }
        }
        self.remaining -= 1;
        self.open_allowed()?;
        Ok(Completed {
            request: connection.index,
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
        // Closing the last fd of a socket would end its registration too,
        // but a copy made by `dup` or by a `fork` (any thread's, even one
        // that only spawns a program) would keep it alive. So deregister,
        // and do it while the fd is still ours: once closed, its number can
        // be handed to the next socket we open.
        self.poll
            .registry()
            .deregister(&connection.stream)
            .map_err(Error::Poll)?;
        self.cleanup_list.push(token);
        let connection = self.connections.remove(token);
        if connection.as_ref().is_some_and(|c| c.endless().is_none()) {
            self.waiting.closed();
        }
        Ok(connection)
    }

    /// After the round: the closed connections' tokens leave the ready list
    /// (one pushed back earlier in the round may still be there), and only
    /// then are their slots freed. A slot is reused once no token for it
    /// is left, so a token always means the connection it was given to.
    /// One pass over the list: a removed slot answers no token.
    fn clean_up(&mut self) {
        if self.cleanup_list.is_empty() {
            return;
        }
        let connections = &self.connections;
        self.ready_list
            .retain(|&token| connections.get(token).is_some());
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
            .filter(|connection| connection.endless().is_none())
            .map(|connection| (connection.index, connection.path.clone()));
        let waiting = self
            .waiting
            .iter()
            .map(|waiting| (waiting.request, waiting.path.clone()));
        let missing: BTreeMap<usize, String> = open.chain(waiting).collect();
        missing.into_iter().collect()
    }
}
