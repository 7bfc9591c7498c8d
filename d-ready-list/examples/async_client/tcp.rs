//! A TCP stream whose connect, reads and writes are futures: the bottom of
//! every chain of `.await`s, where a future meets the kernel.

use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::task::{self, Context, ready};

use d_ready_list::Token;
use socket2::{Domain, Protocol, Socket, Type};

use crate::reactor::{Direction, Reactor, WaiterKey};

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
        AsyncTcp::register(reactor, socket.into())
    }

    /// A stream connected some other way (a test's, say), from now on
    /// driven by the reactor. It may be blocking: make sure it is not.
    #[allow(dead_code)]
    pub fn new(reactor: &Rc<Reactor>, stream: TcpStream) -> io::Result<AsyncTcp> {
        stream.set_nonblocking(true)?;
        AsyncTcp::register(reactor, stream)
    }

    fn register(reactor: &Rc<Reactor>, stream: TcpStream) -> io::Result<AsyncTcp> {
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
/// One future's entry among the tasks that wait on one direction of the
/// stream. The future owns it, so a future dropped while it waits (cut
/// short by a timeout) takes its waker out of the reactor's slot.
struct Waiter<'a> {
    tcp: &'a AsyncTcp,
    direction: Direction,
    /// Set by the first `Pending`: the entry in the reactor's slot.
    key: Option<WaiterKey>,
}

impl AsyncTcp {
    fn waiter(&self, direction: Direction) -> Waiter<'_> {
        Waiter {
            tcp: self,
            direction,
            key: None,
        }
    }
}

impl Waiter<'_> {
    /// Every future below is this: while the reactor says the direction is
    /// ready, try the system call; when it says `WouldBlock`, the readiness
    /// is used up, so clear it, and the next look at the reactor leaves the
    /// task's waker and returns `Pending`.
    fn poll_io<T>(
        &mut self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&TcpStream) -> io::Result<T>,
    ) -> task::Poll<io::Result<T>> {
        let AsyncTcp {
            stream,
            token,
            reactor,
        } = self.tcp;
        loop {
            ready!(reactor.poll_ready(*token, self.direction, &mut self.key, cx))?;
            match op(stream) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    reactor.clear_ready(*token, self.direction);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                result => return task::Poll::Ready(result),
            }
        }
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let tcp = self.tcp;
            tcp.reactor.stop_waiting(tcp.token, self.direction, key);
        }
    }
}
// ANCHOR_END: poll_io

// ANCHOR: ops
impl AsyncTcp {
    /// Done once the kernel reports the socket writable: the connect has
    /// finished, and `SO_ERROR` says whether it failed (chapter 2's rule,
    /// and tokio's). mio's documentation adds a `getpeername` to tell a
    /// finished connect from a spurious event; a socket registered
    /// edge-triggered from the start, whose readiness starts unknown, gets
    /// no such event, so that would be a system call per connect for
    /// nothing.
    pub async fn connected(&self) -> io::Result<()> {
        let done = |stream: &TcpStream| match stream.take_error()? {
            Some(error) => Err(error),
            None => Ok(()),
        };
        let mut waiter = self.waiter(Direction::Write);
        poll_fn(|cx| waiter.poll_io(cx, done)).await
    }

    pub async fn write_all(&self, mut bytes: &[u8]) -> io::Result<()> {
        let mut waiter = self.waiter(Direction::Write);
        while !bytes.is_empty() {
            let write = |mut stream: &TcpStream| stream.write(bytes);
            match poll_fn(|cx| waiter.poll_io(cx, write)).await? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => bytes = &bytes[n..],
            }
        }
        Ok(())
    }

    pub async fn read(&self, buffer: &mut [u8]) -> io::Result<usize> {
        let mut waiter = self.waiter(Direction::Read);
        poll_fn(|cx| waiter.poll_io(cx, |mut stream| stream.read(buffer))).await
    }
}

impl Drop for AsyncTcp {
    /// Deregistered while the fd is still ours; the stream closes after this.
    fn drop(&mut self) {
        self.reactor.deregister(&self.stream, self.token);
    }
}
// ANCHOR_END: ops
