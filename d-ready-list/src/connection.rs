//! One request on its own non-blocking connection: sending it, reading the
//! answer within a turn's budget, and checksumming the endless body. The
//! worker decides when a connection gets a turn; this decides what a turn
//! does.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};

use socket2::{Domain, Protocol, Socket, Type};

use crate::client::{Budget, Error, Problem, READ_CHUNK};
use crate::http::{self, Parsed, Response};
use crate::{Event, Interest, Token};

// ANCHOR: connection
/// One request on its own non-blocking connection: the request and how
/// much of it the kernel has taken, what has come back so far, and what the
/// last event said it could do.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) stream: TcpStream,
    pub(crate) request: usize,
    pub(crate) path: String,
    /// The other connection carrying the same request, when hedged.
    pub(crate) twin: Option<Token>,
    /// Why the twin failed, if it did: this connection is the last hope.
    pub(crate) twin_problem: Option<Problem>,
    connected: bool,
    bytes: Vec<u8>,
    sent: usize,
    pub(crate) body: Body,
    received: Vec<u8>,
    readable: bool,
    writable: bool,
}

/// What becomes of the bytes a connection reads.
#[derive(Debug)]
pub(crate) enum Body {
    /// Kept, until they make a whole response.
    Keep,
    /// Checksummed and dropped: the endless body, which never ends. Its head
    /// is kept until it is whole, to check that the server has `/endless`.
    Checksum { crc: u32, head_checked: bool },
}

/// What a turn got done.
#[derive(Debug)]
pub(crate) enum Progress {
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

impl Body {
    /// The endless body, before its head has come.
    pub(crate) fn endless() -> Body {
        Body::Checksum {
            crc: CRC32_INIT,
            head_checked: false,
        }
    }
}

impl Connection {
    /// Starts to connect and returns at once. The connect finishes later,
    /// and epoll tells us so by reporting the socket writable.
    pub(crate) fn open(
        addr: SocketAddr,
        request: usize,
        path: &str,
        body: Body,
    ) -> Result<Connection, Error> {
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
    pub(crate) fn interest(&self) -> Interest {
        if self.sent < self.bytes.len() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        }
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

    pub(crate) fn error(&self, problem: Problem) -> Error {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(CRC32_INIT, b"123456789"), 0xCBF4_3926);
        let split = crc32(crc32(CRC32_INIT, b"12345"), b"6789");
        assert_eq!(split, 0xCBF4_3926);
    }

    #[test]
    fn a_connection_kept_on_the_ready_list_still_sends_the_rest_of_its_request() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut connection = Connection::open(addr, 0, "/0/x", Body::Keep).unwrap();
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
        let progress = connection.work(Budget::Reads(1)).unwrap();
        assert!(matches!(progress, Progress::StillReady), "{progress:?}");
        assert_eq!(connection.sent, connection.bytes.len(), "the request waits");
    }
}
