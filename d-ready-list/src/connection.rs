//! One request on its own connection: opening it, sending the request,
//! and reading the answer, at most a budget's worth in one turn. The
//! worker decides when a connection gets a turn; this decides what a turn
//! does.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};

use socket2::{Domain, Protocol, Socket, Type};

use crate::endless::Checksum;
use crate::error::{Error, Problem};
use crate::http::{self, Parsed, Response};
use crate::poll::{Event, Token};

// ANCHOR: budget
/// The size of one read: four of them make a turn under the default
/// budget. Smaller reads cost more system calls for the same bytes.
pub const READ_CHUNK: usize = 32 * 1024;

/// How much one connection may read in one turn of the ready list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// At most this many bytes (in reads of at most `READ_CHUNK`), then the
    /// next connection's go.
    Bytes(usize),
    /// Read until `WouldBlock`, however long that takes: chapter 2's loop,
    /// kept so that the tests can show what the budget is for.
    Drain,
}

impl Default for Budget {
    /// 128 KiB, what Linux gives a TCP socket's receive buffer to start
    /// with (the middle figure of `/proc/sys/net/ipv4/tcp_rmem`): a bulk
    /// download pays one `epoll_wait` per 128 KiB, not one per read, and a
    /// turn is still short enough that the starvation test's bound holds
    /// with room to spare, even with the endless body's slow checksum.
    fn default() -> Budget {
        Budget::Bytes(128 * 1024)
    }
}
// ANCHOR_END: budget

// ANCHOR: read_buffer
/// A worker's one buffer for reads, and the one place its reads are made,
/// so it is where they are counted. One per worker, made once: a buffer on
/// the stack would be zeroed again, all 32 KiB of it, on every turn.
#[derive(Debug)]
pub(crate) struct ReadBuffer {
    buffer: Box<[u8]>,
    reads: usize,
}

impl ReadBuffer {
    pub(crate) fn new() -> ReadBuffer {
        ReadBuffer {
            buffer: vec![0; READ_CHUNK].into_boxed_slice(),
            reads: 0,
        }
    }

    /// One `read` of at most `limit` bytes, and never more than
    /// `READ_CHUNK`; returns what it brought (nothing: EOF).
    fn read(&mut self, mut stream: &TcpStream, limit: usize) -> io::Result<&[u8]> {
        self.reads += 1;
        let n = stream.read(&mut self.buffer[..limit.min(READ_CHUNK)])?;
        Ok(&self.buffer[..n])
    }

    /// How many reads this buffer has made, `WouldBlock` ones included.
    pub(crate) fn reads(&self) -> usize {
        self.reads
    }
}
// ANCHOR_END: read_buffer

// ANCHOR: connection
/// One request on its own non-blocking connection: the request and how
/// much of it the kernel has taken, what has come back so far, and what the
/// events since its last turn said it could do.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) stream: TcpStream,
    /// Which request: its place in `Config::paths`.
    pub(crate) index: usize,
    pub(crate) path: String,
    /// The other connection carrying the same request, when hedged.
    pub(crate) twin: Option<Token>,
    /// Why the twin failed, if it did: this connection is the last hope.
    pub(crate) twin_problem: Option<Problem>,
    /// On the ready list. One-shot used to keep a connection off the list
    /// while it was on it; this flag does that in user space, for free.
    pub(crate) queued: bool,
    connected: bool,
    request: Vec<u8>,
    sent: usize,
    received: http::Reader,
    /// Only for the endless body: checksummed, not kept.
    endless: Option<Checksum>,
    readable: bool,
    writable: bool,
}

/// What one turn did.
#[derive(Debug)]
pub(crate) enum Progress {
    /// The budget ran out first: back of the list.
    StillReady,
    /// `WouldBlock`: nothing to do until the next event.
    Idle,
    Complete(Response),
}

impl Connection {
    /// Starts to connect and returns at once. The connect finishes later,
    /// and epoll tells us so by reporting the socket writable.
    pub(crate) fn open(
        addr: SocketAddr,
        index: usize,
        path: &str,
        endless: bool,
    ) -> io::Result<Connection> {
        // Non-blocking from the start (`SOCK_NONBLOCK`): made so by the call
        // that creates it, where socket2's `set_nonblocking` after it would
        // cost two more system calls (`fcntl` to read the flags, and to set
        // them), and std's `TcpStream::set_nonblocking` one (`ioctl`).
        let nonblocking = Type::from(libc::SOCK_STREAM | libc::SOCK_NONBLOCK);
        let socket = Socket::new(Domain::for_address(addr), nonblocking, Some(Protocol::TCP))?;
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(error) if error.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(error) => return Err(error),
        }
        Ok(Connection {
            stream: socket.into(),
            index,
            path: path.to_string(),
            twin: None,
            twin_problem: None,
            queued: false,
            connected: false,
            request: http::request(path, &addr.to_string()).into_bytes(),
            sent: 0,
            received: http::Reader::default(),
            endless: endless.then(Checksum::default),
            readable: false,
            writable: false,
        })
    }

    /// Remembers what an event said the socket can do, for its next turn.
    pub(crate) fn note(&mut self, event: &Event) {
        self.writable |= event.is_writable() || event.is_error();
        self.readable |= event.is_readable() || event.is_read_closed() || event.is_error();
    }

    // ANCHOR: work
    /// One turn's work: send what the socket will take, then read at most
    /// what the budget allows.
    pub(crate) fn work(
        &mut self,
        budget: Budget,
        buffer: &mut ReadBuffer,
    ) -> Result<Progress, Problem> {
        // An edge that comes while the connection waits on the list is
        // still noted, so `writable` is never stale: after a `WouldBlock`,
        // the kernel reports room to write again, whether or not the
        // connection is on the list at that moment.
        if self.writable && self.is_sending() {
            self.send()?;
        }
        if !self.readable {
            return Ok(Progress::Idle);
        }
        let mut left = match budget {
            Budget::Bytes(bytes) => bytes.max(1),
            Budget::Drain => usize::MAX,
        };
        while left > 0 {
            match buffer.read(&self.stream, left) {
                Ok(data) => {
                    let n = data.len();
                    left -= n;
                    match self.take(data, n == 0)? {
                        Some(response) => return Ok(Progress::Complete(response)),
                        // At EOF `take` decides; were it ever undecided,
                        // reading on would spin here, never blocking.
                        None if n == 0 => {
                            return Err(Problem::Io(io::ErrorKind::UnexpectedEof.into()));
                        }
                        None => {}
                    }
                }
                // (tokio saves this last read: a short read already says the
                // socket is empty. That is sound only if a close that came
                // with the data is kept apart from `readable`, or the close
                // would never be read; this chapter keeps the one flag.)
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Ok(Progress::Idle);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(Problem::Io(error)),
            }
        }
        Ok(Progress::StillReady)
    }
    // ANCHOR_END: work
}
// ANCHOR_END: connection

impl Connection {
    // ANCHOR: send
    /// The first writable event says the connect has *finished*, not that
    /// it worked: `SO_ERROR` says which. Then write until the request is
    /// out or the send buffer is full; in that case the next writable edge
    /// brings us back here.
    fn send(&mut self) -> Result<(), Problem> {
        if !self.connected {
            if let Some(error) = self.stream.take_error().map_err(Problem::Io)? {
                return Err(Problem::Connect(error));
            }
            self.connected = true;
        }
        while self.sent < self.request.len() {
            match self.stream.write(&self.request[self.sent..]) {
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
    // ANCHOR_END: send

    // ANCHOR: take
    /// Takes in what one read brought (at EOF, nothing). The endless body,
    /// once its head has come, goes to its checksum and is never kept.
    fn take(&mut self, data: &[u8], eof: bool) -> Result<Option<Response>, Problem> {
        if let Some(endless) = &mut self.endless {
            if eof {
                return Err(Problem::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            if self.received.head().is_some() {
                endless.add(data);
                return Ok(None);
            }
        }
        match self.received.take(data, eof) {
            Parsed::Incomplete => {
                if let (Some(endless), Some(head)) = (&mut self.endless, self.received.head()) {
                    if head.status != 200 {
                        return Err(Problem::Status(head.status, head.reason.clone()));
                    }
                    endless.add(&self.received.take_body());
                }
                Ok(None)
            }
            // The endless body may not end: a server that answers every path
            // with a short 200 has no `/endless`.
            Parsed::Complete(_) if self.endless.is_some() => Err(Problem::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the endless body ended",
            ))),
            Parsed::Complete(response) if response.status == 200 => Ok(Some(response)),
            Parsed::Complete(response) => Err(Problem::Status(response.status, response.reason)),
            Parsed::Invalid(invalid) => Err(Problem::Response(invalid)),
        }
    }
    // ANCHOR_END: take

    /// Whether some of the request is still to be sent.
    pub(crate) fn is_sending(&self) -> bool {
        self.sent < self.request.len()
    }

    pub(crate) fn endless(&self) -> Option<Checksum> {
        self.endless
    }

    pub(crate) fn error(&self, problem: Problem) -> Error {
        Error::Request {
            request: self.index,
            path: self.path.clone(),
            problem,
        }
    }
}
