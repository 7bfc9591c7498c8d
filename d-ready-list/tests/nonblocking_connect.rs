//! A non-blocking connect returns at once; epoll reports when it finishes,
//! and `SO_ERROR` says whether it worked.

mod support;

use std::net::{SocketAddr, TcpListener};

use d_ready_list::{Events, Interest, Poll, Token};
use socket2::{Domain, Socket, Type};
use support::{PATIENCE, refusing_addr};

/// Starts a non-blocking connect to `addr` and registers it for both
/// directions, as the client does.
fn start_connect(poll: &Poll, addr: SocketAddr) -> Socket {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_nonblocking(true).unwrap();
    let error = socket
        .connect(&addr.into())
        .expect_err("a non-blocking connect cannot finish at once");
    assert_eq!(error.raw_os_error(), Some(libc::EINPROGRESS));
    poll.registry()
        .register(&socket, Token(1), Interest::READABLE | Interest::WRITABLE)
        .unwrap();
    socket
}

// ANCHOR: refused
#[test]
fn a_refused_connect_is_reported_by_an_event_and_explained_by_so_error() {
    let addr = refusing_addr();
    let poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(8);
    let socket = start_connect(&poll, addr);

    poll.poll(&mut events, Some(PATIENCE)).unwrap();
    let event = events
        .iter()
        .next()
        .expect("the failed connect is an event");
    assert_eq!(event.token(), Token(1));
    assert!(event.is_error());

    let error = socket
        .take_error()
        .unwrap()
        .expect("SO_ERROR holds the reason");
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
    // Reading SO_ERROR clears it: look once, and keep what you found.
    assert!(socket.take_error().unwrap().is_none());
}
// ANCHOR_END: refused

#[test]
fn a_successful_connect_is_reported_writable_with_no_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(8);
    let socket = start_connect(&poll, listener.local_addr().unwrap());

    poll.poll(&mut events, Some(PATIENCE)).unwrap();
    let event = events
        .iter()
        .next()
        .expect("the finished connect is an event");
    assert!(event.is_writable() && !event.is_error() && !event.is_readable());
    assert!(socket.take_error().unwrap().is_none());
}
