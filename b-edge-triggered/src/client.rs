//! The program: every request on its own connection, all of them waited on
//! by one thread through one `Poll`, each response printed the moment it is
//! complete.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::connection::Connection;
pub use crate::error::{Error, Problem};
use crate::http;
use crate::poll::{Events, Interest, Poll, Registry, Token};

/// What to run: where to connect, which paths to ask for, and how long the
/// whole run may take.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub paths: Vec<String>,
    pub deadline: Duration,
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
}

/// How many events one wait can return; more stay queued for the next wait.
const EVENTS_CAPACITY: usize = 64;

// ANCHOR: run
pub fn run(config: &Config, out: &mut impl Write) -> Result<Summary, Error> {
    let start = Instant::now();
    let mut poll = Poll::new().map_err(Error::Poll)?;
    let mut connections = Vec::with_capacity(config.paths.len());
    for (index, path) in config.paths.iter().enumerate() {
        let connection = Connection::open(config.addr, path)?;
        // Once, for both directions: writable tells us the connect is done
        // and the request can go, readable that the answer is coming. With
        // edges, an interest we no longer need costs nothing, so there is
        // no epoll_ctl to change it along the way.
        poll.registry()
            .register(
                &connection.stream,
                Token(index),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(Error::Poll)?;
        connections.push(Some(connection));
    }

    let mut events = Events::with_capacity(EVENTS_CAPACITY);
    let mut summary = Summary {
        threads: 1,
        ..Summary::default()
    };
    while summary.completed.len() < config.paths.len() {
        let left = time_left(start, config).ok_or_else(|| missing(config, &connections))?;
        poll.poll(&mut events, Some(left)).map_err(Error::Poll)?;
        for event in events.iter() {
            let token = event.token();
            // A finished connection was deregistered before it was dropped,
            // and one wait reports each fd at most once, so this never skips
            // here. It keeps a stray event from touching a closed connection.
            let Some(connection) = connections[token.0].as_mut() else {
                continue;
            };
            let Some(response) = connection
                .on_event(&event)
                .map_err(|problem| Error::Request {
                    token,
                    path: connection.path.clone(),
                    problem,
                })?
            else {
                continue;
            };
            let done = connections[token.0].take().expect("it just answered");
            close(poll.registry(), done.stream)?;
            let completed = Completed {
                token,
                path: done.path,
                elapsed: start.elapsed(),
                body: response.body,
            };
            report(out, &completed)?;
            summary.completed.push(completed);
        }
    }
    summary.elapsed = start.elapsed();
    report_summary(out, &summary)?;
    Ok(summary)
}
// ANCHOR_END: run

// ANCHOR: close
/// Deregisters a finished connection's socket, then closes it (by dropping
/// it). Not the other way round: a closed fd cannot be named to
/// `epoll_ctl`, and if the socket had been duplicated its registration
/// would outlive our close.
pub fn close(registry: &Registry, stream: TcpStream) -> Result<(), Error> {
    registry.deregister(&stream).map_err(Error::Poll)?;
    drop(stream);
    Ok(())
}
// ANCHOR_END: close

/// The time left before the deadline, or `None` once it has passed.
fn time_left(start: Instant, config: &Config) -> Option<Duration> {
    config
        .deadline
        .checked_sub(start.elapsed())
        .filter(|left| !left.is_zero())
}

/// The deadline error, naming the requests still without an answer.
fn missing(config: &Config, connections: &[Option<Connection>]) -> Error {
    Error::Deadline {
        deadline: config.deadline,
        missing: connections
            .iter()
            .flatten()
            .map(|c| c.path.clone())
            .collect(),
    }
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
