//! One request on its own connection: opening it, sending the request,
//! and reading the answer. The client decides when; this decides how.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::error::{Error, Problem};
use crate::http::{self, Parsed, Response};

/// The size of one read. Small enough that the large-body tests need many.
const READ_CHUNK: usize = 4096;

// ANCHOR: connection
/// One request on its own connection, and what has come back so far.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) stream: TcpStream,
    pub(crate) path: String,
    received: Vec<u8>,
}

impl Connection {
    /// Connects and sends the request. The socket stays blocking: with
    /// level-triggered readiness we read only when epoll says a read will
    /// not block, and a request this small fits the empty send buffer.
    /// mio and tokio never register a blocking socket; chapter 2 shows
    /// where this stops being harmless (an edge-triggered loop must read
    /// until nothing is left, and a blocking read of nothing never returns).
    pub(crate) fn open(
        addr: SocketAddr,
        path: &str,
        timeout: Duration,
    ) -> Result<Connection, Error> {
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
    pub(crate) fn on_readable(&mut self) -> Result<Option<Response>, Problem> {
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
