//! What a cancelled operation leaves behind: nothing, once its completion
//! has come. Its own test binary, so that counting the process's open fds
//! sees no other test's sockets; the tests in it take turns.

// The example's modules have parts that only its demo uses.
#![allow(dead_code)]

mod support;

#[path = "../examples/async_client/client.rs"]
mod client;
#[path = "../examples/async_client/executor.rs"]
mod executor;
#[path = "../examples/async_client/reactor.rs"]
mod reactor;
#[path = "../examples/async_client/tcp.rs"]
mod tcp;
#[path = "../examples/async_client/time.rs"]
mod time;
#[path = "../examples/async_client/timers.rs"]
mod timers;
#[path = "../examples/async_client/trace.rs"]
mod trace;
#[path = "../examples/async_client/unpark.rs"]
mod unpark;
#[path = "../examples/async_client/uring/mod.rs"]
mod uring;

use std::cell::RefCell;
use std::future::Future;
use std::io::{self, Write};
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::Mutex;
use std::task::{Context, Waker};
use std::time::Duration;

use client::Request;
use reactor::Reactor;
use support::{PATIENCE, open_fds, within};
use uring::ffi::{self, Sqe};
use uring::ops::Op;

/// One test at a time: they count the process's fds.
static TURNS: Mutex<()> = Mutex::new(());

/// As in `tests/uring.rs`: `None`, said on stderr, where io_uring is refused.
fn ring_or_skip(test: &str) -> Option<Rc<Reactor>> {
    match Reactor::with_ring() {
        Ok(reactor) => Some(reactor),
        Err(error)
            if matches!(error.raw_os_error(), Some(libc::EPERM | libc::ENOSYS))
                || error.kind() == io::ErrorKind::Unsupported =>
        {
            let line = format!("{test}: skipped: {}\n", uring::unavailable(&error));
            let _ = io::stderr().write_all(line.as_bytes());
            None
        }
        Err(error) => panic!("io_uring_setup: {error}"),
    }
}

/// The kernel's own view of a ring, from /proc: its queues' heads and
/// tails, and the requests waiting on a socket (`PollList`).
fn fdinfo(ring: &impl AsFd) -> (bool, usize) {
    try_fdinfo(ring.as_fd().as_raw_fd()).expect("fdinfo")
}

/// As `fdinfo`, for an fd that may be closed already.
fn try_fdinfo(ring: RawFd) -> io::Result<(bool, usize)> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{ring}"))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(|value| value.trim().to_string())
    };
    let queues_empty = field("SqHead") == field("SqTail") && field("CqHead") == field("CqTail");
    let polls = text
        .lines()
        .skip_while(|line| !line.starts_with("PollList:"))
        .skip(1)
        .take_while(|line| line.starts_with(char::is_whitespace))
        .count();
    Ok((queues_empty, polls))
}

// ANCHOR: timed_out
#[test]
fn a_timed_out_request_cancels_its_operations_and_leaks_nothing() {
    let _turn = TURNS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    within(PATIENCE, "the cancelled receive completes", || {
        let test = "a_timed_out_request_cancels_its_operations_and_leaks_nothing";
        let Some(reactor) = ring_or_skip(test) else {
            return;
        };
        let ring = reactor.ring().expect("a ring");
        // A server that never answers: the kernel completes the handshake
        // for the listener's backlog, and nobody ever reads or writes.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let before = open_fds();
        let requests = [Request {
            path: "/0/never".into(),
            timeout: Duration::from_millis(100),
        }];
        let mut timed_out = 0;
        uring::client::run_on(
            &reactor,
            listener.local_addr().expect("addr"),
            &requests,
            |answer| {
                timed_out += usize::from(answer.body.is_err());
                Ok(())
            },
        )
        .expect("run");
        assert_eq!(timed_out, 1);
        // The timeout dropped the receive in flight: its cancellation is
        // queued; the next turns send it, and the receive's completion
        // frees what it kept, the socket with it (an ordinary close(2):
        // the receive, not the stream, held the socket's last `Rc`).
        assert!(ring.in_flight() > 0);
        while ring.in_flight() > 0 {
            reactor.turn(|| true).expect("turn");
        }
        assert!(ring.stats().cancels >= 1);
        assert_eq!(open_fds(), before, "the request's socket is closed");
        assert_eq!(fdinfo(ring), (true, 0), "nothing left in the kernel's ring");
    });
}
// ANCHOR_END: timed_out

// ANCHOR: dropped_reactor
#[test]
fn a_reactor_dropped_with_operations_in_flight_waits_for_them_then_frees() {
    let _turn = TURNS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    within(PATIENCE, "the reactor's drop returns", || {
        let test = "a_reactor_dropped_with_operations_in_flight_waits_for_them_then_frees";
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let before = open_fds();
        let Some(reactor) = ring_or_skip(test) else {
            return;
        };
        let stream = std::net::TcpStream::connect(addr).expect("connect");
        // A receive that keeps, beside its buffer and its socket, a witness
        // that looks at the ring when the ring frees it.
        let saw = Rc::new(RefCell::new(None));
        let witness = Witness {
            ring: reactor.ring().expect("a ring").as_fd().as_raw_fd(),
            saw: Rc::clone(&saw),
        };
        let mut buffer = Vec::<u8>::with_capacity(64);
        let sqe = Sqe {
            opcode: ffi::IORING_OP_RECV,
            fd: stream.as_raw_fd(),
            addr: buffer.spare_capacity_mut().as_mut_ptr() as u64,
            len: 64,
            ..Sqe::default()
        };
        // SAFETY: `addr` points at the vector's heap block, and the socket
        // is the stream's: both kept by the operation.
        let receive = unsafe { Op::start(&reactor, (stream, buffer, witness), sqe) };
        let mut receive = Box::pin(receive);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(receive.as_mut().poll(&mut cx).is_pending());
        reactor
            .turn(|| false)
            .expect("turn: the receive goes to the kernel");
        // Everything dropped at once, as when a program returns from main
        // with a request in flight.
        drop(receive);
        drop(reactor);
        // Freed after its completion, the witness found the ring still
        // open and nothing in it; freed without the wait, after the ring's
        // fd was closed, it found no ring.
        let saw = saw.borrow_mut().take().expect("the witness was freed");
        assert_eq!(
            saw.expect("the ring was open when the receive's completion freed its buffer"),
            (true, 0),
            "nothing left in the kernel's ring"
        );
        assert_eq!(open_fds(), before, "socket, ring, epoll and eventfd closed");
    });
}
// ANCHOR_END: dropped_reactor

/// Kept by an operation beside its buffer: when the ring frees it, it
/// reads the ring's fdinfo, which exists only while the ring's fd is open.
struct Witness {
    ring: RawFd,
    saw: Rc<RefCell<Option<Sight>>>,
}

/// What the witness read: the ring's queues empty, and its `PollList`.
type Sight = io::Result<(bool, usize)>;

impl Drop for Witness {
    fn drop(&mut self) {
        *self.saw.borrow_mut() = Some(try_fdinfo(self.ring));
    }
}
