//! A TCP stream whose connect, reads and writes are futures: the bottom of
//! every chain of `.await`s, where a future meets the kernel.

use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::task::{self, Context, ready};

use d_ready_list::Token;
use socket2::{Domain, Protocol, Socket, Type};

use crate::reactor::{Direction, Reactor};

// ANCHOR: async_tcp
/// A non-blocking TCP stream, registered with the reactor for as long as
/// it lives.
#[derive(Debug)]
pub struct AsyncTcp {
    stream: TcpStream,
    token: Token,
    reactor: Rc<Reactor>,
}

impl AsyncTcp {
    /// Starts a connect and returns before it is done, as chapter 2 does.
    pub fn connect(reactor: &Rc<Reactor>, addr: SocketAddr) -> io::Result<AsyncTcp> {
        // Non-blocking from the start, as chapter 2's sockets are.
        let nonblocking = Type::from(libc::SOCK_STREAM | libc::SOCK_NONBLOCK);
        let socket = Socket::new(Domain::for_address(addr), nonblocking, Some(Protocol::TCP))?;
        match socket.connect(&addr.into()) {
            Err(error) if error.raw_os_error() != Some(libc::EINPROGRESS) => return Err(error),
            _ => {}
        }
        AsyncTcp::new(reactor, socket.into())
    }

    /// A stream connected some other way (a test's, say), from now on
    /// driven by the reactor.
    pub fn new(reactor: &Rc<Reactor>, stream: TcpStream) -> io::Result<AsyncTcp> {
        stream.set_nonblocking(true)?;
        let token = reactor.register(&stream)?;
        Ok(AsyncTcp {
            stream,
            token,
            reactor: Rc::clone(reactor),
        })
    }
}
// ANCHOR_END: async_tcp

// ANCHOR: poll_io
impl AsyncTcp {
    /// Every future below is this: while the reactor says `direction` is
    /// ready, try the system call; when it says `WouldBlock`, the readiness
    /// is used up, so clear it, and the next look at the reactor leaves the
    /// task's waker and returns `Pending`.
    fn poll_io<T>(
        &self,
        cx: &mut Context<'_>,
        direction: Direction,
        mut op: impl FnMut(&TcpStream) -> io::Result<T>,
    ) -> task::Poll<io::Result<T>> {
        loop {
            ready!(self.reactor.poll_ready(self.token, direction, cx));
            match op(&self.stream) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.reactor.clear_ready(self.token, direction);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                result => return task::Poll::Ready(result),
            }
        }
    }
}
// ANCHOR_END: poll_io

// ANCHOR: ops
impl AsyncTcp {
    /// Done once the socket has a peer; `SO_ERROR` says if the connect failed.
    pub async fn connected(&self) -> io::Result<()> {
        let done = |stream: &TcpStream| match stream.take_error()? {
            Some(error) => Err(error),
            None => stream.peer_addr().map(drop).map_err(|error| {
                if error.raw_os_error() == Some(libc::ENOTCONN) {
                    io::ErrorKind::WouldBlock.into()
                } else {
                    error
                }
            }),
        };
        poll_fn(|cx| self.poll_io(cx, Direction::Write, done)).await
    }

    pub async fn write_all(&self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let write = |mut stream: &TcpStream| stream.write(bytes);
            match poll_fn(|cx| self.poll_io(cx, Direction::Write, write)).await? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => bytes = &bytes[n..],
            }
        }
        Ok(())
    }

    pub async fn read(&self, buffer: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_io(cx, Direction::Read, |mut stream| stream.read(buffer))).await
    }
}

impl Drop for AsyncTcp {
    /// Deregistered while the fd is still ours; the stream closes after this.
    fn drop(&mut self) {
        self.reactor.deregister(&self.stream, self.token);
    }
}
// ANCHOR_END: ops
