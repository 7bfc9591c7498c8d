//! The program: every request on its own connection, all of them waited on
//! by a pool of worker threads through one `Poll`, each response printed
//! the moment it is complete.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::connection::Connection;
pub use crate::error::{Error, Problem};
use crate::http;
use crate::poll::{Event, Events, Poll, Token, Waker};

/// What to run: where to connect, which paths to ask for, and how long the
/// whole run may take.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub paths: Vec<String>,
    pub deadline: Duration,
    /// How many threads wait on the one `Poll`; 0 counts as 1.
    pub workers: usize,
}

/// One response, as it was reported.
#[derive(Debug, Clone)]
pub struct Completed {
    pub token: Token,
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
    /// Events handled, and how many of them ended in a re-arm: the price of
    /// one-shot is one `epoll_ctl` for every event that does not finish a
    /// connection.
    pub events: usize,
    pub rearms: usize,
}

/// How many events one wait can return; more stay queued for the next wait.
const EVENTS_CAPACITY: usize = 64;

// ANCHOR: run
pub fn run(config: &Config, out: &mut (impl Write + Send)) -> Result<Summary, Error> {
    let start = Instant::now();
    // Someone has to wait for the answers.
    let threads = config.workers.max(1);
    let poll = Poll::new().map_err(Error::Poll)?;
    let waker = Waker::new(poll.registry(), WAKER).map_err(Error::Poll)?;
    let mut connections = Vec::with_capacity(config.paths.len());
    for (index, path) in config.paths.iter().enumerate() {
        let connection = Connection::open(config.addr, path)?;
        poll.registry()
            .register(&connection.stream, Token(index), connection.interest())
            .map_err(Error::Poll)?;
        connections.push(Mutex::new(Some(connection)));
    }

    let shared = Shared {
        config,
        start,
        poll,
        waker,
        connections,
        remaining: AtomicUsize::new(config.paths.len()),
        report: Mutex::new((out, Vec::new())),
        failure: Mutex::new(None),
        events: AtomicUsize::new(0),
        rearms: AtomicUsize::new(0),
    };
    // With nothing to ask, no answer would ever wake the workers to stop.
    if config.paths.is_empty() {
        shared.waker.wake().map_err(Error::Poll)?;
    }
    thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| shared.worker());
        }
    });

    if let Some(error) = into_inner(shared.failure) {
        return Err(error);
    }
    let (out, completed) = into_inner(shared.report);
    let summary = Summary {
        completed,
        elapsed: start.elapsed(),
        threads,
        events: shared.events.into_inner(),
        rearms: shared.rearms.into_inner(),
    };
    report_summary(out, &summary)?;
    Ok(summary)
}
// ANCHOR_END: run

// ANCHOR: shared
/// The waker's token; connections use their index.
const WAKER: Token = Token(usize::MAX);

/// What the workers share. Each connection has a lock of its own. One-shot
/// makes sure two threads never work on one connection at once: only the
/// thread that got the connection's one event handles it, until it is
/// re-armed. The lock is how the compiler learns that. It can be contended
/// only briefly: `handle` re-arms while still holding it, so another worker
/// that takes the next event at once waits for the unlock.
struct Shared<'a, W> {
    config: &'a Config,
    start: Instant,
    poll: Poll,
    waker: Waker,
    connections: Vec<Mutex<Option<Connection>>>,
    /// Responses still to come; whoever completes the last one wakes all.
    remaining: AtomicUsize,
    /// The output and the list of responses, behind one lock: a line is
    /// printed and recorded in one step, so lines never interleave and the
    /// summary lists responses in the order they were printed.
    report: Mutex<(&'a mut W, Vec<Completed>)>,
    /// The first error ends the run.
    failure: Mutex<Option<Error>>,
    events: AtomicUsize,
    rearms: AtomicUsize,
}

impl<W: Write + Send> Shared<'_, W> {
    /// One worker: wait, handle what is ready, until woken to stop.
    fn worker(&self) {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        loop {
            let Some(left) = time_left(self.start, self.config) else {
                return self.fail(self.missing());
            };
            if let Err(error) = self.poll.poll(&mut events, Some(left)) {
                return self.fail(Error::Poll(error));
            }
            for event in events.iter() {
                if event.token() == WAKER {
                    return;
                }
                if let Err(error) = self.handle(&event) {
                    return self.fail(error);
                }
            }
        }
    }
}
// ANCHOR_END: shared

impl<W: Write + Send> Shared<'_, W> {
    // ANCHOR: handle
    fn handle(&self, event: &Event) -> Result<(), Error> {
        self.events.fetch_add(1, Ordering::Relaxed);
        let token = event.token();
        let mut slot = lock(&self.connections[token.0]);
        let Some(connection) = slot.as_mut() else {
            return Ok(());
        };
        let outcome = connection
            .on_event(event)
            .map_err(|problem| Error::Request {
                token,
                path: connection.path.clone(),
                problem,
            })?;
        let Some(response) = outcome else {
            // Everything this event allowed is done. Until we re-arm it,
            // no thread will hear of this connection again.
            self.poll
                .registry()
                .reregister(&connection.stream, token, connection.interest())
                .map_err(Error::Poll)?;
            self.rearms.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        // Deregister, then close (by dropping). Not the other way round:
        // a closed fd cannot be named to epoll_ctl, and if the socket had
        // been duplicated its registration would outlive our close.
        self.poll
            .registry()
            .deregister(&connection.stream)
            .map_err(Error::Poll)?;
        let path = slot.take().map(|done| done.path).unwrap_or_default();
        drop(slot);
        let completed = Completed {
            token,
            path,
            elapsed: self.start.elapsed(),
            body: response.body,
        };
        {
            let mut report_lock = lock(&self.report);
            let (out, list) = &mut *report_lock;
            report(&mut **out, &completed)?;
            list.push(completed);
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.waker.wake().map_err(Error::Poll)?;
        }
        Ok(())
    }
    // ANCHOR_END: handle

    /// Keeps the first error and wakes every worker to stop.
    fn fail(&self, error: Error) {
        lock(&self.failure).get_or_insert(error);
        let _ = self.waker.wake();
    }

    /// The deadline error, naming the requests still without an answer.
    fn missing(&self) -> Error {
        let missing = self
            .connections
            .iter()
            .filter_map(|slot| lock(slot).as_ref().map(|c| c.path.clone()))
            .collect();
        Error::Deadline {
            deadline: self.config.deadline,
            missing,
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
        "token {:<3} {:>6} ms  {}",
        completed.token.0,
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
    .map_err(Error::Output)
}
// ANCHOR_END: report
