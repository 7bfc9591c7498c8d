//! What the server adds to the chapter's listener (`d_ready_list::listener`,
//! the same as chapters 2 and 3): one `SO_REUSEPORT` listener per worker,
//! and what each error of `accept4` means for a server that must go on.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::ptr;
use std::sync::Arc;

use d_ready_list::listener;
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
            let listener = Arc::new(listener::listen(addr, BACKLOG)?);
            Ok(vec![listener; workers])
        }
        ListenerMode::ReusePort => {
            let first = listen_reuse_port(addr)?;
            // Port 0 picked a port for the first socket: the others join it.
            let addr = first.local_addr()?;
            let mut all = vec![Arc::new(first)];
            for _ in 1..workers {
                all.push(Arc::new(listen_reuse_port(addr)?));
            }
            Ok(all)
        }
    }
}

/// `listener::listen`, with `SO_REUSEPORT` set before the bind: every
/// socket that binds the port must set it, the first one too.
fn listen_reuse_port(addr: SocketAddr) -> io::Result<TcpListener> {
    let nonblocking = Type::from(libc::SOCK_STREAM | libc::SOCK_NONBLOCK);
    let socket = Socket::new(Domain::for_address(addr), nonblocking, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
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
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}
// ANCHOR_END: listeners

// ANCHOR: accept
/// What one try at the accept queue brought.
#[derive(Debug)]
pub enum Accepted {
    Connection(TcpStream),
    /// The queue is empty: the next connection is a new edge.
    Empty,
    /// No descriptor to put the connection in (`EMFILE`, `ENFILE`, or
    /// the kernel short of memory for one): it stays in the queue, and
    /// trying again at once fails again.
    NoDescriptor(io::Error),
}

/// Takes one connection from the listener's queue with the chapter's
/// `listener::accept` (`accept4`, the new socket non-blocking and
/// close-on-exec as it is made), and sorts its errors: those about one
/// client are skipped, those about the process pause accepting, and the
/// rest (a bad fd, a socket that is no listener) are the program's own
/// bug. `calls` counts the `accept4` calls: every one the server makes
/// goes through here.
pub fn accept(listener: &TcpListener, calls: &mut u64) -> io::Result<Accepted> {
    loop {
        *calls += 1;
        let error = match listener::accept(listener) {
            Ok(stream) => return Ok(Accepted::Connection(stream)),
            Err(error) => error,
        };
        match error.raw_os_error() {
            Some(libc::EAGAIN) => return Ok(Accepted::Empty),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                return Ok(Accepted::NoDescriptor(error));
            }
            // A signal; a connection reset while it waited in the queue;
            // the network errors that accept(2) says Linux passes on from
            // the new socket, to be treated like EAGAIN; and EPERM, a
            // firewall rule that refused this one connection. Each took
            // its connection out of the queue: the next may be fine.
            Some(
                libc::EINTR
                | libc::ECONNABORTED
                | libc::EPROTO
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
                | libc::EPERM,
            ) => {}
            _ => return Err(error),
        }
    }
}
// ANCHOR_END: accept
