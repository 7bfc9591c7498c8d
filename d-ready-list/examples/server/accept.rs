//! The listening side: the sockets the workers accept from, how each
//! worker's epoll watches them, and `accept4`.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::ptr;
use std::sync::Arc;

use d_ready_list::{Poll, Token, ffi};
use socket2::{Domain, Protocol, Socket, Type};

use crate::cli::ListenerMode;

/// Connections the kernel may complete before a worker accepts them (it
/// caps this at `net.core.somaxconn`). A burst of thousands of connects
/// overflows a short queue, and each dropped handshake costs its client a
/// retry a second or more later.
const BACKLOG: i32 = 4096;

// ANCHOR: listeners
/// The listening sockets, one per worker: the same shared socket for every
/// worker (shared by `Arc`, not duplicated: one fd, and no `fcntl` to
/// duplicate it), or one `SO_REUSEPORT` socket each, all bound to one port.
pub fn listeners(
    addr: SocketAddr,
    workers: usize,
    mode: ListenerMode,
) -> io::Result<Vec<Arc<TcpListener>>> {
    match mode {
        ListenerMode::Shared => {
            let listener = Arc::new(listen(addr, false)?);
            Ok(vec![listener; workers])
        }
        ListenerMode::ReusePort => {
            let first = listen(addr, true)?;
            // Port 0 picked a port for the first socket: the others join it.
            let addr = first.local_addr()?;
            let mut all = vec![Arc::new(first)];
            for _ in 1..workers {
                all.push(Arc::new(listen(addr, true)?));
            }
            Ok(all)
        }
    }
}

/// A non-blocking listener. Non-blocking matters even though it is only
/// read when epoll says so: with several workers, or after the last
/// connection in the queue, the `accept` that finds the queue empty must
/// return `WouldBlock`, not wait.
fn listen(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let nonblocking = Type::from(libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
    let socket = Socket::new(Domain::for_address(addr), nonblocking, Some(Protocol::TCP))?;
    // A restarted server can bind its port again while old connections
    // to it are still in TIME_WAIT.
    socket.set_reuse_address(true)?;
    if reuse_port {
        set_reuse_port(&socket)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

fn set_reuse_port(socket: &Socket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: the fd is open while `socket` lives; the pointer and length
    // describe `on`, an int that lives for the whole call and that the
    // kernel only reads.
    let ret = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_REUSEPORT,
            ptr::from_ref(&on).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
// ANCHOR_END: listeners

// ANCHOR: register_listener
/// Watches a listener, edge-triggered like every source in this chapter.
/// A listener that every worker watches is registered with
/// `EPOLLEXCLUSIVE`, so that a connection wakes one worker, or a few,
/// rather than all of them. The chapter's `Registry` has no such interest
/// (a connection never wants it), so this one registration is made here,
/// on the `Poll`'s own fd.
pub fn register_listener(
    poll: &Poll,
    listener: &TcpListener,
    token: Token,
    exclusive: bool,
) -> io::Result<()> {
    let exclusive = if exclusive {
        libc::EPOLLEXCLUSIVE as u32
    } else {
        0
    };
    let mut event = ffi::EpollEvent {
        events: ffi::EPOLLIN | ffi::EPOLLET | exclusive,
        data: token.0 as u64,
    };
    // SAFETY: both fds are open while `poll` and `listener` are borrowed;
    // `event` lives for the whole call, and the kernel only reads it.
    let ret = unsafe {
        ffi::epoll_ctl(
            poll.as_fd().as_raw_fd(),
            ffi::EPOLL_CTL_ADD,
            listener.as_raw_fd(),
            &mut event,
        )
    };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
// ANCHOR_END: register_listener

// ANCHOR: accept
/// What one `accept4` brought.
#[derive(Debug)]
pub enum Accepted {
    Connection(TcpStream),
    /// The queue is empty: the next connection is a new edge.
    Empty,
    /// No descriptor to put the connection in (`EMFILE`, `ENFILE`, or
    /// the kernel short of memory for one): it stays in the queue.
    NoDescriptor(io::Error),
}

/// Takes one connection from the listener's queue. `accept4` makes the new
/// socket non-blocking and close-on-exec as it creates it: no `fcntl` per
/// connection. `calls` counts the calls, here where they are made.
pub fn accept(listener: &TcpListener, calls: &mut u64) -> io::Result<Accepted> {
    loop {
        *calls += 1;
        // SAFETY: the listener's fd is open while it is borrowed; null
        // address pointers ask for no peer address, which accept4 allows.
        let fd = unsafe {
            libc::accept4(
                listener.as_raw_fd(),
                ptr::null_mut(),
                ptr::null_mut(),
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        if fd >= 0 {
            // SAFETY: accept4 returned a new fd that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            return Ok(Accepted::Connection(TcpStream::from(fd)));
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EAGAIN) => return Ok(Accepted::Empty),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                return Ok(Accepted::NoDescriptor(error));
            }
            // A signal, or a connection that was reset while it waited in
            // the queue (accept(2) says to treat those like EAGAIN and try
            // again): the next one may be fine.
            Some(libc::EINTR | libc::ECONNABORTED | libc::EPROTO) => {}
            _ => return Err(error),
        }
    }
}
// ANCHOR_END: accept
