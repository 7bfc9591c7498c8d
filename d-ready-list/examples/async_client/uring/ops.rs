//! Operations on the ring as futures. Unlike a readiness future, which
//! borrows its buffer only while it makes a system call, an operation on
//! the ring lends its buffer to the kernel until the completion: so the
//! operation owns the buffer, given by value and handed back with the
//! result (tokio-uring's way), and a future dropped in flight leaves it
//! with the ring, not with the allocator.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{self, Context, ready};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::ffi::{self, Sqe};
use crate::reactor::Reactor;

// ANCHOR: op
/// One operation on the ring, from its submission to its completion, and
/// `T`: everything the kernel may read or write until then.
#[derive(Debug)]
#[must_use = "an operation does nothing unless awaited"]
pub struct Op<T: 'static> {
    reactor: Rc<Reactor>,
    /// `None` once the result is taken, or if the operation never started.
    id: Option<u64>,
    kept: Option<T>,
    not_started: Option<io::Error>,
}

impl<T: 'static> Op<T> {
    /// Queues `sqe` on the reactor's ring, and keeps `kept` until its
    /// completion (or hands it to the ring if dropped before).
    ///
    /// # Safety
    ///
    /// Every pointer in `sqe` points into heap memory that `kept` owns
    /// (moving `kept` does not move it), or into nothing the kernel reads
    /// or writes; and `kept` keeps its fd open. Only the safe functions
    /// below call it, each building its entry from the buffer it keeps.
    pub unsafe fn start(reactor: &Rc<Reactor>, kept: T, sqe: Sqe) -> Op<T> {
        let started = match reactor.ring() {
            // SAFETY: `kept`, our caller promised, keeps alive what `sqe`
            // points at; this `Op` keeps `kept` until the completion, or
            // `abandon` does when the `Op` is dropped before.
            Some(ring) => unsafe { ring.start(sqe) },
            None => Err(io::Error::other("this reactor has no io_uring")),
        };
        let (id, not_started) = match started {
            Ok(id) => (Some(id), None),
            Err(error) => (None, Some(error)),
        };
        Op {
            reactor: Rc::clone(reactor),
            id,
            kept: Some(kept),
            not_started,
        }
    }
}

impl<T: Unpin + 'static> Future for Op<T> {
    /// The result as a system call gives it (a count, or an error), and
    /// what was lent to the kernel, back.
    type Output = (io::Result<u32>, T);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> task::Poll<Self::Output> {
        let this = &mut *self;
        let result = match (this.id, this.not_started.take()) {
            (Some(id), _) => {
                let ring = this.reactor.ring().expect("an operation started on a ring");
                let result = ready!(ring.poll_op(id, cx));
                this.id = None;
                u32::try_from(result).map_err(|_| io::Error::from_raw_os_error(-result))
            }
            (None, Some(error)) => Err(error),
            (None, None) => panic!("an operation polled after it was done"),
        };
        let kept = this.kept.take().expect("kept until the result");
        task::Poll::Ready((result, kept))
    }
}

impl<T: 'static> Drop for Op<T> {
    /// Dropped in flight (a timeout, a hedged twin that lost): the kernel
    /// may still write into what `kept` holds, so it goes to the ring,
    /// which cancels the operation and frees it when the completion comes.
    fn drop(&mut self) {
        if let (Some(id), Some(ring)) = (self.id, self.reactor.ring()) {
            ring.abandon(id, Box::new(self.kept.take()));
        }
    }
}
// ANCHOR_END: op

// ANCHOR: tcp
/// A TCP stream driven by the ring. The socket is shared (`Rc`) with the
/// operations in flight on it: a number the kernel will look up later
/// must not be closed and reused in between.
#[derive(Debug)]
pub struct UringTcp {
    fd: Option<Rc<OwnedFd>>,
    reactor: Rc<Reactor>,
}

impl UringTcp {
    pub async fn connect(reactor: &Rc<Reactor>, addr: SocketAddr) -> io::Result<UringTcp> {
        // Blocking: the ring never blocks on it (for a socket that is not
        // ready, io_uring arms a poll of its own and retries when it is), so
        // it needs no `SOCK_NONBLOCK`. The readiness path could not use it:
        // there a `recv` on a blocking socket blocks the whole executor.
        // socket2 adds `SOCK_CLOEXEC`.
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        let fd = Rc::new(OwnedFd::from(socket));
        let stream = UringTcp {
            fd: Some(Rc::clone(&fd)),
            reactor: Rc::clone(reactor),
        };
        let addr = Box::new(SockAddr::from(addr));
        let sqe = Sqe {
            opcode: ffi::IORING_OP_CONNECT,
            fd: fd.as_raw_fd(),
            addr: addr.as_ptr() as u64,
            off: u64::from(addr.len()),
            ..Sqe::default()
        };
        // SAFETY: `addr` points into the boxed sockaddr, and the socket is
        // the `Rc`'s: both kept by the operation.
        unsafe { Op::start(reactor, (fd, addr), sqe) }.await.0?;
        Ok(stream)
    }

    /// A stream connected some other way (a test's), from now on driven
    /// by the ring.
    #[allow(dead_code)]
    pub fn from_stream(reactor: &Rc<Reactor>, stream: TcpStream) -> UringTcp {
        UringTcp {
            fd: Some(Rc::new(OwnedFd::from(stream))),
            reactor: Rc::clone(reactor),
        }
    }

    fn fd(&self) -> &Rc<OwnedFd> {
        self.fd.as_ref().expect("open until dropped")
    }

    // ANCHOR: send
    /// Sends from `buffer[..]`; returns how many bytes went, and the buffer.
    pub async fn send(&self, buffer: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let sqe = Sqe {
            opcode: ffi::IORING_OP_SEND,
            fd: self.fd().as_raw_fd(),
            addr: buffer.as_ptr() as u64,
            len: u32::try_from(buffer.len()).unwrap_or(u32::MAX),
            op_flags: libc::MSG_NOSIGNAL as u32,
            ..Sqe::default()
        };
        // SAFETY: `addr` points at the vector's heap block, and the socket
        // is the `Rc`'s: both kept by the operation.
        let op = unsafe { Op::start(&self.reactor, (Rc::clone(self.fd()), buffer), sqe) };
        let (result, (_, buffer)) = op.await;
        (result.map(|n| n as usize), buffer)
    }
    // ANCHOR_END: send

    pub async fn send_all(&self, mut buffer: Vec<u8>) -> io::Result<()> {
        while !buffer.is_empty() {
            let (result, rest) = self.send(buffer).await;
            match result? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => {
                    buffer = rest;
                    buffer.drain(..n);
                }
            }
        }
        Ok(())
    }

    /// Receives into the buffer's spare capacity, and returns how many
    /// bytes came (0: the peer has closed), with the buffer, its length
    /// grown by as many. The buffer must have spare capacity: with none,
    /// 0 would be no end of file.
    pub async fn recv(&self, mut buffer: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        assert!(buffer.capacity() > buffer.len(), "recv into a full buffer");
        let spare = buffer.spare_capacity_mut();
        let sqe = Sqe {
            opcode: ffi::IORING_OP_RECV,
            fd: self.fd().as_raw_fd(),
            addr: spare.as_mut_ptr() as u64,
            len: u32::try_from(spare.len()).unwrap_or(u32::MAX),
            ..Sqe::default()
        };
        // SAFETY: `addr` points at the vector's spare capacity, on its heap
        // block, and the socket is the `Rc`'s: both kept by the operation.
        let op = unsafe { Op::start(&self.reactor, (Rc::clone(self.fd()), buffer), sqe) };
        let (result, (_, mut buffer)) = op.await;
        let result = result.map(|n| n as usize);
        if let Ok(n) = result {
            // SAFETY: the kernel wrote `n` bytes into the spare capacity,
            // no more than it was given.
            unsafe { buffer.set_len(buffer.len() + n) };
        }
        (result, buffer)
    }
}

impl Drop for UringTcp {
    /// Closed through the ring with the round's other entries. If an
    /// abandoned operation still holds the socket, an ordinary `close(2)`
    /// closes it when that operation's completion frees what it kept.
    fn drop(&mut self) {
        let Some(fd) = self.fd.take().and_then(|fd| Rc::try_unwrap(fd).ok()) else {
            return;
        };
        if let Some(ring) = self.reactor.ring() {
            ring.close(fd);
        }
    }
}
// ANCHOR_END: tcp

// ANCHOR: read_at
// The tests and the page use it; the demo does not.
#[allow(dead_code)]
/// Reads a file at `offset` into the buffer's spare capacity: the same
/// operation as a receive, on a file that epoll refuses to watch.
pub async fn read_at(
    reactor: &Rc<Reactor>,
    file: Rc<OwnedFd>,
    offset: u64,
    mut buffer: Vec<u8>,
) -> (io::Result<usize>, Vec<u8>) {
    let spare = buffer.spare_capacity_mut();
    let sqe = Sqe {
        opcode: ffi::IORING_OP_READ,
        fd: file.as_raw_fd(),
        off: offset,
        addr: spare.as_mut_ptr() as u64,
        len: u32::try_from(spare.len()).unwrap_or(u32::MAX),
        ..Sqe::default()
    };
    // SAFETY: `addr` points at the vector's spare capacity, on its heap
    // block, and the file is the `Rc`'s: both kept by the operation.
    let op = unsafe { Op::start(reactor, (file, buffer), sqe) };
    let (result, (_, mut buffer)) = op.await;
    let result = result.map(|n| n as usize);
    if let Ok(n) = result {
        // SAFETY: the kernel wrote `n` bytes into the spare capacity.
        unsafe { buffer.set_len(buffer.len() + n) };
    }
    (result, buffer)
}
// ANCHOR_END: read_at
