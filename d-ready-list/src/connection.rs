//! One request on its own connection: opening it, sending the request,
//! and reading the answer, at most a budget's worth in one turn. The
//! worker decides when a connection gets a turn; this decides what a turn
//! does.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};

use socket2::{Domain, Protocol, Socket, Type};

use crate::endless::Checksum;
use crate::error::{Error, Problem};
use crate::http::{self, Head, Invalid, Response};
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
    received: Received,
    /// Only for the endless body: checksummed, not kept.
    endless: Option<Checksum>,
    readable: bool,
    writable: bool,
}

/// The answer so far: bytes until its head is whole, then the head, parsed
/// once, and the body, which becomes the response without a copy.
#[derive(Debug)]
enum Received {
    Head(Vec<u8>),
    Body { head: Head, body: Vec<u8> },
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
        // that creates it, where `set_nonblocking` after it would cost two
        // more system calls (`fcntl` to read the flags, and to set them).
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
            received: Received::Head(Vec::new()),
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
    pub(crate) fn work(&mut self, budget: Budget) -> Result<Progress, Problem> {
        // Once connected, try to send on every turn while bytes remain: a
        // connection kept on the ready list by its reads is not told again
        // that it is writable (the edge came while it was on the list).
        if self.sent < self.request.len() && (self.writable || self.connected) {
            self.send()?;
        }
        if !self.readable {
            return Ok(Progress::Idle);
        }
        let mut left = match budget {
            Budget::Bytes(bytes) => bytes.max(1),
            Budget::Drain => usize::MAX,
        };
        let mut buffer = [0; READ_CHUNK];
        while left > 0 {
            let chunk = &mut buffer[..left.min(READ_CHUNK)];
            match self.stream.read(chunk) {
                Ok(0) => return self.at_eof().map(Progress::Complete),
                Ok(n) => {
                    left -= n;
                    if let Some(response) = self.take(&buffer[..n])? {
                        return Ok(Progress::Complete(response));
                    }
                }
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
    /// Takes in what one read brought. The head is parsed once, when it is
    /// whole; after it, bytes go straight to the body (or, for the endless
    /// body, to its checksum), and are never looked at again.
    fn take(&mut self, data: &[u8]) -> Result<Option<Response>, Problem> {
        if let Received::Head(received) = &mut self.received {
            received.extend_from_slice(data);
            let Some(head) = http::parse_head(received, false).map_err(Problem::Response)? else {
                return Ok(None);
            };
            let rest = received.split_off(head.len);
            // A 1xx response (such as 103 Early Hints) is interim: the real
            // one follows it on the same connection.
            if (100..200).contains(&head.status) {
                self.received = Received::Head(Vec::new());
                return self.take(&rest);
            }
            if head.status != 200 {
                return Err(Problem::Status(head.status, head.reason));
            }
            self.received = Received::Body {
                head,
                body: Vec::new(),
            };
            return self.take(&rest);
        }
        let Received::Body { head, body } = &mut self.received else {
            unreachable!("the head was handled above");
        };
        if let Some(endless) = &mut self.endless {
            endless.add(data);
            return Ok(None);
        }
        body.extend_from_slice(data);
        Ok(match head.content_length {
            Some(length) if body.len() >= length => Some(self.finish()),
            _ => None,
        })
    }

    /// The peer closed its side: that ends a body without `Content-Length`,
    /// and is an error anywhere else.
    fn at_eof(&mut self) -> Result<Response, Problem> {
        match &self.received {
            Received::Head(received) => Err(Problem::Response(
                http::parse_head(received, true)
                    .err()
                    .unwrap_or(Invalid::ClosedEarly {
                        received: received.len(),
                    }),
            )),
            Received::Body { .. } if self.endless.is_some() => {
                Err(Problem::Io(io::ErrorKind::UnexpectedEof.into()))
            }
            Received::Body { head, body } => match head.content_length {
                Some(expected) => Err(Problem::Response(Invalid::Truncated {
                    expected,
                    received: body.len(),
                })),
                None => Ok(self.finish()),
            },
        }
    }

    /// The response, its body moved out of the connection.
    fn finish(&mut self) -> Response {
        let Received::Body { head, body } =
            std::mem::replace(&mut self.received, Received::Head(Vec::new()))
        else {
            unreachable!("finish is called once the body has begun");
        };
        let mut body = body;
        if let Some(length) = head.content_length {
            body.truncate(length);
        }
        Response {
            status: head.status,
            reason: head.reason,
            body,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_kept_on_the_ready_list_still_sends_the_rest_of_its_request() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut connection = Connection::open(addr, 0, "/0/x", false).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        // As after a turn whose send hit `WouldBlock`, and whose reads then
        // ran out of budget: connected, not known writable, still readable,
        // so it stays on the ready list and gets no writable event.
        connection.connected = true;
        connection.writable = false;
        connection.readable = true;
        server.write_all(b"HTTP/1.1 200 OK\r\n").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while connection.stream.peek(&mut [0]).is_err() {
            assert!(std::time::Instant::now() < deadline, "no bytes arrived");
            std::thread::yield_now();
        }
        let progress = connection.work(Budget::Bytes(1)).unwrap();
        assert!(matches!(progress, Progress::StillReady), "{progress:?}");
        assert_eq!(
            connection.sent,
            connection.request.len(),
            "the request waits"
        );
    }
}
