//! io_uring under the async example's executor: the ring declared by hand,
//! its fd in chapter 4's epoll, operations that own their buffers.
//!
//! Where io_uring is refused (a seccomp profile, `kernel.io_uring_disabled`,
//! an old kernel), each test that needs a ring says on stderr that it was
//! skipped, and why, and passes.

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

use std::fs::{self, File};
use std::future::Future;
use std::io::{self, Read, Write};
use std::mem::{offset_of, size_of};
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::mpsc;
use std::task::{Context, Poll, Waker};
use std::thread;

use client::Answer;
use d_ready_list::delay_server::DelayServer;
use d_ready_list::{Interest, Token};
use executor::{Executor, Report};
use reactor::Reactor;
use support::{PATIENCE, gettid, in_epoll_wait, wait_until, within};
use uring::ffi::{self, CqOffsets, Cqe, Params, SqOffsets, Sqe};
use uring::ops::{self, UringTcp};

/// A reactor with a ring; or, where io_uring is refused, `None`, and a
/// line on stderr that `cargo test` shows even for a passing test.
fn ring_or_skip(test: &str) -> Option<Rc<Reactor>> {
    match Reactor::with_ring() {
        Ok(reactor) => Some(reactor),
        Err(error)
            if matches!(error.raw_os_error(), Some(libc::EPERM | libc::ENOSYS))
                || error.kind() == io::ErrorKind::Unsupported =>
        {
            // Written to the fd, not with `eprintln!`, which the test
            // harness captures.
            let line = format!("{test}: skipped: {}\n", uring::unavailable(&error));
            let _ = io::stderr().write_all(line.as_bytes());
            None
        }
        Err(error) => panic!("io_uring_setup: {error}"),
    }
}

/// Runs one future to its end on `reactor`'s executor.
fn block_on<T: 'static>(
    reactor: &Rc<Reactor>,
    future: impl Future<Output = T> + 'static,
) -> (T, Report) {
    let mut executor = Executor::new(Rc::clone(reactor));
    executor.spawn(future);
    let mut output = None;
    let report = executor
        .run(|done| {
            output = Some(done);
            Ok(())
        })
        .expect("run");
    (output.expect("the task finished"), report)
}

/// A connected TCP pair: ours, for the ring, and the peer's.
fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let ours = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (theirs, _) = listener.accept().expect("accept");
    (ours, theirs)
}

/// Polls `future` once, with a waker that does nothing.
fn poll_once<F: Future + ?Sized>(future: Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

// ANCHOR: layout
#[test]
fn the_entries_and_params_have_the_kernels_layout() {
    // include/uapi/linux/io_uring.h: struct io_uring_sqe.
    assert_eq!(size_of::<Sqe>(), 64);
    let sqe = [
        (offset_of!(Sqe, opcode), 0),
        (offset_of!(Sqe, flags), 1),
        (offset_of!(Sqe, ioprio), 2),
        (offset_of!(Sqe, fd), 4),
        (offset_of!(Sqe, off), 8),
        (offset_of!(Sqe, addr), 16),
        (offset_of!(Sqe, len), 24),
        (offset_of!(Sqe, op_flags), 28),
        (offset_of!(Sqe, user_data), 32),
        (offset_of!(Sqe, buf_index), 40),
        (offset_of!(Sqe, personality), 42),
        (offset_of!(Sqe, splice_fd_in), 44),
        (offset_of!(Sqe, addr3), 48),
    ];
    for (ours, kernels) in sqe {
        assert_eq!(ours, kernels);
    }
    // struct io_uring_cqe, without the 32-byte variant's extra words.
    assert_eq!(size_of::<Cqe>(), 16);
    assert_eq!(offset_of!(Cqe, res), 8);
    assert_eq!(offset_of!(Cqe, flags), 12);
    // struct io_uring_params and its two offset structs.
    assert_eq!(size_of::<SqOffsets>(), 40);
    assert_eq!(size_of::<CqOffsets>(), 40);
    assert_eq!(offset_of!(SqOffsets, array), 24);
    assert_eq!(offset_of!(CqOffsets, cqes), 20);
    assert_eq!(size_of::<Params>(), 120);
    assert_eq!(offset_of!(Params, features), 20);
    assert_eq!(offset_of!(Params, sq_off), 40);
    assert_eq!(offset_of!(Params, cq_off), 80);
}

#[test]
fn the_kernel_answers_in_our_params() {
    let Some(reactor) = ring_or_skip("the_kernel_answers_in_our_params") else {
        return;
    };
    let ring = reactor.ring().expect("a ring");
    let params = ring.params();
    // What we asked for came back where we read it: the sizes, and the
    // completion queue four times as long, as `IORING_SETUP_CQSIZE` asked.
    assert_eq!(params.sq_entries, uring::ENTRIES);
    assert_eq!(params.cq_entries, 4 * uring::ENTRIES);
    assert_ne!(params.features & ffi::IORING_FEAT_NODROP, 0);
    // The offsets are the kernel's: past the head and tail words.
    assert!(params.sq_off.array > params.sq_off.tail);
    assert!(params.cq_off.cqes > params.cq_off.tail);
}
// ANCHOR_END: layout

// ANCHOR: full_queue
#[test]
fn a_round_that_queues_more_than_the_ring_holds_sends_it_all() {
    within(
        PATIENCE,
        "every no-op completes",
        queue_three_rings_of_no_ops,
    );
}

fn queue_three_rings_of_no_ops() {
    let Some(reactor) = ring_or_skip("a_round_that_queues_more_than_the_ring_holds_sends_it_all")
    else {
        return;
    };
    let ring = reactor.ring().expect("a ring");
    let n = 3 * uring::ENTRIES as usize;
    let ids = start_no_ops(ring, n);
    await_no_ops(&reactor, &ids);
    // One enter each time the queue filled, and one for the rest.
    assert_eq!(ring.stats().enters, 3);
    assert_eq!(ring.in_flight(), 0);
}
// ANCHOR_END: full_queue

/// Queues `n` no-ops, and returns their ids.
fn start_no_ops(ring: &uring::ring::Ring, n: usize) -> Vec<u64> {
    let nop = Sqe {
        opcode: ffi::IORING_OP_NOP,
        ..Sqe::default()
    };
    // SAFETY: a no-op points at nothing.
    (0..n)
        .map(|_| unsafe { ring.start(nop) }.expect("queued"))
        .collect()
}

/// Turns the reactor until every one of the no-ops `ids` has completed.
fn await_no_ops(reactor: &Reactor, ids: &[u64]) {
    let ring = reactor.ring().expect("a ring");
    let mut done = vec![false; ids.len()];
    while done.contains(&false) {
        // Sleeps until completions come: a lost entry never comes, and
        // the harness's patience ends the test.
        reactor.turn(|| true).expect("turn");
        for (i, id) in ids.iter().enumerate() {
            if !done[i] {
                let mut cx = Context::from_waker(Waker::noop());
                if let Poll::Ready(result) = ring.poll_op(*id, &mut cx) {
                    assert_eq!(result, 0);
                    done[i] = true;
                }
            }
        }
    }
}

/// More completions than the completion queue holds: the kernel keeps the
/// rest on an overflow list (`IORING_FEAT_NODROP`) and sets
/// `IORING_SQ_CQ_OVERFLOW`, and the reactor must still deliver every one.
#[test]
fn more_completions_than_the_completion_queue_holds_all_arrive() {
    within(PATIENCE, "every no-op completes", || {
        let Some(reactor) =
            ring_or_skip("more_completions_than_the_completion_queue_holds_all_arrive")
        else {
            return;
        };
        let ring = reactor.ring().expect("a ring");
        let cq_entries = ring.params().cq_entries as usize;
        // Five rings of submissions: more than the completion queue holds.
        let ids = start_no_ops(ring, cq_entries + uring::ENTRIES as usize);
        await_no_ops(&reactor, &ids);
        assert_eq!(ring.in_flight(), 0);
    });
}

// ANCHOR: file
#[test]
fn epoll_refuses_a_file_that_the_ring_reads() {
    let path = std::env::temp_dir().join(format!("uring-file-{}", std::process::id()));
    fs::write(&path, b"0123456789abcdef").expect("write the file");
    let file = File::open(&path).expect("open the file");
    fs::remove_file(&path).expect("remove the file");

    // epoll(7): a regular file is always ready, so epoll will not watch it.
    let poll = d_ready_list::Poll::new().expect("poll");
    let refused = poll
        .registry()
        .register(&file, Token(1), Interest::READABLE);
    assert_eq!(
        refused.expect_err("EPERM").raw_os_error(),
        Some(libc::EPERM)
    );

    let Some(reactor) = ring_or_skip("epoll_refuses_a_file_that_the_ring_reads") else {
        return;
    };
    let file = Rc::new(OwnedFd::from(file));
    let on = Rc::clone(&reactor);
    let read = async move { ops::read_at(&on, file, 10, Vec::with_capacity(4)).await };
    let ((n, buffer), _) = block_on(&reactor, read);
    assert_eq!(n.expect("read"), 4);
    assert_eq!(buffer, b"abcd");
}
// ANCHOR_END: file

// ANCHOR: sleeping
#[test]
fn a_completion_wakes_a_task_whose_executor_sleeps_in_epoll_wait() {
    let (ours, mut theirs) = tcp_pair();
    let (send_tid, tid) = mpsc::channel();
    let peer = thread::spawn(move || {
        // No tid: the test was skipped.
        if let Ok(tid) = tid.recv() {
            wait_until(PATIENCE, "the executor sleeps in epoll_wait", || {
                in_epoll_wait(tid)
            });
            theirs.write_all(b"hello").expect("send");
        }
    });
    let received = within(PATIENCE, "the receive completes", move || {
        let reactor =
            ring_or_skip("a_completion_wakes_a_task_whose_executor_sleeps_in_epoll_wait")?;
        send_tid.send(gettid()).expect("the peer waits");
        let stream = UringTcp::from_stream(&reactor, ours);
        let ((n, buffer), report) = block_on(&reactor, async move {
            stream.recv(Vec::with_capacity(64)).await
        });
        Some((n.expect("recv"), buffer, report.reactor.sleeps))
    });
    peer.join().expect("the peer");
    if let Some((n, buffer, sleeps)) = received {
        assert_eq!((n, buffer.as_slice()), (5, &b"hello"[..]));
        assert!(sleeps >= 1, "the executor slept before the completion");
    }
}
// ANCHOR_END: sleeping

// ANCHOR: one_enter
#[test]
fn operations_queued_in_a_round_cost_one_io_uring_enter() {
    const N: usize = 64;
    within(PATIENCE, "the receives complete", || {
        let Some(reactor) = ring_or_skip("operations_queued_in_a_round_cost_one_io_uring_enter")
        else {
            return;
        };
        let ring = reactor.ring().expect("a ring");
        let (ours, mut theirs): (Vec<_>, Vec<_>) = (0..N).map(|_| tcp_pair()).unzip();
        let streams: Vec<UringTcp> = ours
            .into_iter()
            .map(|stream| UringTcp::from_stream(&reactor, stream))
            .collect();
        let before = ring.stats();
        // One round: every task queues its receive, none is sent yet.
        let mut receives: Vec<_> = streams
            .iter()
            .map(|stream| Box::pin(stream.recv(Vec::with_capacity(8))))
            .collect();
        for receive in &mut receives {
            assert!(poll_once(receive.as_mut()).is_pending());
        }
        assert_eq!(
            ring.stats().enters,
            before.enters,
            "nothing sent during the round"
        );
        // The turn after it sends them all, in one call.
        reactor.turn(|| false).expect("turn");
        let after = ring.stats();
        assert_eq!(after.enters - before.enters, 1);
        assert_eq!(after.submitted - before.submitted, N);

        for peer in &mut theirs {
            peer.write_all(b"x").expect("send");
        }
        while !receives.is_empty() {
            reactor.turn(|| true).expect("turn");
            receives.retain_mut(|receive| match poll_once(receive.as_mut()) {
                Poll::Ready((n, _)) => {
                    assert_eq!(n.expect("recv"), 1);
                    false
                }
                Poll::Pending => true,
            });
        }
    });
}
// ANCHOR_END: one_enter

// ANCHOR: kept_buffer
#[test]
fn a_dropped_receive_keeps_its_buffer_until_its_completion() {
    const SIZE: usize = 4096;
    within(PATIENCE, "the abandoned receive completes", || {
        let Some(reactor) = ring_or_skip("a_dropped_receive_keeps_its_buffer_until_its_completion")
        else {
            return;
        };
        let ring = reactor.ring().expect("a ring");
        let (ours, mut theirs) = tcp_pair();
        // A second fd for the same socket, to see what the kernel took.
        let spy = ours.try_clone().expect("dup");
        let stream = UringTcp::from_stream(&reactor, ours);
        let mut receive = Box::pin(stream.recv(Vec::with_capacity(SIZE)));
        assert!(poll_once(receive.as_mut()).is_pending());
        reactor
            .turn(|| false)
            .expect("turn: the receive goes to the kernel");
        // Dropped in flight, as a timeout drops it: its cancellation is
        // queued, but not yet sent.
        drop(receive);
        // Had the buffer been freed, the allocator would hand its block
        // out again now, for a buffer of the same size.
        let fresh = vec![0xaa_u8; SIZE];
        // The bytes arrive before the cancellation: the kernel completes
        // the receive, writing into the buffer it was given.
        theirs.write_all(&[0x55; SIZE]).expect("send");
        while ring.in_flight() > 0 {
            reactor.turn(|| true).expect("turn");
        }
        assert!(
            fresh.iter().all(|&byte| byte == 0xaa),
            "the kernel wrote into freed memory"
        );
        // The receive did take the bytes: nothing is left for the spy.
        spy.set_nonblocking(true).expect("nonblocking");
        let mut rest = [0; 1];
        let left = (&spy).read(&mut rest);
        assert_eq!(
            left.expect_err("nothing left").kind(),
            io::ErrorKind::WouldBlock
        );
        drop(stream);
    });
}
// ANCHOR_END: kept_buffer

// ANCHOR: close
#[test]
fn a_close_goes_with_the_round_and_posts_no_completion() {
    let Some(reactor) = ring_or_skip("a_close_goes_with_the_round_and_posts_no_completion") else {
        return;
    };
    let ring = reactor.ring().expect("a ring");
    let (ours, mut theirs) = tcp_pair();
    drop(UringTcp::from_stream(&reactor, ours));
    // Queued, not sent: the peer has no end of file yet.
    theirs.set_nonblocking(true).expect("nonblocking");
    let mut byte = [0; 1];
    let early = theirs.read(&mut byte);
    assert_eq!(
        early.expect_err("still open").kind(),
        io::ErrorKind::WouldBlock
    );
    let before = ring.stats();
    reactor
        .turn(|| false)
        .expect("turn: the close goes to the kernel");
    let after = ring.stats();
    assert_eq!(after.enters - before.enters, 1);
    assert_eq!(
        after.completions, before.completions,
        "a close posts no completion"
    );
    theirs.set_nonblocking(false).expect("blocking");
    theirs.set_read_timeout(Some(PATIENCE)).expect("timeout");
    assert_eq!(theirs.read(&mut byte).expect("end of file"), 0);
}
// ANCHOR_END: close

// ANCHOR: any_order
#[test]
fn each_completion_reaches_its_own_task_in_any_order() {
    const N: usize = 8;
    let (ours, theirs): (Vec<_>, Vec<_>) = (0..N).map(|_| tcp_pair()).unzip();
    let (send_tid, tid) = mpsc::channel();
    let peers = thread::spawn(move || {
        if let Ok(tid) = tid.recv() {
            wait_until(PATIENCE, "the executor sleeps in epoll_wait", || {
                in_epoll_wait(tid)
            });
            // Last queued, first answered; each a length of its own.
            for (i, mut peer) in theirs.into_iter().enumerate().rev() {
                peer.write_all(&vec![b'a' + i as u8; i + 1]).expect("send");
            }
        }
    });
    let received = within(PATIENCE, "every receive completes", move || {
        let reactor = ring_or_skip("each_completion_reaches_its_own_task_in_any_order")?;
        send_tid.send(gettid()).expect("the peers wait");
        let mut executor = Executor::new(Rc::clone(&reactor));
        for (i, stream) in ours.into_iter().enumerate() {
            let stream = UringTcp::from_stream(&reactor, stream);
            executor.spawn(async move {
                let (n, buffer) = stream.recv(Vec::with_capacity(N)).await;
                (i, n.expect("recv"), buffer)
            });
        }
        let mut received = Vec::new();
        executor
            .run(|got| {
                received.push(got);
                Ok(())
            })
            .expect("run");
        Some(received)
    });
    peers.join().expect("the peers");
    let Some(mut received) = received else {
        return;
    };
    received.sort();
    for (i, n, buffer) in received {
        assert_eq!(
            (n, buffer),
            (i + 1, vec![b'a' + i as u8; i + 1]),
            "task {i}"
        );
    }
}
// ANCHOR_END: any_order

// ANCHOR: same_answers
#[test]
fn the_demo_over_the_ring_answers_as_the_readiness_demo_does() {
    /// Each request's body, or the timeout it ran out of, by request.
    type Answers = Vec<(usize, Result<Vec<u8>, String>)>;
    fn answers(ring: bool) -> Option<Answers> {
        let server = DelayServer::start().expect("server");
        let requests = client::demo_requests();
        let mut answers = Vec::new();
        let keep = |answer: &Answer| {
            let body = answer
                .body
                .clone()
                .map_err(|timed_out| timed_out.to_string());
            answers.push((answer.request, body));
            Ok(())
        };
        if ring {
            let reactor =
                ring_or_skip("the_demo_over_the_ring_answers_as_the_readiness_demo_does")?;
            uring::client::run_on(&reactor, server.addr(), &requests, keep).expect("run");
        } else {
            client::run(server.addr(), &requests, keep).expect("run");
        }
        answers.sort();
        Some(answers)
    }
    let (readiness, ring) = within(PATIENCE, "both demos", || (answers(false), answers(true)));
    let Some(ring) = ring else {
        return;
    };
    assert_eq!(readiness.expect("readiness always runs"), ring);
}
// ANCHOR_END: same_answers

// ANCHOR: refused
#[test]
fn where_io_uring_is_refused_the_reactor_says_why() {
    // A thread of our own, with io_uring refused to it alone, as Docker's
    // default seccomp profile refuses it to a whole container.
    let refused = thread::spawn(|| {
        refuse_io_uring();
        Reactor::with_ring().map(drop)
    });
    let error = refused.join().expect("the thread").expect_err("refused");
    assert_eq!(error.raw_os_error(), Some(libc::EPERM));
    assert!(uring::unavailable(&error).starts_with("io_uring is refused"));
}

/// Installs a seccomp filter on this thread that fails the three io_uring
/// system calls with `EPERM` (what `no-uring.c` does for a whole command).
fn refuse_io_uring() {
    const RET_ERRNO_EPERM: u32 = 0x0005_0000 | libc::EPERM as u32;
    let nr = offset_of!(libc::seccomp_data, nr) as u32;
    let check = |call: libc::c_long, skip: u8| {
        bpf(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            call as u32,
            skip,
            0,
        )
    };
    let filter = [
        bpf(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, nr, 0, 0),
        check(libc::SYS_io_uring_setup, 3),
        check(libc::SYS_io_uring_enter, 2),
        check(libc::SYS_io_uring_register, 1),
        bpf(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW, 0, 0),
        bpf(libc::BPF_RET | libc::BPF_K, RET_ERRNO_EPERM, 0, 0),
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: both calls change only this thread's own attributes; the
    // kernel copies the filter during the second call.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        let program = std::ptr::from_ref(&program);
        assert_eq!(
            libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, program),
            0
        );
    }
}

fn bpf(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}
// ANCHOR_END: refused
