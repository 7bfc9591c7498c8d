//! The program: every request on its own connection (or two, hedged), shared
//! out among worker threads that each have their own `Poll`, a ready list
//! that gives every ready connection a turn, and a cleanup list for
//! connections closed while a turn is under way.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::http::{self, Parsed, Response};
use crate::slab::Slab;
use crate::{Event, Events, Interest, Poll, Registry, Token, Waker};

/// What to run: where to connect, which paths to ask for, and how long the
/// whole run may take.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub paths: Vec<String>,
    pub deadline: Duration,
    /// How many threads, each with its own `Poll` and its own connections;
    /// 0 counts as 1.
    pub workers: usize,
    /// Send every request on two connections; the first answer wins.
    pub hedge: bool,
    /// Also read an endless body, and checksum it, on the first worker.
    pub endless: bool,
    pub budget: Budget,
}

// ANCHOR: budget
/// How much one connection may do in one turn of the ready list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// At most this many reads of `READ_CHUNK` bytes, then the next one's go.
    Reads(usize),
    /// Read until `WouldBlock`, however long that takes: chapter 2's loop,
    /// kept so that the tests can show what the budget is for.
    Drain,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget::Reads(1)
    }
}
// ANCHOR_END: budget

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

/// What a successful run did, in the order it happened.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub completed: Vec<Completed>,
    pub elapsed: Duration,
    /// How many threads waited for events.
    pub threads: usize,
    pub stats: Stats,
}

/// What the workers counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events for connections (the waker's are not counted).
    pub events: usize,
    /// `EPOLL_CTL_MOD`s: one each time a connection leaves the ready list.
    pub rearms: usize,
    /// Turns given to connections on the ready list.
    pub turns: usize,
    /// Ready-list entries and events whose connection had been closed.
    pub ignored: usize,
    /// Hedged twins closed because the other answered first.
    pub twins_closed: usize,
    /// Hedged connections that failed while their twin was still open.
    pub twins_failed: usize,
    /// Body bytes read from the endless sender, and their CRC-32.
    pub endless_bytes: u64,
    pub endless_crc: u32,
}

impl Stats {
    fn add(&mut self, other: &Stats) {
        self.events += other.events;
        self.rearms += other.rearms;
        self.turns += other.turns;
        self.ignored += other.ignored;
        self.twins_closed += other.twins_closed;
        self.twins_failed += other.twins_failed;
        if other.endless_bytes > 0 {
            self.endless_bytes = other.endless_bytes;
            self.endless_crc = other.endless_crc;
        }
    }
}

/// The size of one read, and so of one turn's work under the default budget.
pub const READ_CHUNK: usize = 4096;
/// How many events one wait can return; more stay queued for the next wait.
const EVENTS_CAPACITY: usize = 64;
/// The path of the endless body, and how its connection is named in errors.
pub const ENDLESS_PATH: &str = "/endless";

// ANCHOR: run
pub fn run(config: &Config, out: &mut (impl Write + Send)) -> Result<Summary, Error> {
    let start = Instant::now();
    // Every request needs a worker to own it.
    let threads = config.workers.max(1);
    let mut workers = Vec::with_capacity(threads);
    let mut wakers = Vec::with_capacity(threads);
    for _ in 0..threads {
        let worker = Worker::new(start, config.budget).map_err(Error::Poll)?;
        wakers.push(Waker::new(worker.registry(), WAKER).map_err(Error::Poll)?);
        workers.push(worker);
    }
    // A request and its twin go to the same worker: only the thread that
    // owns a connection may close it.
    for (request, path) in config.paths.iter().enumerate() {
        let worker = &mut workers[request % threads];
        if config.hedge {
            worker.open_hedged(config.addr, request, path)?;
        } else {
            worker.open(config.addr, request, path)?;
        }
    }
    if config.endless {
        workers[0].open_endless(config.addr, config.paths.len())?;
    }

    let shared = Shared {
        config,
        start,
        wakers,
        report: Mutex::new((out, Vec::new())),
        failure: Mutex::new(None),
    };
    let finished: Vec<(Stats, Vec<(usize, String)>)> = thread::scope(|scope| {
        let threads: Vec<_> = workers
            .into_iter()
            .map(|worker| scope.spawn(|| shared.drive(worker)))
            .collect();
        threads
            .into_iter()
            .map(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });

    let mut stats = Stats::default();
    let mut missing = Vec::new();
    for (worker_stats, worker_missing) in finished {
        stats.add(&worker_stats);
        missing.extend(worker_missing);
    }
    if let Some(mut error) = into_inner(shared.failure) {
        if let Error::Deadline { missing: names, .. } = &mut error {
            missing.sort();
            *names = missing.into_iter().map(|(_, path)| path).collect();
        }
        return Err(error);
    }
    let (out, completed) = into_inner(shared.report);
    let summary = Summary {
        completed,
        elapsed: start.elapsed(),
        threads,
        stats,
    };
    report_summary(out, &summary)?;
    Ok(summary)
}
// ANCHOR_END: run

/// The waker's token; no slab ever hands it out.
const WAKER: Token = Token(usize::MAX);

// ANCHOR: shared
/// What the workers share: no connections, only the way out.
struct Shared<'a, W> {
    config: &'a Config,
    start: Instant,
    /// One per worker: the first failure wakes them all to stop.
    wakers: Vec<Waker>,
    /// The output and the list of responses, behind one lock: a line is
    /// printed and recorded in one step.
    report: Mutex<(&'a mut W, Vec<Completed>)>,
    failure: Mutex<Option<Error>>,
}

impl<W: Write + Send> Shared<'_, W> {
    /// One worker's thread: turn its ready list and wait for more, until
    /// its own requests are answered, or the run fails. Returns what it
    /// counted, and the requests it was still waiting for.
    fn drive(&self, mut worker: Worker) -> (Stats, Vec<(usize, String)>) {
        let mut done = Vec::new();
        while worker.remaining() > 0 {
            let Some(left) = time_left(self.start, self.config) else {
                self.fail(Error::Deadline {
                    deadline: self.config.deadline,
                    missing: Vec::new(),
                });
                break;
            };
            match worker.wait(Some(left)) {
                Ok(Wait::Woken) => break,
                Ok(Wait::Ready) => {}
                Err(error) => {
                    self.fail(error);
                    break;
                }
            }
            let turn = worker.turn(&mut done);
            if let Err(error) = done.drain(..).try_for_each(|c| self.report(c)).and(turn) {
                self.fail(error);
                break;
            }
        }
        (worker.stats, worker.missing())
    }
}
// ANCHOR_END: shared

impl<W: Write + Send> Shared<'_, W> {
    fn report(&self, completed: Completed) -> Result<(), Error> {
        let mut report_lock = lock(&self.report);
        let (out, list) = &mut *report_lock;
        report(&mut **out, &completed)?;
        list.push(completed);
        Ok(())
    }

    /// Keeps the first error and wakes every worker to stop.
    fn fail(&self, error: Error) {
        lock(&self.failure).get_or_insert(error);
        for waker in &self.wakers {
            let _ = waker.wake();
        }
    }
}

/// A lock that survives a panicked holder, whose panic the scope re-raises.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn into_inner<T>(mutex: Mutex<T>) -> T {
    mutex
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ANCHOR: worker
/// One thread's share of the work: its own epoll, its own connections, and
/// the two lists this chapter is about.
#[derive(Debug)]
pub struct Worker {
    poll: Poll,
    events: Events,
    connections: Slab<Connection>,
    /// Connections with work to do, in the order they get their turns.
    ready_list: VecDeque<Token>,
    /// Connections closed during this turn, whose slots are freed after it.
    cleanup_list: Vec<Token>,
    budget: Budget,
    start: Instant,
    /// Requests not yet answered (a hedged pair counts once).
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

impl Worker {
    pub fn new(start: Instant, budget: Budget) -> io::Result<Worker> {
        Ok(Worker {
            poll: Poll::new()?,
            events: Events::with_capacity(EVENTS_CAPACITY),
            connections: Slab::new(),
            ready_list: VecDeque::new(),
            cleanup_list: Vec::new(),
            budget,
            start,
            remaining: 0,
            stats: Stats::default(),
        })
    }

    pub fn registry(&self) -> &Registry {
        self.poll.registry()
    }

    /// Opens a connection for request number `request` and registers it.
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
        let body = Body::Checksum {
            crc: CRC32_INIT,
            head_checked: false,
        };
        self.add(Connection::open(addr, request, ENDLESS_PATH, body)?)
    }

    fn add(&mut self, connection: Connection) -> Result<Token, Error> {
        let interest = connection.interest();
        let (request, path) = (connection.request, connection.path.clone());
        let token = self.connections.insert(connection).ok_or(Error::Request {
            request,
            path,
            problem: Problem::Io(io::Error::other("too many connections for one worker")),
        })?;
        let connection = self.connections.get(token).expect("just inserted");
        self.poll
            .registry()
            .register(&connection.stream, token, interest)
            .map_err(Error::Poll)?;
        Ok(token)
    }

    /// Requests not yet answered.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The connections waiting for their turn, in order.
    pub fn ready_list(&self) -> &VecDeque<Token> {
        &self.ready_list
    }

    /// Whether `token` still names an open connection.
    pub fn is_open(&self, token: Token) -> bool {
        self.connections.get(token).is_some()
    }

    // ANCHOR: wait
    /// Waits for events and puts each connection they name at the back of
    /// the ready list. While the list has work on it, this does not wait:
    /// it only collects what else became ready, so that a connection that
    /// is never done cannot keep the others from being heard.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<Wait, Error> {
        let timeout = if self.ready_list.is_empty() {
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

    // ANCHOR: turn
    /// One turn: each connection on the ready list, in order, does at most a
    /// budget's worth of work. Finished responses go to `done`.
    pub fn turn(&mut self, done: &mut Vec<Completed>) -> Result<(), Error> {
        let result = self.take_turns(done);
        // The turn is over and the ready list no longer holds a closed
        // connection's token, except in a slot's old generation, which
        // matches nothing: the slots can be reused.
        for token in self.cleanup_list.drain(..) {
            self.connections.release(token);
        }
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

    // ANCHOR: complete
    /// A response is complete: close its connection and, if it was hedged,
    /// its twin, which may be anywhere on the ready list, even later in
    /// this same turn.
    fn complete(&mut self, token: Token, response: Response) -> Result<Completed, Error> {
        let connection = self.close(token)?.expect("the connection just answered");
        if let Some(twin) = connection.twin {
            if self.close(twin)?.is_some() {
                self.stats.twins_closed += 1;
            }
        }
        self.remaining -= 1;
        Ok(Completed {
            request: connection.request,
            path: connection.path,
            elapsed: self.start.elapsed(),
            body: response.body,
        })
    }

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

    /// Deregisters a connection, then marks its slot removed, so that any
    /// token for it, on the ready list or in a later wait, finds nothing,
    /// and returns it: its fd is closed when the caller drops it. The slot
    /// is freed after the turn.
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
        Ok(self.connections.remove(token))
    }
    // ANCHOR_END: complete

    /// The requests still open, each once, in order.
    fn missing(&self) -> Vec<(usize, String)> {
        let open: BTreeMap<usize, String> = self
            .connections
            .values()
            .filter(|connection| matches!(connection.body, Body::Keep))
            .map(|connection| (connection.request, connection.path.clone()))
            .collect();
        open.into_iter().collect()
    }
}

// ANCHOR: connection
/// One request on its own non-blocking connection: the request and how
/// much of it the kernel has taken, what has come back so far, and what the
/// last event said it could do.
#[derive(Debug)]
struct Connection {
    stream: TcpStream,
    request: usize,
    path: String,
    /// The other connection carrying the same request, when hedged.
    twin: Option<Token>,
    /// Why the twin failed, if it did: this connection is the last hope.
    twin_problem: Option<Problem>,
    connected: bool,
    bytes: Vec<u8>,
    sent: usize,
    body: Body,
    received: Vec<u8>,
    readable: bool,
    writable: bool,
}

/// What becomes of the bytes a connection reads.
#[derive(Debug)]
enum Body {
    /// Kept, until they make a whole response.
    Keep,
    /// Checksummed and dropped: the endless body, which never ends. Its head
    /// is kept until it is whole, to check that the server has `/endless`.
    Checksum { crc: u32, head_checked: bool },
}

/// What a turn got done.
#[derive(Debug)]
enum Progress {
    /// The budget ran out first: back of the list.
    StillReady,
    /// `WouldBlock`: nothing to do until the next event.
    Idle,
    /// Endless body read: how much this turn, and the checksum so far.
    Checksummed {
        bytes: usize,
        crc: u32,
    },
    Complete(Response),
}
// ANCHOR_END: connection

/// What one read brought.
enum Chunk {
    Data(usize),
    Eof,
    WouldBlock,
}

impl Connection {
    /// Starts to connect and returns at once. The connect finishes later,
    /// and epoll tells us so by reporting the socket writable.
    fn open(addr: SocketAddr, request: usize, path: &str, body: Body) -> Result<Connection, Error> {
        let connect_error = |source| Error::Connect { addr, source };
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .map_err(connect_error)?;
        socket.set_nonblocking(true).map_err(connect_error)?;
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(error) if error.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(error) => return Err(connect_error(error)),
        }
        Ok(Connection {
            stream: socket.into(),
            request,
            path: path.to_string(),
            twin: None,
            twin_problem: None,
            connected: false,
            bytes: http::request(path, &addr.to_string()).into_bytes(),
            sent: 0,
            body,
            received: Vec::new(),
            readable: false,
            writable: false,
        })
    }

    /// What to wait for next: room to write while some of the request is
    /// unsent, and the answer.
    fn interest(&self) -> Interest {
        if self.sent < self.bytes.len() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        }
    }

    /// Remembers what an event said the socket can do, for its next turn.
    fn note(&mut self, event: &Event) {
        self.writable |= event.is_writable() || event.is_error();
        self.readable |= event.is_readable() || event.is_read_closed() || event.is_error();
    }

    // ANCHOR: work
    /// One turn's work: send what the socket will take, then read at most
    /// what the budget allows.
    fn work(&mut self, budget: Budget) -> Result<Progress, Problem> {
        // Once connected, try to send on every turn while bytes remain: a
        // connection kept on the ready list by its reads is not re-armed, so
        // no writable event would tell it that the send buffer has room.
        if self.sent < self.bytes.len() && (self.writable || self.connected) {
            self.send()?;
        }
        if !self.readable {
            return Ok(Progress::Idle);
        }
        let reads = match budget {
            Budget::Reads(reads) => reads.max(1),
            Budget::Drain => usize::MAX,
        };
        let mut checksummed = 0;
        for _ in 0..reads {
            match self.read_once()? {
                Chunk::Data(n) => match self.body {
                    Body::Checksum { .. } => checksummed += n,
                    Body::Keep => {
                        if let Some(response) = self.parse(false)? {
                            return Ok(Progress::Complete(response));
                        }
                    }
                },
                Chunk::Eof => {
                    return match self.parse(true)? {
                        Some(response) => Ok(Progress::Complete(response)),
                        None => Err(Problem::Response(http::Invalid::ClosedEarly {
                            received: self.received.len(),
                        })),
                    };
                }
                Chunk::WouldBlock => {
                    self.readable = false;
                    return Ok(Progress::Idle);
                }
            }
        }
        Ok(match self.body {
            Body::Checksum { crc, .. } => Progress::Checksummed {
                bytes: checksummed,
                crc,
            },
            Body::Keep => Progress::StillReady,
        })
    }
    // ANCHOR_END: work

    /// One read. The endless body is checksummed as it comes, standing in
    /// for what a real program does with a big download (hash it, unpack
    /// it, store it): work for every byte, which is what lets a sender
    /// outpace its reader.
    fn read_once(&mut self) -> Result<Chunk, Problem> {
        let mut buffer = [0; READ_CHUNK];
        loop {
            match self.stream.read(&mut buffer) {
                Ok(0) => return Ok(Chunk::Eof),
                Ok(n) => {
                    let data = &buffer[..n];
                    match &mut self.body {
                        Body::Keep => self.received.extend_from_slice(data),
                        Body::Checksum {
                            crc,
                            head_checked: true,
                        } => *crc = crc32(*crc, data),
                        Body::Checksum {
                            head_checked: false,
                            ..
                        } => {
                            self.received.extend_from_slice(data);
                            self.check_endless_head()?;
                        }
                    }
                    return Ok(Chunk::Data(n));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Chunk::WouldBlock);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(Problem::Io(error)),
            }
        }
    }

    /// Once the endless body's head is whole: a server without `/endless`
    /// answers something other than 200, and that is the error to report,
    /// not the end of a body that never began. What came after the head is
    /// the start of the body.
    fn check_endless_head(&mut self) -> Result<(), Problem> {
        let Some(head) = http::parse_head(&self.received, false).map_err(Problem::Response)? else {
            return Ok(());
        };
        if head.status != 200 {
            return Err(Problem::Status(head.status, head.reason));
        }
        let start = self.received.split_off(head.len);
        self.received = Vec::new();
        self.body = Body::Checksum {
            crc: crc32(CRC32_INIT, &start),
            head_checked: true,
        };
        Ok(())
    }

    /// The first writable event says the connect has *finished*, not that
    /// it worked: `SO_ERROR` says which. Then write until the request is
    /// out or the send buffer is full.
    fn send(&mut self) -> Result<(), Problem> {
        if !self.connected {
            if let Some(error) = self.stream.take_error().map_err(Problem::Io)? {
                return Err(Problem::Connect(error));
            }
            self.connected = true;
        }
        while self.sent < self.bytes.len() {
            match self.stream.write(&self.bytes[self.sent..]) {
                Ok(0) => return Err(Problem::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.sent += n,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    return Ok(());
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(Problem::Io(error)),
            }
        }
        Ok(())
    }

    /// `Some` once the response is whole; at EOF, whole or an error.
    fn parse(&self, eof: bool) -> Result<Option<Response>, Problem> {
        if let Body::Checksum { .. } = self.body {
            return Err(Problem::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        match http::parse(&self.received, eof) {
            Parsed::Incomplete => Ok(None),
            Parsed::Complete(response) if response.status == 200 => Ok(Some(response)),
            Parsed::Complete(response) => Err(Problem::Status(response.status, response.reason)),
            Parsed::Invalid(invalid) => Err(Problem::Response(invalid)),
        }
    }

    fn error(&self, problem: Problem) -> Error {
        Error::Request {
            request: self.request,
            path: self.path.clone(),
            problem,
        }
    }
}

// ANCHOR: crc32
const CRC32_INIT: u32 = 0;

/// CRC-32 (the one zip and Ethernet use), a bit at a time: slow on purpose,
/// so that the reader, not loopback TCP, is the bottleneck.
fn crc32(crc: u32, bytes: &[u8]) -> u32 {
    let mut crc = !crc;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}
// ANCHOR_END: crc32

/// The time left before the deadline, or `None` once it has passed.
fn time_left(start: Instant, config: &Config) -> Option<Duration> {
    config
        .deadline
        .checked_sub(start.elapsed())
        .filter(|left| !left.is_zero())
}

// ANCHOR: report
fn report(out: &mut impl Write, completed: &Completed) -> Result<(), Error> {
    writeln!(
        out,
        "request {:<3} {:>6} ms  {}",
        completed.request,
        completed.elapsed.as_millis(),
        http::preview(&completed.body, 60)
    )
    .map_err(Error::Output)
}

fn report_summary(out: &mut impl Write, summary: &Summary) -> Result<(), Error> {
    let threads = if summary.threads == 1 {
        "thread"
    } else {
        "threads"
    };
    writeln!(
        out,
        "{} responses in {} ms on {} {threads}",
        summary.completed.len(),
        summary.elapsed.as_millis(),
        summary.threads
    )
    .map_err(Error::Output)?;
    let stats = &summary.stats;
    if stats.twins_closed > 0 {
        writeln!(out, "{} hedged twins closed", stats.twins_closed).map_err(Error::Output)?;
    }
    if stats.twins_failed > 0 {
        writeln!(
            out,
            "{} hedged twins failed; their twins answered",
            stats.twins_failed
        )
        .map_err(Error::Output)?;
    }
    if stats.endless_bytes > 0 {
        writeln!(
            out,
            "and beside them {} MiB of endless body checksummed",
            stats.endless_bytes >> 20
        )
        .map_err(Error::Output)?;
    }
    Ok(())
}
// ANCHOR_END: report

/// Why a run failed. Its `Display` is the one line the program prints.
#[derive(Debug)]
pub enum Error {
    /// `--addr` names no address we can connect to.
    Resolve(String, io::Error),
    /// The embedded delay server could not start.
    Setup(io::Error),
    /// epoll itself failed: out of memory or fds, or a bug of ours.
    Poll(io::Error),
    Connect {
        addr: SocketAddr,
        source: io::Error,
    },
    Request {
        request: usize,
        path: String,
        problem: Problem,
    },
    Deadline {
        deadline: Duration,
        missing: Vec<String>,
    },
    /// Standard output went away (for example `| head -1`).
    Output(io::Error),
}

/// What went wrong with one request.
#[derive(Debug)]
pub enum Problem {
    /// The non-blocking connect failed; `SO_ERROR` said why.
    Connect(io::Error),
    Io(io::Error),
    Response(http::Invalid),
    Status(u16, String),
    /// Both connections of a hedged request failed, in this order.
    Hedged {
        first: Box<Problem>,
        second: Box<Problem>,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Resolve(addr, error) => write!(f, "cannot resolve {addr:?}: {error}"),
            Error::Setup(error) => write!(f, "cannot start the delay server: {error}"),
            Error::Poll(error) => write!(f, "epoll failed: {error}"),
            Error::Connect { addr, source } => write!(f, "cannot connect to {addr}: {source}"),
            Error::Request {
                request,
                path,
                problem,
            } => {
                write!(f, "request {request} (GET {path}): {problem}")?;
                if path == ENDLESS_PATH && matches!(problem, Problem::Status(..)) {
                    write!(
                        f,
                        " (--endless needs a server with /endless, such as the embedded one)"
                    )?;
                }
                Ok(())
            }
            Error::Deadline { deadline, missing } => {
                write!(f, "gave up after the {} s deadline", deadline.as_secs_f64())?;
                match missing.as_slice() {
                    [] => Ok(()),
                    [first, rest @ ..] => write!(
                        f,
                        ": {} response(s) missing, the first for GET {first}",
                        rest.len() + 1
                    ),
                }
            }
            Error::Output(error) => write!(f, "cannot write output: {error}"),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Connect(error) => write!(f, "cannot connect: {error}"),
            Problem::Io(error) => write!(f, "{error}"),
            Problem::Response(invalid) => write!(f, "{invalid}"),
            Problem::Status(status, reason) => write!(f, "the server answered {status} {reason}"),
            Problem::Hedged { first, second } => {
                write!(f, "both connections failed: {first}; then {second}")
            }
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(CRC32_INIT, b"123456789"), 0xCBF4_3926);
        let split = crc32(crc32(CRC32_INIT, b"12345"), b"6789");
        assert_eq!(split, 0xCBF4_3926);
    }
}
