//! One worker thread's event loop: its own epoll, its own listener (or its
//! share of one), its own connections, the ready list, the timer queue,
//! and the cleanup list. The ready list gives every ready connection (and
//! the listener) a turn of at most one budget; the cleanup list takes a
//! closed connection's deadline out of the timer queue before its slot is
//! reused.

use std::collections::VecDeque;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use d_ready_list::slab::Slab;
use d_ready_list::{Events, Interest, Poll, Token, Waker};

use crate::accept::{self, Accepted};
use crate::connection::{Connection, Problem, Progress};
use crate::timers::Timers;

/// How many events one wait can return; more stay queued for the next wait.
const EVENTS_CAPACITY: usize = 256;

/// The waker's token and the listener's; no slab ever hands these out.
pub const WAKER: Token = Token(usize::MAX);
pub const LISTENER: Token = Token(usize::MAX - 1);

// ANCHOR: budget
/// How much one connection may read or write in one turn of the ready
/// list: a client that reads an endless body as fast as we make it, or
/// sends bytes without end, still leaves the others their turns.
pub const BUDGET: usize = 64 * 1024;
// ANCHOR_END: budget

/// How long a worker out of descriptors waits before it tries `accept4`
/// again, if none of its own connections closes first.
const RETRY_ACCEPT: Duration = Duration::from_millis(50);

/// What a worker did, reported when it stops.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub accepted: u64,
    /// Calls to `accept4`, counted where they are made (`accept.rs`).
    pub accept_calls: u64,
    /// Returns from `epoll_wait`, counted by the `Poll`.
    pub wakeups: u64,
    pub answered: u64,
    pub bad_requests: u64,
    /// Connections that ended in an error: a reset, a broken pipe.
    pub failed: u64,
    /// Times accepting stopped for want of a file descriptor.
    pub out_of_fds: u64,
    /// Connections closed because their request head was not whole in time.
    pub timed_out: u64,
}

// ANCHOR: worker
/// One thread's share of the server.
#[derive(Debug)]
pub struct Worker {
    id: usize,
    poll: Poll,
    events: Events,
    listener: Arc<TcpListener>,
    /// The listener is every worker's, watched with `EPOLLEXCLUSIVE`.
    shared: bool,
    connections: Slab<Connection>,
    /// Connections with work to do, and the listener when it has
    /// connections to accept, in the order they get their turns.
    ready_list: VecDeque<Token>,
    listener_queued: bool,
    /// Accepting stopped: no descriptor to spare, or `max_open` reached.
    /// A close, or the retry's deadline, starts it again.
    accept_paused: bool,
    /// When a worker out of descriptors tries again; in the timer queue.
    retry_at: Option<Instant>,
    /// Connections closed during this turn, with the deadline each still
    /// had in the timer queue.
    cleanup_list: Vec<(Token, Option<Instant>)>,
    timers: Timers,
    max_open: usize,
    head_timeout: Duration,
    complaints: Complaints,
    stats: Stats,
}
// ANCHOR_END: worker

impl Worker {
    /// A worker for `listener`, and the waker that stops it.
    pub fn new(
        id: usize,
        listener: Arc<TcpListener>,
        shared: bool,
        max_open: usize,
        head_timeout: Duration,
    ) -> io::Result<(Worker, Waker)> {
        let poll = Poll::new()?;
        poll.registry()
            .register_listener(&*listener, LISTENER, shared)?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let worker = Worker {
            id,
            poll,
            events: Events::with_capacity(EVENTS_CAPACITY),
            listener,
            shared,
            connections: Slab::new(),
            ready_list: VecDeque::new(),
            listener_queued: false,
            accept_paused: false,
            retry_at: None,
            cleanup_list: Vec::new(),
            timers: Timers::default(),
            max_open,
            head_timeout,
            complaints: Complaints::default(),
            stats: Stats::default(),
        };
        Ok((worker, waker))
    }

    // ANCHOR: run
    /// The loop: wait, note what the events say, act on the deadlines that
    /// passed, give each ready connection its turn, clean up. Returns when
    /// the waker is woken; an error here is the worker's own (its epoll,
    /// its listener), never one client's.
    pub fn run(mut self) -> io::Result<Stats> {
        loop {
            if self.wait()? {
                self.stats.wakeups = self.poll.waits() as u64;
                return Ok(self.stats);
            }
            for token in self.timers.expired(Instant::now()) {
                if token == LISTENER {
                    self.retry_at = None;
                    self.resume()?;
                    continue;
                }
                let Some(connection) = self.connections.get_mut(token) else {
                    continue;
                };
                match connection.deadline_passed() {
                    Ok(()) => queue(&mut self.ready_list, connection, token),
                    Err(problem) => self.end(token, problem)?,
                }
            }
            self.turn()?;
            self.clean_up();
        }
    }
    // ANCHOR_END: run

    // ANCHOR: wait
    /// Waits for events, or until the earliest deadline, or not at all
    /// while the ready list has work on it. True when woken to stop.
    fn wait(&mut self) -> io::Result<bool> {
        let timeout = if self.ready_list.is_empty() {
            self.timers.timeout(Instant::now())
        } else {
            Some(Duration::ZERO)
        };
        self.poll.poll(&mut self.events, timeout)?;
        for event in self.events.iter() {
            match event.token() {
                WAKER => return Ok(true),
                // Paused, accepting could only fail again; a close or the
                // retry brings the listener back.
                LISTENER => {
                    if !self.accept_paused && !self.listener_queued {
                        self.listener_queued = true;
                        self.ready_list.push_back(LISTENER);
                    }
                }
                // A closed connection's slot is not reused before the
                // turn in which it closed is over, so no token here can
                // name a connection other than its own.
                token => {
                    if let Some(connection) = self.connections.get_mut(token) {
                        connection.note(&event);
                        queue(&mut self.ready_list, connection, token);
                    }
                }
            }
        }
        Ok(false)
    }
    // ANCHOR_END: wait

    fn queue_listener(&mut self) {
        if !self.listener_queued {
            self.listener_queued = true;
            self.ready_list.push_back(LISTENER);
        }
    }

    // ANCHOR: turn
    /// One round: the listener accepts, and each connection on the ready
    /// list has one turn, at most a budget's worth of work. Every token on
    /// the list when the round starts is taken off it once.
    fn turn(&mut self) -> io::Result<()> {
        for _ in 0..self.ready_list.len() {
            let Some(token) = self.ready_list.pop_front() else {
                break;
            };
            if token == LISTENER {
                self.listener_queued = false;
                self.accept_all()?;
                continue;
            }
            // Closed earlier in this round (its deadline passed): its slot
            // answers no token until the round is over.
            let Some(connection) = self.connections.get_mut(token) else {
                continue;
            };
            let before = connection.deadline();
            let progress = connection.work(BUDGET);
            // The timer queue follows the connection's deadline: the
            // request head's until the request is read, then the answer's.
            let after = connection.deadline();
            if before != after {
                if let Some(deadline) = before {
                    self.timers.cancel(deadline, token);
                }
                if let Some(deadline) = after {
                    self.timers.insert(deadline, token);
                }
            }
            match progress {
                Ok(Progress::StillReady) => self.ready_list.push_back(token),
                Ok(Progress::Idle) => connection.queued = false,
                Ok(Progress::Done) => {
                    self.stats.answered += 1;
                    self.close(token)?;
                }
                Err(problem) => self.end(token, problem)?,
            }
        }
        Ok(())
    }
    // ANCHOR_END: turn

    /// Closes a connection that went wrong, and says why on stderr.
    fn end(&mut self, token: Token, problem: Problem) -> io::Result<()> {
        match problem {
            Problem::BadRequest => self.stats.bad_requests += 1,
            Problem::SlowRequest => {
                self.stats.timed_out += 1;
                let id = self.id;
                self.complaints.say(format_args!(
                    "server: worker {id}: a client's request was not whole after {:?}",
                    self.head_timeout
                ));
            }
            Problem::Io(error) => {
                self.stats.failed += 1;
                let what = match self.connections.get(token) {
                    Some(connection) if connection.is_endless() => "endless body",
                    _ => "connection",
                };
                let id = self.id;
                self.complaints.say(format_args!(
                    "server: worker {id}: a client's {what} ended: {error}"
                ));
            }
        }
        self.close(token)
    }

    // ANCHOR: accept_all
    /// Accepts until the queue is empty (`WouldBlock`): an edge-triggered
    /// listener reports the queue's next connection only when yet another
    /// one arrives. Stops early, and pauses, when the worker has
    /// `max_open` connections or the process has no descriptor to spare.
    fn accept_all(&mut self) -> io::Result<()> {
        loop {
            if self.max_open > 0 && self.connections.len() >= self.max_open {
                return self.pause();
            }
            match accept::accept(&self.listener, &mut self.stats.accept_calls)? {
                Accepted::Connection(stream) => self.add(stream),
                Accepted::Empty => return Ok(()),
                // Not `WouldBlock`: the connection is still in the queue,
                // and trying again before a descriptor is freed fails
                // again, as fast as the loop can go.
                Accepted::NoDescriptor(error) => {
                    if self.stats.out_of_fds == 0 {
                        eprintln!(
                            "server: worker {}: {error}; accepting again when a descriptor is free",
                            self.id
                        );
                    }
                    self.stats.out_of_fds += 1;
                    self.pause()?; // until a close frees a descriptor
                    // The limit is the process's: a worker with no
                    // connection of its own to close would wait for ever.
                    // Try again after a while, whoever freed one.
                    if self.retry_at.is_none() {
                        let at = Instant::now() + RETRY_ACCEPT;
                        self.retry_at = Some(at);
                        self.timers.insert(at, LISTENER);
                    }
                    return Ok(());
                }
            }
        }
    }
    // ANCHOR_END: accept_all

    // ANCHOR: pause
    /// Stops accepting. A listener that other workers watch too is taken
    /// out of this worker's epoll: with `EPOLLEXCLUSIVE` the kernel may
    /// hand a connection's one wake-up to this worker alone, and, the
    /// listener being edge-triggered, a paused worker that ignored it
    /// would leave the connection waiting for the next one. (An exclusive
    /// registration cannot be changed with `EPOLL_CTL_MOD`, only removed.)
    fn pause(&mut self) -> io::Result<()> {
        if !self.accept_paused {
            self.accept_paused = true;
            if self.shared {
                self.poll.registry().deregister(&*self.listener)?;
            }
        }
        Ok(())
    }

    /// Starts accepting again: the listener back in the epoll if it was
    /// taken out, and on the ready list, for the connections that came
    /// while the worker was paused made no edge it will see.
    fn resume(&mut self) -> io::Result<()> {
        if self.accept_paused {
            self.accept_paused = false;
            if self.shared {
                self.poll
                    .registry()
                    .register_listener(&*self.listener, LISTENER, true)?;
            }
        }
        self.queue_listener();
        Ok(())
    }
    // ANCHOR_END: pause

    // ANCHOR: add
    /// Registers a new connection, once, for both directions and
    /// edge-triggered: from here to its close it costs no more `epoll_ctl`.
    /// Its request head is due by `head_timeout` from now.
    fn add(&mut self, stream: TcpStream) {
        let deadline = Instant::now() + self.head_timeout;
        let token = self.connections.insert(Connection::new(stream, deadline));
        let connection = self.connections.get(token).expect("just inserted");
        let both = Interest::READABLE | Interest::WRITABLE;
        if let Err(error) = self
            .poll
            .registry()
            .register(&connection.stream, token, both)
        {
            // The kernel short of memory, or the user's limit on watched
            // fds reached (ENOMEM, ENOSPC): this one client goes.
            self.connections.remove(token);
            self.connections.release(token);
            self.stats.failed += 1;
            let id = self.id;
            self.complaints.say(format_args!(
                "server: worker {id}: cannot watch a client: {error}"
            ));
            return;
        }
        self.timers.insert(deadline, token);
        self.stats.accepted += 1;
    }
    // ANCHOR_END: add

    // ANCHOR: close
    /// Deregisters a connection while its fd is still ours, takes it out of
    /// its slot (which then answers no token, and is not reused yet), and
    /// puts it on the cleanup list. Dropping it closes the fd, and frees a
    /// descriptor: a paused listener may accept again.
    fn close(&mut self, token: Token) -> io::Result<()> {
        let Some(connection) = self.connections.remove(token) else {
            return Ok(());
        };
        if let Err(error) = self.poll.registry().deregister(&connection.stream) {
            // The close below takes the fd out of the epoll all the same.
            let id = self.id;
            self.complaints.say(format_args!(
                "server: worker {id}: cannot unwatch a client: {error}"
            ));
        }
        self.cleanup_list.push((token, connection.deadline()));
        drop(connection);
        if self.accept_paused {
            self.resume()?;
        }
        Ok(())
    }

    /// After the round: nothing may name a closed connection when its slot
    /// is reused, or the next connection there would inherit it. The
    /// timer queue may: a deadline, which would answer the new client at
    /// the old one's time, or end it at the old one's head deadline. (The
    /// ready list cannot: every token on it at the start of a turn is
    /// taken off during the turn, and one whose slot is empty is skipped.)
    fn clean_up(&mut self) {
        for (token, deadline) in self.cleanup_list.drain(..) {
            if let Some(deadline) = deadline {
                self.timers.cancel(deadline, token);
            }
            self.connections.release(token);
        }
    }
    // ANCHOR_END: close
}

/// Puts a connection at the back of the ready list, unless it is on it.
fn queue(ready_list: &mut VecDeque<Token>, connection: &mut Connection, token: Token) {
    if !connection.queued {
        connection.queued = true;
        ready_list.push_back(token);
    }
}

/// The lines a worker writes about its clients, at most one a second, so
/// that a flood of failing clients cannot flood stderr too.
#[derive(Debug, Default)]
struct Complaints {
    last: Option<Instant>,
    held: u64,
}

impl Complaints {
    fn say(&mut self, line: std::fmt::Arguments<'_>) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < Duration::from_secs(1))
        {
            self.held += 1;
            return;
        }
        if self.held > 0 {
            eprintln!("{line} (and {} more since the last line)", self.held);
        } else {
            eprintln!("{line}");
        }
        self.last = Some(now);
        self.held = 0;
    }
}
