//! The other side of the socket: a listening socket, and accepting from it
//! under edge-triggered epoll. The program of this book is a client and does
//! not use it; the tests do, and the server after chapter 4 accepts the
//! same way.
//!
//! A *listening socket* is a TCP socket that only waits for connections
//! (`listen`). The kernel completes each client's handshake on its own and
//! puts the new connection in the listener's *accept queue*, where it waits
//! until the program takes it with `accept`. The queue's length is capped
//! by the *backlog* given to `listen`. The listener is readable while the
//! queue is not empty, and under `EPOLLET` an edge means "connections
//! arrived", not "one connection arrived": several may wait behind one edge.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr;

use socket2::{Domain, Protocol, Socket, Type};

// ANCHOR: listen
/// A non-blocking listening socket on `addr` whose accept queue holds up
/// to `backlog` connections. Non-blocking, so that an `accept` with the
/// queue empty says `WouldBlock` instead of waiting for the next client.
/// (socket2 makes every socket close-on-exec as well.)
///
/// `SO_REUSEADDR`, as std's `TcpListener::bind` sets it: a server that
/// closed its connections first leaves them in `TIME_WAIT` for a minute,
/// and without it no listener could bind their port until they are gone.
pub fn listen(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let nonblocking = Type::from(libc::SOCK_STREAM | libc::SOCK_NONBLOCK);
    let socket = Socket::new(Domain::for_address(addr), nonblocking, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}
// ANCHOR_END: listen

// ANCHOR: accept
/// Takes one connection from the accept queue, or fails with `WouldBlock`
/// if it is empty. The new socket is born non-blocking and close-on-exec:
/// `accept4` sets both as it makes the socket. After a plain `accept`,
/// std's `set_nonblocking` would cost one more system call on every
/// connection (`ioctl(FIONBIO)`), socket2's two (`fcntl` to read the
/// flags, and to set them), and close-on-exec one more.
pub fn accept(listener: &TcpListener) -> io::Result<TcpStream> {
    // SAFETY: the listener's fd is open while it is borrowed. The address
    // and its length may both be null (we do not ask who connected), and
    // then accept4 writes through neither.
    let fd = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            ptr::null_mut(),
            ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: accept4 returned a new fd, open, that nothing else owns.
    Ok(TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}
// ANCHOR_END: accept

// ANCHOR: accept_until_would_block
/// What an edge on the listener asks for: accept until the queue is empty.
/// One edge can stand for many connections, and those left in the queue
/// get no edge of their own: they wait, unseen, until another client
/// connects. Everything accepted is pushed onto `accepted`.
///
/// Any error but `WouldBlock` ends the loop and is returned, with some
/// connections maybe still queued and no edge to come for them: the
/// caller must act, and call again once it can. Retrying at once would
/// spin, since the errors `accept4` can give here are about this process
/// or the system, not about one client: out of descriptors (`EMFILE`,
/// `ENFILE`) or memory. (Linux reports a client that gave up,
/// `ECONNABORTED`, only to a caller that asks for the client's address,
/// and we ask for none.)
pub fn accept_until_would_block(
    listener: &TcpListener,
    accepted: &mut Vec<TcpStream>,
) -> io::Result<()> {
    loop {
        match accept(listener) {
            Ok(stream) => accepted.push(stream),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(error) => return Err(error),
        }
    }
}
// ANCHOR_END: accept_until_would_block
