//! The program: every request on its own connection, all of them waited on
//! by one thread through one `Poll`, each response printed the moment it is
//! complete.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::http::{self, Parsed, Response};
use crate::{Events, Interest, Poll, Token};

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

/// The size of one read. Small enough that the large-body tests need many.
const READ_CHUNK: usize = 4096;
/// How many events one wait can return; more stay queued for the next wait.
const EVENTS_CAPACITY: usize = 64;

// ANCHOR: run
pub fn run(config: &Config, out: &mut impl Write) -> Result<Summary, Error> {
    let start = Instant::now();
    let mut poll = Poll::new().map_err(Error::Poll)?;
    let mut connections = Vec::with_capacity(config.paths.len());
    for (index, path) in config.paths.iter().enumerate() {
        // Nothing has been answered while we connect: every request is missing.
        let left = time_left(start, config).ok_or_else(|| Error::Deadline {
            deadline: config.deadline,
            missing: config.paths.clone(),
        })?;
        let connection = Connection::open(config.addr, path, left)?;
        poll.registry()
            .register(&connection.stream, Token(index), Interest::READABLE)
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
            let Some(response) = connection.on_readable().map_err(|problem| Error::Request {
                token,
                path: connection.path.clone(),
                problem,
            })?
            else {
                continue;
            };
            // Deregister, then close (by dropping). Not the other way round:
            // a closed fd cannot be named to epoll_ctl, and if the socket had
            // been duplicated its registration would outlive our close.
            poll.registry()
                .deregister(&connection.stream)
                .map_err(Error::Poll)?;
            let path = connections[token.0]
                .take()
                .map(|done| done.path)
                .unwrap_or_default();
            let completed = Completed {
                token,
                path,
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

// ANCHOR: connection
/// One request on its own connection, and what has come back so far.
#[derive(Debug)]
struct Connection {
    stream: TcpStream,
    path: String,
    received: Vec<u8>,
}

impl Connection {
    /// Connects and sends the request. The socket stays blocking: with
    /// level-triggered readiness we read only when epoll says a read will
    /// not block, and a request this small fits the empty send buffer.
    /// mio and tokio never register a blocking socket; chapter 2 shows
    /// where this stops being harmless (an edge-triggered loop must read
    /// until nothing is left, and a blocking read of nothing never returns).
    fn open(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Connection, Error> {
        let connect_error = |source| Error::Connect { addr, source };
        let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(connect_error)?;
        stream
            .write_all(http::request(path, &addr.to_string()).as_bytes())
            .map_err(connect_error)?;
        Ok(Connection {
            stream,
            path: path.to_string(),
            received: Vec::new(),
        })
    }

    /// One read per event. If more is waiting, level-triggered epoll simply
    /// reports the socket again on the next wait.
    fn on_readable(&mut self) -> Result<Option<Response>, Problem> {
        let mut buffer = [0; READ_CHUNK];
        let eof = match self.stream.read(&mut buffer) {
            Ok(0) => true,
            Ok(n) => {
                self.received.extend_from_slice(&buffer[..n]);
                false
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => return Ok(None),
            Err(error) => return Err(Problem::Io(error)),
        };
        self.parse(eof)
    }
}
// ANCHOR_END: connection

impl Connection {
    fn parse(&self, eof: bool) -> Result<Option<Response>, Problem> {
        match http::parse(&self.received, eof) {
            Parsed::Incomplete => Ok(None),
            Parsed::Complete(response) if response.status == 200 => Ok(Some(response)),
            Parsed::Complete(response) => Err(Problem::Status(response.status, response.reason)),
            Parsed::Invalid(invalid) => Err(Problem::Response(invalid)),
        }
    }
}

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
        token: Token,
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
    Io(io::Error),
    Response(http::Invalid),
    Status(u16, String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Resolve(addr, error) => write!(f, "cannot resolve {addr:?}: {error}"),
            Error::Setup(error) => write!(f, "cannot start the delay server: {error}"),
            Error::Poll(error) => write!(f, "epoll failed: {error}"),
            Error::Connect { addr, source } => write!(f, "cannot connect to {addr}: {source}"),
            Error::Request {
                token,
                path,
                problem,
            } => write!(f, "request {} (GET {path}): {problem}", token.0),
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
            Problem::Io(error) => write!(f, "{error}"),
            Problem::Response(invalid) => write!(f, "{invalid}"),
            Problem::Status(status, reason) => write!(f, "the server answered {status} {reason}"),
        }
    }
}

impl std::error::Error for Error {}
