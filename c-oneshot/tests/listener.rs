//! The listening side: an edge-triggered listener must accept until
//! `WouldBlock`, and what it accepts is born non-blocking and close-on-exec;
//! and several epolls watching one listener, with and without
//! `EPOLLEXCLUSIVE`.

mod support;

use std::ffi::c_int;
use std::io::{self, ErrorKind};
use std::mem;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

use c_oneshot::listener::{accept, accept_until_would_block, listen};
use c_oneshot::{Events, Interest, Poll, Token, Waker};
use support::{PATIENCE, gettid, in_epoll_wait, wait_until, within};

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
    let poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(8);
    let (listener, _clients) = listener_with_waiting_clients(&poll);
    poll.poll(&mut events, Some(PATIENCE)).unwrap();
    assert_eq!(tokens(&events), [LISTENER], "four connections, one edge");
    let _first = accept(&listener).expect("accept");
    poll.poll(&mut events, Some(STALL)).unwrap();
    assert!(events.is_empty(), "no new edge: {:?}", tokens(&events));
    assert_eq!(accept_queue(&listener), CLIENTS - 1, "left waiting");

    // Accept until WouldBlock, as this chapter does: one edge, all four.
    let poll = Poll::new().unwrap();
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

    let poll = Poll::new().unwrap();
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

// ANCHOR: herd
/// How many workers watch the one listener, each with an epoll of its own.
const WORKERS: usize = 4;

const STOP: Token = Token(1);

/// What a worker's one wait brought: whether the listener's event came.
#[derive(Clone, Copy, Debug)]
struct Woke {
    worker: usize,
    for_listener: bool,
}

/// One connection arrives at a listener that `WORKERS` threads watch, each
/// blocked in `epoll_wait` on its own `Poll`. Returns how many were handed
/// the listener's event.
///
/// Nobody accepts the connection, so the listener stays readable and every
/// worker the kernel woke for it finds the event when it looks. (Had one
/// accepted first, the others would find nothing ready, and the kernel
/// would put them back to sleep without returning: woken, but invisibly.)
fn wakes_for_one_connection(exclusive: bool) -> usize {
    let listener = Arc::new(listen("127.0.0.1:0".parse().unwrap(), 128).expect("listen"));
    let (woke, answers) = mpsc::channel();
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let poll = Arc::new(Poll::new().unwrap());
        let registry = poll.registry();
        if exclusive {
            registry.register_exclusive(&*listener, LISTENER, Interest::READABLE)
        } else {
            registry.register(&*listener, LISTENER, Interest::READABLE)
        }
        .unwrap();
        let stop = Waker::new(registry, STOP).unwrap();
        let (tid, tids) = mpsc::channel();
        let (waiter, woke) = (Arc::clone(&poll), woke.clone());
        let thread = thread::spawn(move || {
            tid.send(gettid()).unwrap();
            let mut events = Events::with_capacity(8);
            waiter.poll(&mut events, None).unwrap();
            let for_listener = events.iter().any(|event| event.token() == LISTENER);
            let _ = woke.send(Woke {
                worker,
                for_listener,
            });
        });
        let tid = tids.recv_timeout(PATIENCE).expect("worker started");
        workers.push((poll, stop, tid, thread));
    }
    for (_, _, tid, _) in &workers {
        wait_until(PATIENCE, "worker blocked in epoll_wait", || {
            in_epoll_wait(*tid)
        });
    }

    let _client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let mut answered = vec![answers.recv_timeout(PATIENCE).expect("a worker wakes")];
    if !exclusive {
        // Each of them is handed the event, so each answers.
        for _ in 1..WORKERS {
            answered.push(answers.recv_timeout(PATIENCE).expect("every worker wakes"));
        }
    } else {
        // Fewer than all may wake. Wait until every worker has either
        // answered or is still asleep with nothing ready in its epoll, then
        // stop the sleepers: they were not handed the listener's event.
        wait_until(PATIENCE, "every worker answered or asleep", || {
            answered.extend(answers.try_iter());
            workers.iter().enumerate().all(|(i, (poll, _, tid, _))| {
                answered.iter().any(|woke| woke.worker == i)
                    || (in_epoll_wait(*tid) && !has_events(poll))
            })
        });
    }
    for (_, stop, _, _) in &workers {
        stop.wake().unwrap();
    }
    for (_, _, _, thread) in workers {
        thread.join().expect("worker");
    }
    answered.extend(answers.try_iter());
    assert_eq!(answered.len(), WORKERS, "{answered:?}");
    let woken = answered.iter().filter(|woke| woke.for_listener).count();
    println!("EPOLLEXCLUSIVE {exclusive}: {woken} of {WORKERS} workers woke for one connection");
    woken
}

#[test]
fn one_connection_wakes_every_epoll_watching_the_listener_unless_exclusive() {
    // The thundering herd: every worker wakes, and only one can accept.
    assert_eq!(wakes_for_one_connection(false), WORKERS);
    // EPOLLEXCLUSIVE: one or more wake (epoll_ctl(2) promises no fewer),
    // and not the whole herd.
    let woken = wakes_for_one_connection(true);
    assert!((1..WORKERS).contains(&woken), "{woken} of {WORKERS} woke");
}
// ANCHOR_END: herd

/// Whether `poll` has an event ready, looked at without taking it.
fn has_events(poll: &Poll) -> bool {
    let mut fd = libc::pollfd {
        fd: poll.as_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd, live for the call, with an fd open while `poll`
    // is borrowed; a zero timeout only looks.
    let ready = unsafe { libc::poll(&mut fd, 1, 0) };
    assert!(ready >= 0, "poll: {}", io::Error::last_os_error());
    ready == 1
}
