//! The listening side: an edge-triggered listener must accept until
//! `WouldBlock`, and what it accepts is born non-blocking and close-on-exec.

mod support;

use std::ffi::c_int;
use std::io::{self, ErrorKind};
use std::mem;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use b_edge_triggered::listener::{accept, accept_until_would_block, listen};
use b_edge_triggered::{Events, Interest, Poll, Token};
use support::{PATIENCE, wait_until, within};

const LISTENER: Token = Token(0);

/// How many clients connect at once.
const CLIENTS: usize = 4;

/// How long a wait may find nothing before we call the listener stalled.
const STALL: Duration = Duration::from_millis(300);

/// How many connections wait in `listener`'s accept queue: what `ss -lt`
/// shows as Recv-Q. For a listening socket the kernel reports it in
/// `TCP_INFO`, in the field that means "unacknowledged" on a connection.
fn accept_queue(listener: &TcpListener) -> usize {
    // SAFETY: tcp_info is plain integers, for which all zeroes is valid.
    let mut info: libc::tcp_info = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the fd is open while `listener` is borrowed; the pointer and
    // `len` describe `info`, and the kernel writes at most `len` bytes.
    let ret = unsafe {
        libc::getsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    assert_eq!(ret, 0, "TCP_INFO: {}", io::Error::last_os_error());
    info.tcpi_unacked as usize
}

/// A listener registered edge-triggered in `poll`, with `CLIENTS`
/// connections waiting in its accept queue, and the clients (kept open).
fn listener_with_waiting_clients(poll: &Poll) -> (TcpListener, Vec<TcpStream>) {
    let listener = listen("127.0.0.1:0".parse().unwrap(), 128).expect("listen");
    poll.registry()
        .register(&listener, LISTENER, Interest::READABLE)
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let clients = (0..CLIENTS)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    // A connect returns once the client's side of the handshake is done;
    // the server's side may queue the connection a moment later.
    wait_until(PATIENCE, "every connection in the accept queue", || {
        accept_queue(&listener) == CLIENTS
    });
    (listener, clients)
}

fn tokens(events: &Events) -> Vec<Token> {
    events.iter().map(|event| event.token()).collect()
}

// ANCHOR: accept_stall
#[test]
fn one_accept_per_edge_leaves_connections_queued_and_accepting_to_would_block_takes_all() {
    // Accept once per event, as a level-triggered loop may: four clients
    // are one edge, one accept, and the other three wait unseen.
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(8);
    let (listener, _clients) = listener_with_waiting_clients(&poll);
    poll.poll(&mut events, Some(PATIENCE)).unwrap();
    assert_eq!(tokens(&events), [LISTENER], "four connections, one edge");
    let _first = accept(&listener).expect("accept");
    poll.poll(&mut events, Some(STALL)).unwrap();
    assert!(events.is_empty(), "no new edge: {:?}", tokens(&events));
    assert_eq!(accept_queue(&listener), CLIENTS - 1, "left waiting");

    // Accept until WouldBlock, as this chapter does: one edge, all four.
    let mut poll = Poll::new().unwrap();
    let (listener, _clients) = listener_with_waiting_clients(&poll);
    poll.poll(&mut events, Some(PATIENCE)).unwrap();
    assert_eq!(tokens(&events), [LISTENER]);
    let accepted = within(PATIENCE, "accept until WouldBlock", move || {
        let mut accepted = Vec::new();
        accept_until_would_block(&listener, &mut accepted).expect("accept");
        (accepted.len(), accept_queue(&listener))
    });
    assert_eq!(accepted, (CLIENTS, 0), "(accepted, left in the queue)");
}
// ANCHOR_END: accept_stall

// ANCHOR: accept4_flags
/// The flag `fcntl(F_GETFL)` or `fcntl(F_GETFD)` reports for `fd`.
fn has_flag(fd: &impl AsRawFd, command: c_int, flag: c_int) -> bool {
    // SAFETY: F_GETFL and F_GETFD take no argument and only read the flags
    // of an fd that is open while it is borrowed.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), command) };
    assert!(flags >= 0, "fcntl: {}", io::Error::last_os_error());
    flags & flag != 0
}

#[test]
fn the_listener_and_what_it_accepts_are_non_blocking_and_close_on_exec() {
    let listener = listen("127.0.0.1:0".parse().unwrap(), 128).expect("listen");
    let addr = listener.local_addr().unwrap();
    // With the queue empty, a non-blocking listener says so at once. (A
    // blocking one would wait here for a client that never comes.)
    let (listener, empty) = within(Duration::from_secs(5), "accept, queue empty", move || {
        let empty = accept(&listener).map(drop);
        (listener, empty)
    });
    assert_eq!(empty.unwrap_err().kind(), ErrorKind::WouldBlock);

    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(8);
    poll.registry()
        .register(&listener, LISTENER, Interest::READABLE)
        .unwrap();
    let _client = TcpStream::connect(addr).expect("connect");
    poll.poll(&mut events, Some(PATIENCE)).unwrap();
    assert_eq!(tokens(&events), [LISTENER]);
    let stream = accept(&listener).expect("accept");
    assert!(has_flag(&stream, libc::F_GETFL, libc::O_NONBLOCK));
    assert!(has_flag(&stream, libc::F_GETFD, libc::FD_CLOEXEC));
    assert!(has_flag(&listener, libc::F_GETFD, libc::FD_CLOEXEC));
}
// ANCHOR_END: accept4_flags
