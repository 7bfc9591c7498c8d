//! One request on its own connection: opening it, sending the request,
//! and reading the answer. The client decides when; this decides how.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};

use socket2::{Domain, Protocol, Socket, Type};

use crate::error::{Error, Problem};
use crate::http::{self, Parsed, Response};
use crate::poll::{Event, Interest};

/// The size of one read. Small enough that the large-body tests need many.
const READ_CHUNK: usize = 4096;

// ANCHOR: connection
/// One request on its own non-blocking connection: the request and how
/// much of it the kernel has taken, and what has come back so far.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) stream: TcpStream,
    pub(crate) path: String,
    connected: bool,
    request: Vec<u8>,
    sent: usize,
    received: Vec<u8>,
}

impl Connection {
    /// Starts to connect and returns at once. The connect finishes later,
    /// and epoll tells us so by reporting the socket writable.
    pub(crate) fn open(addr: SocketAddr, path: &str) -> Result<Connection, Error> {
        let connect_error = |source| Error::Connect { addr, source };
        // Non-blocking from the start (`SOCK_NONBLOCK`): made so by the call
        // that creates it, where socket2's `set_nonblocking` after it would
        // cost two more system calls (`fcntl` to read the flags, and to set
        // them), and std's `TcpStream::set_nonblocking` one (`ioctl`).
        let nonblocking = Type::from(libc::SOCK_STREAM | libc::SOCK_NONBLOCK);
        let socket = Socket::new(Domain::for_address(addr), nonblocking, Some(Protocol::TCP))
            .map_err(connect_error)?;
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(error) if error.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(error) => return Err(connect_error(error)),
        }
        Ok(Connection {
            stream: socket.into(),
            path: path.to_string(),
            connected: false,
            request: http::request(path, &addr.to_string()).into_bytes(),
            sent: 0,
            received: Vec::new(),
        })
    }

    /// What to wait for next: room to write while some of the request is
    /// unsent, and the answer. Re-arming reports what is ready *now*, so
    /// asking for writable on a socket with room to write would bring an
    /// event straight back.
    pub(crate) fn interest(&self) -> Interest {
        if self.sent < self.request.len() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        }
    }

    /// An edge is the only news until something new happens, so do all
    /// that it allows: send what is left to send, and read until the
    /// kernel says `WouldBlock`.
    pub(crate) fn on_event(&mut self, event: &Event) -> Result<Option<Response>, Problem> {
        if self.sent < self.request.len() && (event.is_writable() || event.is_error()) {
            self.send()?;
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            return self.drain();
        }
        Ok(None)
    }
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
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(Problem::Io(error)),
            }
        }
        Ok(())
    }
    // ANCHOR_END: send

    // ANCHOR: drain
    /// Reads until the kernel has nothing more for us: `WouldBlock`, or EOF.
    /// Stopping earlier would leave bytes that no edge will ever announce.
    fn drain(&mut self) -> Result<Option<Response>, Problem> {
        let mut buffer = [0; READ_CHUNK];
        loop {
            match self.stream.read(&mut buffer) {
                Ok(0) => return self.parse(true),
                Ok(n) => self.received.extend_from_slice(&buffer[..n]),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    return self.parse(false);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(Problem::Io(error)),
            }
        }
    }
    // ANCHOR_END: drain

    fn parse(&self, eof: bool) -> Result<Option<Response>, Problem> {
        match http::parse(&self.received, eof) {
            Parsed::Incomplete => Ok(None),
            Parsed::Complete(response) if response.status == 200 => Ok(Some(response)),
            Parsed::Complete(response) => Err(Problem::Status(response.status, response.reason)),
            Parsed::Invalid(invalid) => Err(Problem::Response(invalid)),
        }
    }
}
