//! One worker thread's event loop: its own epoll, its own listener (or its
//! share of one), its own connections, and the chapter's two lists. The
//! ready list gives every ready connection (and the listener) a turn of at
//! most one budget; the cleanup list takes a closed connection's token out
//! of the ready list and the timer queue before its slot is reused.

use std::collections::VecDeque;
use std::io;
use std::net::TcpListener;
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
/// How much one connection may write in one turn of the ready list: a
/// client that reads an endless body as fast as we make it still leaves
/// the others their turns.
pub const WRITE_BUDGET: usize = 64 * 1024;
// ANCHOR_END: budget

/// What a worker did, reported when it stops.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub accepted: u64,
    /// Calls to `accept4`, counted where they are made (`accept.rs`).
    pub accept_calls: u64,
    /// Returns from `epoll_wait`.
    pub wakeups: u64,
    pub answered: u64,
    pub bad_requests: u64,
    /// Connections that ended in an error: a reset, a broken pipe.
    pub failed: u64,
    /// Times accepting stopped for want of a file descriptor.
    pub out_of_fds: u64,
}

// ANCHOR: worker
/// One thread's share of the server.
#[derive(Debug)]
pub struct Worker {
    id: usize,
    poll: Poll,
    events: Events,
    listener: Arc<TcpListener>,
    connections: Slab<Connection>,
    /// Connections with work to do, and the listener when it has
    /// connections to accept, in the order they get their turns.
    ready_list: VecDeque<Token>,
    listener_queued: bool,
    /// Accepting stopped: no descriptor to spare, or `max_open` reached.
    /// The next close starts it again.
    accept_paused: bool,
    /// Connections closed during this turn, with the deadline each still
    /// had in the timer queue.
    cleanup_list: Vec<(Token, Option<Instant>)>,
    timers: Timers,
    max_open: usize,
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
    ) -> io::Result<(Worker, Waker)> {
        let poll = Poll::new()?;
        accept::register_listener(&poll, &listener, LISTENER, shared)?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let worker = Worker {
            id,
            poll,
            events: Events::with_capacity(EVENTS_CAPACITY),
            listener,
            connections: Slab::new(),
            ready_list: VecDeque::new(),
            listener_queued: false,
            accept_paused: false,
            cleanup_list: Vec::new(),
            timers: Timers::default(),
            max_open,
            stats: Stats::default(),
        };
        Ok((worker, waker))
    }

    // ANCHOR: run
    /// The loop: wait, note what the events say, start the answers whose
    /// delay is over, give each ready connection its turn, clean up.
    /// Returns when the waker is woken.
    pub fn run(mut self) -> io::Result<Stats> {
        loop {
            if self.wait()? {
                return Ok(self.stats);
            }
            for token in self.timers.expired(Instant::now()) {
                if let Some(connection) = self.connections.get_mut(token) {
                    connection.deadline_passed();
                    queue(&mut self.ready_list, connection, token);
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
        self.stats.wakeups += 1;
        for event in self.events.iter() {
            match event.token() {
                WAKER => return Ok(true),
                // Paused, accepting could only fail again; a close will
                // bring the listener back.
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
    /// One turn: the listener accepts, and each connection on the ready
    /// list does at most a budget's worth of work.
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
            let Some(connection) = self.connections.get_mut(token) else {
                continue;
            };
            match connection.work(WRITE_BUDGET) {
                Ok(Progress::StillReady) => self.ready_list.push_back(token),
                Ok(Progress::Idle) => connection.queued = false,
                Ok(Progress::Wait(deadline)) => {
                    connection.queued = false;
                    self.timers.insert(deadline, token);
                }
                Ok(Progress::Done) => {
                    self.stats.answered += 1;
                    self.close(token)?;
                }
                Err(Problem::BadRequest) => {
                    self.stats.bad_requests += 1;
                    self.close(token)?;
                }
                Err(Problem::Io(error)) => {
                    self.stats.failed += 1;
                    let what = if connection.is_endless() {
                        "endless body"
                    } else {
                        "connection"
                    };
                    eprintln!(
                        "server: worker {}: a client's {what} ended: {error}",
                        self.id
                    );
                    self.close(token)?;
                }
            }
        }
        Ok(())
    }
    // ANCHOR_END: turn

    // ANCHOR: accept_all
    /// Accepts until the queue is empty (`WouldBlock`): an edge-triggered
    /// listener reports the queue's next connection only when yet another
    /// one arrives. Stops early, and pauses, when the worker has
    /// `max_open` connections or the process has no descriptor to spare.
    fn accept_all(&mut self) -> io::Result<()> {
        loop {
            if self.max_open > 0 && self.connections.len() >= self.max_open {
                self.accept_paused = true;
                return Ok(());
            }
            match accept::accept(&self.listener, &mut self.stats.accept_calls)? {
                Accepted::Connection(stream) => self.add(stream)?,
                Accepted::Empty => return Ok(()),
                // Not `WouldBlock`: the connection is still in the queue,
                // and trying again before a descriptor is freed fails
                // again, as fast as the loop can go.
                Accepted::NoDescriptor(error) => {
                    if self.stats.out_of_fds == 0 {
                        eprintln!(
                            "server: worker {}: {error}; accepting again when a connection closes",
                            self.id
                        );
                    }
                    self.stats.out_of_fds += 1;
                    self.accept_paused = true; // until a close frees a descriptor
                    return Ok(());
                }
            }
        }
    }
    // ANCHOR_END: accept_all

    // ANCHOR: add
    /// Registers a new connection, once, for both directions and
    /// edge-triggered: from here to its close it costs no more `epoll_ctl`.
    fn add(&mut self, stream: std::net::TcpStream) -> io::Result<()> {
        let token = self.connections.insert(Connection::new(stream));
        let connection = self.connections.get(token).expect("just inserted");
        let both = Interest::READABLE | Interest::WRITABLE;
        if let Err(error) = self
            .poll
            .registry()
            .register(&connection.stream, token, both)
        {
            self.connections.remove(token);
            self.connections.release(token);
            return Err(error);
        }
        self.stats.accepted += 1;
        Ok(())
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
        self.poll.registry().deregister(&connection.stream)?;
        self.cleanup_list.push((token, connection.deadline()));
        drop(connection);
        if self.accept_paused {
            self.accept_paused = false;
            self.queue_listener();
        }
        Ok(())
    }

    /// After the turn: nothing may name a closed connection when its slot
    /// is reused, or the next connection there would inherit it: its place
    /// on the ready list, or its deadline, which would answer the new
    /// client at the old one's time.
    fn clean_up(&mut self) {
        if self.cleanup_list.is_empty() {
            return;
        }
        let connections = &self.connections;
        self.ready_list
            .retain(|&token| token == LISTENER || connections.get(token).is_some());
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
