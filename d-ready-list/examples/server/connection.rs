//! One client's connection on the server side: read the request, wait for
//! its delay (the worker's timer queue does that), then write the answer,
//! at most a budget's worth in one turn.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use d_ready_list::Event;

/// The most a request head may take; a longer one is answered 400.
const MAX_HEAD: usize = 16 * 1024;
/// The size of one read of a request.
const READ_CHUNK: usize = 4 * 1024;
/// The path of the body that never ends, as the clients' `--endless` asks.
pub const ENDLESS_PATH: &str = "/endless";

// ANCHOR: route
/// What a request line asks for: the same paths as the support delay
/// server's for what the clients send.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Delayed { delay: Duration, message: String },
    Endless,
    NotFound,
    BadRequest,
}

pub fn route(request_line: &str) -> Reply {
    let mut words = request_line.split(' ');
    let (Some("GET"), Some(path)) = (words.next(), words.next()) else {
        return Reply::BadRequest;
    };
    if path == ENDLESS_PATH {
        return Reply::Endless;
    }
    match path.trim_start_matches('/').split_once('/') {
        Some((delay_ms, message)) => match delay_ms.parse() {
            Ok(delay_ms) => Reply::Delayed {
                delay: Duration::from_millis(delay_ms),
                message: percent_decode(message),
            },
            Err(_) => Reply::NotFound,
        },
        None => Reply::NotFound,
    }
}
// ANCHOR_END: route

// ANCHOR: connection
/// Where a connection is in its life.
#[derive(Debug)]
enum State {
    /// Reading the request head, which must be whole by the deadline (the
    /// worker's timer queue holds it): a client that sends half a request,
    /// or nothing, cannot keep its descriptor for ever.
    Reading { head: Vec<u8>, deadline: Instant },
    /// The request is read; its answer is due at the deadline, which the
    /// worker's timer queue holds.
    Waiting { deadline: Instant, answer: Vec<u8> },
    /// Writing the answer; closed once it is all out.
    Writing { answer: Vec<u8>, sent: usize },
    /// Writing a body that never ends, until the client goes.
    Endless(Endless),
}

/// One accepted connection and what the events since its last turn said
/// it can do (edge-triggered: each is cleared only by a `WouldBlock`).
#[derive(Debug)]
pub struct Connection {
    pub stream: TcpStream,
    /// On the ready list: a connection is there at most once.
    pub queued: bool,
    state: State,
    readable: bool,
    writable: bool,
    /// The client has sent all it will (a read found the end): its answer
    /// still goes out, and nothing more is read.
    read_closed: bool,
}

/// What one turn did.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// The budget ran out before the socket did (bytes to read, or room to
    /// write, are left): back of the ready list.
    StillReady,
    /// Nothing to do until the next event, or the deadline (which the
    /// worker reads from `deadline` after each turn).
    Idle,
    /// The answer is out, or the client left: close.
    Done,
}

/// Why a connection ended early.
#[derive(Debug)]
pub enum Problem {
    /// The request line was not a GET: answered 400.
    BadRequest,
    /// A reset, a broken pipe, or another error from the socket.
    Io(io::Error),
    /// The request head was not whole by its deadline.
    SlowRequest,
}
// ANCHOR_END: connection

impl Connection {
    /// A new connection, whose request head must be whole by `deadline`.
    pub fn new(stream: TcpStream, deadline: Instant) -> Connection {
        Connection {
            stream,
            queued: false,
            state: State::Reading {
                head: Vec::new(),
                deadline,
            },
            readable: false,
            writable: false,
            read_closed: false,
        }
    }

    /// Remembers what an event said the socket can do, for its next turn.
    pub fn note(&mut self, event: &Event) {
        self.writable |= event.is_writable() || event.is_error();
        self.readable |= event.is_readable() || event.is_read_closed() || event.is_error();
    }

    /// The deadline this connection has in the timer queue, if any: its
    /// request head's, or its answer's.
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Reading { deadline, .. } | State::Waiting { deadline, .. } => Some(deadline),
            _ => None,
        }
    }

    pub fn is_endless(&self) -> bool {
        matches!(self.state, State::Endless(_))
    }

    /// The deadline has come: from now on, write the answer; or the
    /// request head is still not whole, and the connection must go.
    pub fn deadline_passed(&mut self) -> Result<(), Problem> {
        match &mut self.state {
            State::Waiting { answer, .. } => {
                let answer = std::mem::take(answer);
                self.state = State::Writing { answer, sent: 0 };
                Ok(())
            }
            State::Reading { .. } => Err(Problem::SlowRequest),
            _ => Ok(()),
        }
    }

    // ANCHOR: work
    /// One turn's work: read at most `budget` bytes of the request, or
    /// write at most `budget` bytes of the answer.
    pub fn work(&mut self, budget: usize) -> Result<Progress, Problem> {
        match &mut self.state {
            State::Reading { .. } if self.readable => self.read_request(budget),
            State::Waiting { .. } if self.readable && !self.read_closed => self.watch(budget),
            State::Reading { .. } | State::Waiting { .. } => Ok(Progress::Idle),
            State::Writing { .. } | State::Endless(_) if !self.writable => Ok(Progress::Idle),
            State::Writing { answer, sent } => {
                let written = write_within(&mut self.stream, &answer[*sent..], budget)
                    .map_err(Problem::Io)?;
                *sent += written.sent;
                if *sent == answer.len() {
                    Ok(Progress::Done)
                } else if written.blocked {
                    self.writable = false;
                    Ok(Progress::Idle)
                } else {
                    Ok(Progress::StillReady)
                }
            }
            State::Endless(endless) => {
                let mut left = budget;
                // ANCHOR: budget
                while left > 0 {
                    let chunk = endless.chunk();
                    let chunk = &chunk[..chunk.len().min(left)];
                    let written =
                        write_within(&mut self.stream, chunk, left).map_err(Problem::Io)?;
                    endless.advance(written.sent);
                    left -= written.sent;
                    if written.blocked {
                        self.writable = false;
                        return Ok(Progress::Idle);
                    }
                }
                // ANCHOR_END: budget
                Ok(Progress::StillReady)
            }
        }
    }
    // ANCHOR_END: work

    /// While a connection waits for its deadline, a readable edge can only
    /// be more bytes (read and dropped), or the end of what the client
    /// sends. The end is not the client leaving: one that shut down only
    /// its sending half (`shutdown(SHUT_WR)`, as `nc -N` does after its
    /// request) still reads its answer. A client that left altogether is
    /// found out when the answer is written.
    fn watch(&mut self, budget: usize) -> Result<Progress, Problem> {
        let mut buffer = [0; READ_CHUNK];
        let mut read = 0;
        loop {
            if read >= budget {
                return Ok(Progress::StillReady);
            }
            match self.stream.read(&mut buffer) {
                Ok(0) => {
                    self.read_closed = true;
                    self.readable = false;
                    return Ok(Progress::Idle);
                }
                Ok(n) => read += n,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Ok(Progress::Idle);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(Problem::Io(error)),
            }
        }
    }

    /// Reads until the head is complete, the socket is empty, or `budget`
    /// bytes are read. Once the head is whole, the answer is set, now or
    /// at a deadline.
    fn read_request(&mut self, budget: usize) -> Result<Progress, Problem> {
        let State::Reading { head, .. } = &mut self.state else {
            return Ok(Progress::Idle);
        };
        let mut buffer = [0; READ_CHUNK];
        let mut read = 0;
        let line = loop {
            if read >= budget {
                return Ok(Progress::StillReady);
            }
            match self.stream.read(&mut buffer) {
                Ok(0) => {
                    return Err(Problem::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the client left before its request was whole",
                    )));
                }
                Ok(n) => {
                    read += n;
                    // A short read emptied the socket (TCP copies all it
                    // has, up to the buffer's size): what comes next makes
                    // a new edge, as a `WouldBlock` would have told us.
                    // tokio clears readiness on a short read the same way.
                    // This spares a read per request that could only say
                    // `WouldBlock`.
                    if n < buffer.len() {
                        self.readable = false;
                    }
                    let searched = head.len().saturating_sub(3);
                    head.extend_from_slice(&buffer[..n]);
                    if let Some(end) = find_blank_line(&head[searched..]) {
                        let end = searched + end;
                        // The limit holds for a head whose end came in
                        // the read that took it over, too.
                        if end > MAX_HEAD {
                            break None;
                        }
                        break String::from_utf8_lossy(&head[..end])
                            .lines()
                            .next()
                            .map(str::to_string);
                    }
                    if head.len() > MAX_HEAD {
                        break None;
                    }
                    if !self.readable {
                        return Ok(Progress::Idle);
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Ok(Progress::Idle);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(Problem::Io(error)),
            }
        };
        match line.as_deref().map_or(Reply::BadRequest, route) {
            Reply::Delayed { delay, message } => {
                let deadline = Instant::now() + delay;
                let answer = response("200 OK", message.as_bytes());
                self.state = State::Waiting { deadline, answer };
                // Bytes may still be waiting behind the head, with no edge
                // to come for them (edge-triggered: read until the socket
                // is empty): then `watch` reads them in the next turn.
                Ok(if self.readable {
                    Progress::StillReady
                } else {
                    Progress::Idle
                })
            }
            Reply::Endless => {
                self.state = State::Endless(Endless::default());
                Ok(Progress::StillReady)
            }
            Reply::NotFound => {
                let answer = response("404 Not Found", b"no such path");
                self.state = State::Writing { answer, sent: 0 };
                Ok(Progress::StillReady)
            }
            Reply::BadRequest => {
                let answer = response("400 Bad Request", b"GET only");
                // One try: the answer is small, and the connection is
                // closed whether or not it went out.
                let _ = self.stream.write(&answer);
                Err(Problem::BadRequest)
            }
        }
    }
}

// ANCHOR: write_within
/// What one `write_within` did.
struct Written {
    sent: usize,
    /// The socket's send buffer is full (`WouldBlock`): only the next
    /// writable edge brings the connection back, so it has no use for
    /// another turn before then.
    blocked: bool,
}

/// Writes at most `budget` bytes of `bytes`, until they are out or the
/// socket takes no more.
fn write_within(stream: &mut TcpStream, bytes: &[u8], budget: usize) -> io::Result<Written> {
    let bytes = &bytes[..bytes.len().min(budget)];
    let mut sent = 0;
    while sent < bytes.len() {
        match stream.write(&bytes[sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                return Ok(Written {
                    sent,
                    blocked: true,
                });
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(Written {
        sent,
        blocked: false,
    })
}
// ANCHOR_END: write_within

fn find_blank_line(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|window| window == b"\r\n\r\n")
}

/// A whole response, with `Connection: close`: the server closes the
/// connection once it is out, as the book's delay server does.
fn response(status: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

// ANCHOR: endless
/// The body that never ends, made as it is sent: a head, then text whose
/// every byte costs some work (a real server renders, compresses or
/// encrypts what it sends), so that a client that reads as fast as it can
/// keeps the socket writable for ever.
#[derive(Debug)]
struct Endless {
    chunk: Vec<u8>,
    offset: usize,
    /// How many chunks have been made; each one's text depends on it.
    made: u64,
}

impl Default for Endless {
    fn default() -> Endless {
        Endless {
            chunk: b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
                .to_vec(),
            offset: 0,
            made: 0,
        }
    }
}

impl Endless {
    const CHUNK: usize = 16 * 1024;

    /// The bytes not yet sent: the rest of this chunk, or a new one.
    fn chunk(&mut self) -> &[u8] {
        if self.offset == self.chunk.len() {
            self.made += 1;
            let mut state = self.made as u32;
            self.chunk.clear();
            for i in 0..Endless::CHUNK {
                // A line of letters every 64 bytes, each letter from a few
                // rounds of a small hash.
                for _ in 0..8 {
                    state = state.rotate_left(5) ^ state.wrapping_mul(0x9E37_79B9);
                }
                let byte = if i % 64 == 63 {
                    b'\n'
                } else {
                    b'a' + (state % 26) as u8
                };
                self.chunk.push(byte);
            }
            self.offset = 0;
        }
        &self.chunk[self.offset..]
    }

    fn advance(&mut self, n: usize) {
        self.offset += n;
    }
}
// ANCHOR_END: endless

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
