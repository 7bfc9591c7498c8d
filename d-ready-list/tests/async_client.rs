//! The `async_client` example's executor, reactor, unpark and timers, over
//! real sockets and an embedded delay server.

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
// The reactor's io_uring hooks need it; these tests make no ring.
#[allow(dead_code)]
#[path = "../examples/async_client/uring/mod.rs"]
mod uring;
#[path = "../examples/async_client/wakes.rs"]
mod wakes;

use std::cell::{Cell, RefCell};
use std::future::{Future, pending, poll_fn};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::thread::JoinHandleExt;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use client::{Answer, Request};
use d_ready_list::cli::Options;
use d_ready_list::delay_server::DelayServer;
use executor::{Executor, Report};
use reactor::{Direction, Reactor};
use support::{PATIENCE, gettid, in_epoll_wait, pair, refusing_addr, send, wait_until, within};
use tcp::AsyncTcp;
use time::{TimedOut, sleep, timeout};

/// Every request's timeout: shorter than `PATIENCE`, so that a stalled
/// run ends with the request's own timeout rather than the harness's.
const DEADLINE: Duration = Duration::from_secs(10);

/// How late something timed may be on a loaded machine, and still be on
/// time: generous, and far below `DEADLINE`.
const LATE: Duration = Duration::from_secs(2);

/// Runs the async client for `paths` against a fresh embedded server.
fn run(paths: Vec<String>) -> io::Result<(Vec<Answer>, Report)> {
    within(PATIENCE, "async client run", move || {
        let server = DelayServer::start()?;
        let requests: Vec<Request> = paths
            .into_iter()
            .map(|path| Request {
                path,
                timeout: DEADLINE,
            })
            .collect();
        let mut answers = Vec::new();
        let report = client::run(server.addr(), &requests, |answer| {
            answers.push(answer.clone());
            Ok(())
        })?;
        Ok((answers, report))
    })
}

fn demo_paths(requests: usize, scale: f64) -> Vec<String> {
    let options = Options {
        requests,
        scale,
        ..Options::default()
    };
    options.paths()
}

fn body(answer: &Answer) -> Vec<u8> {
    answer.body.clone().expect("an answer, not a timeout")
}

/// A connected TCP pair: ours, to hand to the reactor, and the peer's,
/// which the test drives with blocking calls.
fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let ours = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (theirs, _) = listener.accept().expect("accept");
    (ours, theirs)
}

/// Returns `Pending` once, waking itself first: the task goes to the back
/// of the run queue (`tokio::task::yield_now`).
async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
}

/// A waker that only counts, so a test can see which tasks an event woke.
#[derive(Default)]
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counted() -> (Arc<Count>, Waker) {
    let count = Arc::new(Count::default());
    (Arc::clone(&count), Waker::from(count))
}

fn wakes(count: &Count) -> usize {
    count.0.load(Ordering::SeqCst)
}

// ANCHOR: exactly_once
#[test]
fn every_request_is_answered_exactly_once() {
    let (answers, report) = run(demo_paths(12, 0.05)).expect("run succeeds");
    let mut seen: Vec<(usize, String)> = answers
        .iter()
        .map(|a| (a.request, String::from_utf8_lossy(&body(a)).into_owned()))
        .collect();
    // The kernel promises no order, so compare as sets.
    seen.sort();
    let expected: Vec<(usize, String)> = (0..12).map(|i| (i, format!("request-{i}"))).collect();
    assert_eq!(seen, expected);
    assert_eq!(report.tasks.len(), 12);
}
// ANCHOR_END: exactly_once

// ANCHOR: demo
#[test]
fn the_demo_times_out_its_hurried_request_at_its_own_deadline() {
    let requests = client::demo_requests();
    let (answers, _) = within(PATIENCE, "the demo", move || {
        let server = DelayServer::start().unwrap();
        let mut answers = Vec::new();
        client::run(server.addr(), &requests, |answer| {
            answers.push(answer.clone());
            Ok(())
        })
        .map(|report| (answers, report))
        .unwrap()
    });
    assert_eq!(answers.len(), 5);
    let limit = Duration::from_millis(500);
    for answer in &answers {
        if answer.request == 1 {
            assert_eq!(answer.body, Err(TimedOut(limit)));
            assert!(answer.elapsed >= limit, "{answer:?}");
            assert!(answer.elapsed < limit + LATE, "{answer:?}");
        } else {
            let expected = format!("request-{}", answer.request);
            assert_eq!(body(answer), expected.as_bytes());
        }
    }
}
// ANCHOR_END: demo

// ANCHOR: polls_and_wakes
#[test]
fn a_task_is_polled_again_only_after_its_waker_fired() {
    // A large body beside the demo: many reads end in WouldBlock, so that
    // task goes through Pending and its waker many times.
    let mut paths = demo_paths(5, 0.1);
    paths.push("/large/4000000".to_string());
    let (answers, report) = run(paths).expect("run succeeds");
    assert_eq!(answers.len(), 6);
    let large = answers.iter().find(|a| a.request == 5).expect("large body");
    assert_eq!(body(large).len(), 4_000_000);
    for (id, task) in report.tasks.iter().enumerate() {
        // The first poll needs no wake; every later one must follow one.
        assert!(
            task.polls <= task.wakes + 1,
            "task {id} was polled {} times for {} wakes",
            task.polls,
            task.wakes
        );
        assert!(task.polls >= 2, "task {id} never waited: {task:?}");
    }
}
// ANCHOR_END: polls_and_wakes

// ANCHOR: no_busy_loop
#[test]
fn a_long_delay_costs_a_few_waits_not_hundreds() {
    let paths = vec!["/300/slow".to_string(), "/150/quick".to_string()];
    let (answers, report) = run(paths).expect("run succeeds");
    assert_eq!(answers.len(), 2);
    // A loop that never slept would make hundreds of thousands of waits
    // in those 300 ms, and a loop that polled every task on every turn
    // would show up as polls.
    let polls: usize = report.tasks.iter().map(|task| task.polls).sum();
    assert!(report.reactor.waits <= 10, "{:?}", report.reactor);
    assert!(polls <= 10, "{polls} polls");
}
// ANCHOR_END: no_busy_loop

// ANCHOR: no_timer
#[test]
fn with_no_timer_the_executor_sleeps_until_an_event() {
    let report = within(PATIENCE, "a request with no timeout", || {
        let server = DelayServer::start().unwrap();
        let reactor = Reactor::new().unwrap();
        let mut executor = Executor::new(Rc::clone(&reactor));
        let addr = server.addr();
        executor.spawn(async move { client::fetch(&reactor, addr, "/300/untimed").await });
        let mut bodies = Vec::new();
        let report = executor
            .run(|fetched| {
                bodies.push(fetched?);
                Ok(())
            })
            .unwrap();
        assert_eq!(bodies, [b"untimed".to_vec()]);
        report
    });
    // With no timer, each wait lasts until the next event: the connect,
    // then the answer, 300 ms later.
    assert!(report.reactor.waits <= 5, "{:?}", report.reactor);
}
// ANCHOR_END: no_timer

// ANCHOR: only_those_tokens
#[test]
fn an_event_wakes_only_the_tasks_whose_source_and_direction_became_ready() {
    let reactor = Reactor::new().unwrap();
    let (quiet, _quiet_peer) = pair();
    let (busy, busy_peer) = pair();
    let quiet_token = reactor.register(&quiet).unwrap();
    let busy_token = reactor.register(&busy).unwrap();
    let (quiet_count, quiet_waker) = counted();
    let (busy_count, busy_waker) = counted();
    let mut quiet_cx = Context::from_waker(&quiet_waker);
    let mut busy_cx = Context::from_waker(&busy_waker);
    // Both wait to read. Both are writable from the start, which their
    // registration reports: that must wake neither reader.
    assert!(
        reactor
            .poll_ready(quiet_token, Direction::Read, &mut None, &mut quiet_cx)
            .is_pending()
    );
    assert!(
        reactor
            .poll_ready(busy_token, Direction::Read, &mut None, &mut busy_cx)
            .is_pending()
    );

    // The bytes are in the socket before the wait starts: its event is
    // already queued, so the wait returns with it at once.
    send(&busy_peer, b"x");
    reactor.turn(|| true).unwrap();
    assert_eq!((wakes(&quiet_count), wakes(&busy_count)), (0, 1));
}
// ANCHOR_END: only_those_tokens

// ANCHOR: one_wake
#[test]
fn an_event_is_good_for_one_wake() {
    let reactor = Reactor::new().unwrap();
    let (ours, theirs) = pair();
    let token = reactor.register(&ours).unwrap();
    let (count, waker) = counted();
    let mut cx = Context::from_waker(&waker);
    assert!(
        reactor
            .poll_ready(token, Direction::Read, &mut None, &mut cx)
            .is_pending()
    );
    send(&theirs, b"x");
    reactor.turn(|| true).unwrap();
    assert_eq!(wakes(&count), 1);

    // More bytes: a new edge, so a new event. But the task has not asked
    // again (it has not even run), so there is no waker to wake.
    let events = reactor.stats().events;
    send(&theirs, b"y");
    reactor.turn(|| false).unwrap();
    assert!(
        reactor.stats().events > events,
        "the second send brought no event"
    );
    assert_eq!(wakes(&count), 1, "one event woke the task twice");
}
// ANCHOR_END: one_wake

// ANCHOR: readiness_kept
#[test]
fn readiness_that_comes_before_the_task_asks_is_kept() {
    let reactor = Reactor::new().unwrap();
    let (ours, theirs) = pair();
    let token = reactor.register(&ours).unwrap();
    // The event comes while no task waits: edge-triggered, the kernel will
    // not say it again, so the reactor must remember it.
    send(&theirs, b"x");
    reactor.turn(|| true).unwrap();
    let (count, waker) = counted();
    let mut cx = Context::from_waker(&waker);
    assert!(
        reactor
            .poll_ready(token, Direction::Read, &mut None, &mut cx)
            .is_ready(),
        "the readiness reported before the task asked was lost"
    );
    // It was ready, so the task goes on at once and leaves no waker.
    assert_eq!(wakes(&count), 0);
}
// ANCHOR_END: readiness_kept

/// The kernel's view of one fd in an epoll instance's interest list
/// (/proc/self/fdinfo/EPFD, as chapter 1 shows it): its event mask, once
/// per registration of it.
fn interest_masks(epoll: &impl AsFd, fd: RawFd) -> Vec<u32> {
    let path = format!("/proc/self/fdinfo/{}", epoll.as_fd().as_raw_fd());
    let info = std::fs::read_to_string(path).expect("fdinfo");
    info.lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["tfd:", target, "events:", mask, ..] if target.parse() == Ok(fd) => {
                    u32::from_str_radix(mask, 16).ok()
                }
                _ => None,
            }
        })
        .collect()
}

// ANCHOR: registered_once
#[test]
fn a_socket_is_registered_once_for_both_directions_edge_triggered() {
    within(PATIENCE, "reads on one socket", || {
        let reactor = Reactor::new().unwrap();
        let (ours, mut theirs) = tcp_pair();
        let fd = ours.as_raw_fd();
        let stream = AsyncTcp::new(&reactor, ours).unwrap();
        // What we asked for, and the two bits the kernel always adds.
        let both = libc::EPOLLIN
            | libc::EPOLLOUT
            | libc::EPOLLRDHUP
            | libc::EPOLLET
            | libc::EPOLLERR
            | libc::EPOLLHUP;
        let both = both as u32;
        assert_eq!(interest_masks(&*reactor, fd), [both]);

        // A read that waits, an event, a read that succeeds, and one that
        // waits again: the registration is what it was, armed all along.
        let (count, waker) = counted();
        let mut cx = Context::from_waker(&waker);
        let mut buffer = [0; 16];
        let mut read = pin!(stream.read(&mut buffer));
        assert!(read.as_mut().poll(&mut cx).is_pending());
        theirs.write_all(b"x").unwrap();
        while wakes(&count) == 0 {
            reactor.turn(|| true).unwrap();
        }
        assert!(matches!(read.as_mut().poll(&mut cx), Poll::Ready(Ok(1))));
        let mut again = [0; 16];
        let mut read = pin!(stream.read(&mut again));
        assert!(read.as_mut().poll(&mut cx).is_pending());
        assert_eq!(interest_masks(&*reactor, fd), [both]);
    });
}
// ANCHOR_END: registered_once

// ANCHOR: would_block_clears
#[test]
fn a_read_that_would_block_clears_the_readiness_and_waits() {
    within(PATIENCE, "reads on one socket", || {
        let reactor = Reactor::new().unwrap();
        let (ours, mut theirs) = tcp_pair();
        let stream = AsyncTcp::new(&reactor, ours).unwrap();
        theirs.write_all(b"x").unwrap();
        let (count, waker) = counted();
        let mut cx = Context::from_waker(&waker);
        let mut buffer = [0; 16];
        {
            let mut read = pin!(stream.read(&mut buffer));
            assert!(read.as_mut().poll(&mut cx).is_pending());
            // Each turn sleeps until an event; the reader's comes soon.
            while wakes(&count) == 0 {
                reactor.turn(|| true).unwrap();
            }
            assert!(matches!(read.as_mut().poll(&mut cx), Poll::Ready(Ok(1))));
        }
        // Nothing more to read: the read says WouldBlock, the readiness is
        // used up, and the future waits for the next event.
        let mut read = pin!(stream.read(&mut buffer));
        assert!(read.as_mut().poll(&mut cx).is_pending());
    });
}
// ANCHOR_END: would_block_clears

// ANCHOR: reader_and_writer
#[test]
fn a_reader_and_a_writer_on_one_socket_are_both_woken() {
    // More than the kernel buffers on both sides hold, so the writer
    // blocks until the peer reads.
    const BIG: usize = 32 << 20;
    let (ours, mut theirs) = tcp_pair();
    let (tid_tx, tid_rx) = mpsc::channel();
    let (read_tx, read_rx) = mpsc::channel();
    let runner = thread::spawn(move || -> io::Result<Report> {
        tid_tx.send(gettid()).unwrap();
        let reactor = Reactor::new()?;
        let mut executor = Executor::new(Rc::clone(&reactor));
        let stream = Rc::new(AsyncTcp::new(&reactor, ours)?);
        let (reader, r) = (Rc::clone(&stream), Rc::clone(&reactor));
        executor.spawn(async move {
            let read = async {
                let mut hello = Vec::new();
                let mut buffer = [0; 16];
                while hello.len() < 5 {
                    let n = reader.read(&mut buffer).await?;
                    if n == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    hello.extend_from_slice(&buffer[..n]);
                }
                Ok(hello)
            };
            timeout(&r, DEADLINE, read).await?
        });
        let (writer, w) = (stream, reactor);
        executor.spawn(async move {
            let bytes = vec![7; BIG];
            timeout(&w, DEADLINE, writer.write_all(&bytes)).await??;
            Ok(Vec::new())
        });
        executor.run(|output: io::Result<Vec<u8>>| {
            let output = output?;
            if !output.is_empty() {
                let _ = read_tx.send(output);
            }
            Ok(())
        })
    });
    let tid = tid_rx.recv_timeout(PATIENCE).expect("runner started");
    // Both tasks have returned Pending once the thread sleeps in epoll:
    // the reader waiting to read, the writer with full buffers.
    wait_until(PATIENCE, "runner blocked in epoll_wait", || {
        in_epoll_wait(tid)
    });
    theirs.write_all(b"hello").unwrap();
    let read = read_rx.recv_timeout(PATIENCE);
    assert_eq!(
        read.as_deref(),
        Ok(&b"hello"[..]),
        "the reader was not woken"
    );
    let mut received = vec![0; BIG];
    theirs.set_read_timeout(Some(PATIENCE)).unwrap();
    theirs
        .read_exact(&mut received)
        .expect("the writer's bytes");
    runner.join().unwrap().expect("both tasks finish");
}
// ANCHOR_END: reader_and_writer

// ANCHOR: from_another_thread
#[test]
fn a_wake_from_another_thread_ends_the_epoll_wait() {
    let (tid_tx, tid_rx) = mpsc::channel();
    let (waker_tx, waker_rx) = mpsc::channel::<Waker>();
    let (done_tx, done_rx) = mpsc::channel();
    let released = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&released);
    let runner = thread::spawn(move || {
        tid_tx.send(gettid()).unwrap();
        let reactor = Reactor::new().unwrap();
        let mut executor = Executor::new(Rc::clone(&reactor));
        let mut waker_tx = Some(waker_tx);
        let released = poll_fn(move |cx| {
            if let Some(send) = waker_tx.take() {
                send.send(cx.waker().clone()).unwrap();
            }
            if flag.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        // The timer makes the wait long, not endless: without the unpark,
        // the task would finish at the deadline instead.
        executor.spawn(async move { timeout(&reactor, DEADLINE, released).await });
        executor
            .run(|finished| {
                let _ = done_tx.send((finished, Instant::now()));
                Ok(())
            })
            .unwrap()
    });
    let tid = tid_rx.recv_timeout(PATIENCE).expect("runner started");
    let waker = waker_rx.recv_timeout(PATIENCE).expect("the task's waker");
    wait_until(PATIENCE, "runner blocked in epoll_wait", || {
        in_epoll_wait(tid)
    });
    let woken_at = Instant::now();
    released.store(true, Ordering::SeqCst);
    waker.wake();
    let (finished, at) = done_rx.recv_timeout(PATIENCE).expect("the task finished");
    assert_eq!(finished, Ok(()));
    let late = at - woken_at;
    assert!(
        late < LATE,
        "woken from another thread, finished {late:?} later"
    );
    let report = runner.join().unwrap();
    assert!(report.eventfd_writes >= 1, "{report:?}");
}
// ANCHOR_END: from_another_thread

// ANCHOR: own_thread
#[test]
fn a_wake_from_the_executors_own_thread_writes_no_eventfd() {
    let report = within(PATIENCE, "a task that yields", || {
        let reactor = Reactor::new().unwrap();
        let mut executor = Executor::new(reactor);
        executor.spawn(async {
            for _ in 0..1000 {
                yield_now().await;
            }
        });
        executor.run(|()| Ok(())).unwrap()
    });
    assert_eq!(report.tasks[0].wakes, 1000);
    assert_eq!(report.eventfd_writes, 0, "{report:?}");
}
// ANCHOR_END: own_thread

// ANCHOR: wakes_measured
#[test]
fn wakes_from_another_thread_write_the_eventfd_at_most_once_per_sleep() {
    const WAKES: usize = 10_000;
    let report = within(PATIENCE, "wakes from another thread", || {
        wakes::measure(WAKES).unwrap()
    });
    // Only a wake that finds the executor asleep writes; each sleep ends
    // with at most one write, however many wakes it brings.
    assert!(
        report.eventfd_writes <= report.reactor.sleeps,
        "{} eventfd writes for {} sleeps ({WAKES} wakes)",
        report.eventfd_writes,
        report.reactor.sleeps
    );
    assert_eq!(report.tasks[0].wakes, WAKES);
}
// ANCHOR_END: wakes_measured

// ANCHOR: queued_once
#[test]
fn two_wakes_before_a_poll_mean_one_poll() {
    let report = within(PATIENCE, "two tasks", || {
        let reactor = Reactor::new().unwrap();
        let mut executor = Executor::new(reactor);
        let stash: Rc<RefCell<Option<Waker>>> = Rc::default();
        let released = Rc::new(Cell::new(false));
        let (stashed, free) = (Rc::clone(&stash), Rc::clone(&released));
        executor.spawn(poll_fn(move |cx| {
            *stashed.borrow_mut() = Some(cx.waker().clone());
            if free.get() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }));
        executor.spawn(async move {
            let waker = stash.borrow().clone().expect("the first task ran first");
            waker.wake_by_ref();
            waker.wake_by_ref();
            yield_now().await;
            released.set(true);
            waker.wake();
        });
        executor.run(|()| Ok(())).unwrap()
    });
    // Polled first, after the two wakes (once), and after the release.
    assert_eq!(report.tasks[0].wakes, 3);
    assert_eq!(report.tasks[0].polls, 3, "{report:?}");
}
// ANCHOR_END: queued_once

// ANCHOR: stale_wake
#[test]
fn a_wake_after_a_task_finished_is_stale() {
    let (finished, report) = within(PATIENCE, "two tasks", || {
        let reactor = Reactor::new().unwrap();
        let mut executor = Executor::new(reactor);
        let stash: Rc<RefCell<Option<Waker>>> = Rc::default();
        let stashed = Rc::clone(&stash);
        executor.spawn(poll_fn(move |cx| {
            *stashed.borrow_mut() = Some(cx.waker().clone());
            Poll::Ready("first")
        }));
        executor.spawn(async move {
            let waker = stash.borrow().clone().expect("the first task ran first");
            waker.wake();
            // Let the executor reach the stale wake before this task ends.
            yield_now().await;
            "second"
        });
        let mut finished = Vec::new();
        let report = executor
            .run(|name| {
                finished.push(name);
                Ok(())
            })
            .unwrap();
        (finished, report)
    });
    assert_eq!(finished, ["first", "second"]);
    assert_eq!(report.tasks[0].wakes, 1);
    assert_eq!(report.tasks[0].polls, 1, "a finished task was polled again");
}
// ANCHOR_END: stale_wake

// ANCHOR: lone_sleep
#[test]
fn a_lone_sleep_ends_on_time_after_one_wait() {
    const NAP: Duration = Duration::from_millis(100);
    let (slept, report) = within(PATIENCE, "a sleep", || {
        let reactor = Reactor::new().unwrap();
        let mut executor = Executor::new(Rc::clone(&reactor));
        executor.spawn(sleep(&reactor, NAP));
        let start = Instant::now();
        let report = executor.run(|()| Ok(())).unwrap();
        (start.elapsed(), report)
    });
    assert!(slept >= NAP, "woke after {slept:?}");
    assert!(slept < NAP + LATE, "woke after {slept:?}");
    assert!(report.reactor.waits <= 3, "{:?}", report.reactor);
}
// ANCHOR_END: lone_sleep

// ANCHOR: sub_millisecond
#[test]
fn sleeps_under_a_millisecond_wait_rather_than_spin() {
    const SLEEPS: usize = 20;
    let report = within(PATIENCE, "short sleeps", || {
        let reactor = Reactor::new().unwrap();
        let mut executor = Executor::new(Rc::clone(&reactor));
        executor.spawn(async move {
            for _ in 0..SLEEPS {
                sleep(&reactor, Duration::from_micros(500)).await;
            }
        });
        executor.run(|()| Ok(())).unwrap()
    });
    // Rounded up, each wait lasts a whole millisecond and outlasts its
    // sleep; rounded down to zero, the loop asks again and again.
    assert!(
        report.reactor.waits <= SLEEPS + 2,
        "{} waits for {SLEEPS} sleeps",
        report.reactor.waits
    );
}
// ANCHOR_END: sub_millisecond

// ANCHOR: timeout_closes
#[test]
fn a_timeout_shorter_than_the_delay_ends_the_request_at_its_deadline() {
    const LIMIT: Duration = Duration::from_millis(200);
    // A server that reads the request and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (outcome, took, registered) = within(PATIENCE, "a request that times out", move || {
        let reactor = Reactor::new().unwrap();
        let mut executor = Executor::new(Rc::clone(&reactor));
        let r = Rc::clone(&reactor);
        executor.spawn(async move { timeout(&r, LIMIT, client::fetch(&r, addr, "/never")).await });
        let start = Instant::now();
        let mut outcome = None;
        executor
            .run(|result| {
                outcome = Some((result.map(drop).map_err(drop), start.elapsed()));
                Ok(())
            })
            .unwrap();
        let (outcome, took) = outcome.expect("the task finished");
        (outcome, took, reactor.registered())
    });
    assert_eq!(outcome, Err(()), "the request did not time out");
    assert!(took >= LIMIT, "gave up after {took:?}");
    assert!(took < LIMIT + LATE, "gave up after {took:?}");
    assert_eq!(registered, 0, "the connection is still registered");
    // The connection was closed: the server reads the request, then EOF.
    let (mut server_side, _) = listener.accept().unwrap();
    server_side.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut request = Vec::new();
    server_side
        .read_to_end(&mut request)
        .expect("EOF: the client closed the connection");
    assert!(request.starts_with(b"GET /never "));
}
// ANCHOR_END: timeout_closes

// ANCHOR: dropped_timer
#[test]
fn a_dropped_timer_never_wakes_its_task() {
    let report = within(PATIENCE, "a task that drops a timer", || {
        let reactor = Reactor::new().unwrap();
        let mut executor = Executor::new(Rc::clone(&reactor));
        executor.spawn(async move {
            {
                // Set for 50 ms, then dropped at once.
                let mut dropped = sleep(&reactor, Duration::from_millis(50));
                poll_fn(|cx| {
                    let _ = Pin::new(&mut dropped).poll(cx);
                    Poll::Ready(())
                })
                .await;
            }
            sleep(&reactor, Duration::from_millis(150)).await;
        });
        executor.run(|()| Ok(())).unwrap()
    });
    // Only the second timer wakes the task.
    assert_eq!(report.tasks[0].wakes, 1, "{report:?}");
    assert_eq!(report.tasks[0].polls, 2, "{report:?}");
}
// ANCHOR_END: dropped_timer

// ANCHOR: deadline_order
#[test]
fn timers_fire_in_deadline_order_not_the_order_they_were_set() {
    let fired = within(PATIENCE, "five timers", || {
        let reactor = Reactor::new().unwrap();
        let mut executor = Executor::new(Rc::clone(&reactor));
        let fired = Rc::new(RefCell::new(Vec::new()));
        for ms in [50, 10, 40, 20, 30] {
            let (reactor, fired) = (Rc::clone(&reactor), Rc::clone(&fired));
            executor.spawn(async move {
                sleep(&reactor, Duration::from_millis(ms)).await;
                fired.borrow_mut().push(ms);
            });
        }
        // A task that computes past every deadline, so that all five are
        // due in the same turn and their order is the queue's alone.
        executor.spawn(async {
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(80) {
                std::hint::spin_loop();
            }
        });
        executor.run(|()| Ok(())).unwrap();
        fired.take()
    });
    assert_eq!(fired, [10, 20, 30, 40, 50]);
}
// ANCHOR_END: deadline_order

// ANCHOR: answer_beats_deadline
#[test]
fn an_answer_ready_in_the_turn_its_timeout_expires_still_counts() {
    let outcome = within(PATIENCE, "an answer and its deadline", || {
        let reactor = Reactor::new().unwrap();
        let mut executor = Executor::new(Rc::clone(&reactor));
        let (ours, mut theirs) = tcp_pair();
        let looking = ours.try_clone().unwrap();
        let stream = AsyncTcp::new(&reactor, ours).unwrap();
        executor.spawn(async move {
            let mut buffer = [0; 16];
            let read = timeout(
                &reactor,
                Duration::from_millis(20),
                stream.read(&mut buffer),
            );
            read.await
                .map(|n| n.map(|n| buffer[..n].to_vec()).map_err(drop))
        });
        // The answer comes (a peek sees it in our socket without taking
        // it), and then this task computes past the deadline: the next
        // turn finds both the event and the expired timer.
        executor.spawn(async move {
            theirs.write_all(b"x").unwrap();
            while looking.peek(&mut [0]).is_err() {
                std::hint::spin_loop();
            }
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(60) {
                std::hint::spin_loop();
            }
            Ok(Ok(Vec::new()))
        });
        let mut outcome = Vec::new();
        executor
            .run(|result| {
                outcome.push(result);
                Ok(())
            })
            .unwrap();
        outcome
    });
    assert!(
        outcome.contains(&Ok(Ok(b"x".to_vec()))),
        "the answer was thrown away: {outcome:?}"
    );
    assert!(!outcome.contains(&Err(TimedOut(Duration::from_millis(20)))));
}
// ANCHOR_END: answer_beats_deadline

static HANDLED: AtomicUsize = AtomicUsize::new(0);

extern "C" fn count_signal(_: libc::c_int) {
    HANDLED.fetch_add(1, Ordering::SeqCst);
}

// ANCHOR: signal
#[test]
fn a_signal_during_the_wait_does_not_end_the_run() {
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value, and
    // `count_signal` only touches an atomic, which is async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = count_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
            0
        );
    }
    let server = DelayServer::start().unwrap();
    let addr = server.addr();
    let (tid_tx, tid_rx) = mpsc::channel();
    let (result_tx, result_rx) = mpsc::channel();
    let runner = thread::spawn(move || {
        tid_tx.send(gettid()).unwrap();
        let requests = [Request {
            path: "/1500/late".to_string(),
            timeout: DEADLINE,
        }];
        let mut answers = Vec::new();
        let result = client::run(addr, &requests, |answer| {
            answers.push(answer.clone());
            Ok(())
        });
        let _ = result_tx.send(result.map(|_| answers));
    });
    let tid = tid_rx.recv_timeout(PATIENCE).expect("runner started");
    wait_until(PATIENCE, "runner blocked in epoll_wait", || {
        in_epoll_wait(tid)
    });
    // SAFETY: the thread is alive: it cannot finish before the delay server
    // answers, 1.5 s after the request, so its pthread_t is valid.
    let sent = unsafe { libc::pthread_kill(runner.as_pthread_t(), libc::SIGUSR1) };
    assert_eq!(sent, 0);
    wait_until(PATIENCE, "handler ran", || {
        HANDLED.load(Ordering::SeqCst) > 0
    });

    let answers = result_rx.recv_timeout(PATIENCE).expect("run returned");
    let answers = answers.expect("EINTR must not end the run");
    assert_eq!(answers.len(), 1);
    assert_eq!(body(&answers[0]), b"late");
    // The answer, not the signal, is what ended the wait.
    assert!(answers[0].elapsed >= Duration::from_millis(1500));
    runner.join().unwrap();
}
// ANCHOR_END: signal

// ANCHOR: wake_during_the_look
#[test]
fn a_wake_between_the_look_at_the_run_queue_and_the_sleep_is_not_lost() {
    within(PATIENCE, "a wake during the look", || {
        let reactor = Reactor::new().unwrap();
        // A timer far off: a turn that falls asleep wakes only then.
        let (_count, waker) = counted();
        reactor.set_timer(None, Instant::now() + DEADLINE, &waker);
        let unpark = reactor.unpark();
        let before = Instant::now();
        reactor
            .turn(|| {
                // The executor has looked at its run queue and found it
                // empty. Now, before it falls asleep, another thread
                // queues a task and wakes it.
                let unpark = Arc::clone(&unpark);
                thread::spawn(move || unpark.unpark()).join().unwrap();
                true
            })
            .unwrap();
        let took = before.elapsed();
        assert!(took < LATE, "the turn slept {took:?} with a task queued");
    });
}
// ANCHOR_END: wake_during_the_look

// ANCHOR: two_readers
#[test]
fn two_tasks_reading_one_stream_are_both_woken() {
    let (ours, mut theirs) = tcp_pair();
    let (tid_tx, tid_rx) = mpsc::channel();
    let runner = thread::spawn(move || -> io::Result<Vec<(Vec<u8>, Instant)>> {
        tid_tx.send(gettid()).unwrap();
        let reactor = Reactor::new()?;
        let mut executor = Executor::new(Rc::clone(&reactor));
        let stream = Rc::new(AsyncTcp::new(&reactor, ours)?);
        for _ in 0..2 {
            let (reader, r) = (Rc::clone(&stream), Rc::clone(&reactor));
            executor.spawn(async move {
                let mut byte = [0];
                let n = timeout(&r, DEADLINE, reader.read(&mut byte)).await??;
                Ok((byte[..n].to_vec(), Instant::now()))
            });
        }
        drop(stream);
        let mut read = Vec::new();
        executor.run(|output: io::Result<(Vec<u8>, Instant)>| {
            read.push(output?);
            Ok(())
        })?;
        Ok(read)
    });
    let tid = tid_rx.recv_timeout(PATIENCE).expect("runner started");
    // Both readers have returned Pending once the thread sleeps in epoll.
    wait_until(PATIENCE, "runner blocked in epoll_wait", || {
        in_epoll_wait(tid)
    });
    let written_at = Instant::now();
    theirs.write_all(b"ab").unwrap();
    let read = runner.join().unwrap().expect("each reader reads a byte");
    let mut bytes: Vec<&[u8]> = read.iter().map(|(byte, _)| &byte[..]).collect();
    bytes.sort();
    assert_eq!(bytes, [b"a", b"b"]);
    // Woken by the event, not by their timeouts' timers (which would find
    // the readiness the other reader left, and read late).
    for (_, at) in &read {
        let late = *at - written_at;
        assert!(late < LATE, "a reader read {late:?} after the write");
    }
}
// ANCHOR_END: two_readers

// ANCHOR: gave_up
#[test]
fn a_read_given_up_by_its_timeout_leaves_no_waiter_behind() {
    const GAVE_UP: usize = 100;
    let (ours, mut theirs) = tcp_pair();
    let report = within(PATIENCE, "readers that give up", move || {
        let reactor = Reactor::new().unwrap();
        let mut gave_up = Executor::new(Rc::clone(&reactor));
        let stream = Rc::new(AsyncTcp::new(&reactor, ours).unwrap());
        for _ in 0..GAVE_UP {
            let (s, r) = (Rc::clone(&stream), Rc::clone(&reactor));
            gave_up.spawn(async move {
                let mut byte = [0];
                let _ = timeout(&r, Duration::from_millis(1), s.read(&mut byte)).await;
            });
        }
        gave_up.run(|()| Ok(())).unwrap();
        // The stream lives on, and a new reader waits on it: the event
        // that wakes it must wake no one else.
        let mut reads = Executor::new(Rc::clone(&reactor));
        let s = Rc::clone(&stream);
        reads.spawn(async move {
            let mut byte = [0];
            s.read(&mut byte).await.unwrap();
        });
        theirs.write_all(b"x").unwrap();
        reads.run(|()| Ok(())).unwrap();
        gave_up.report()
    });
    // Each task that gave up was woken once, by its timer.
    let stale: usize = report.tasks.iter().map(|task| task.wakes - 1).sum();
    assert_eq!(stale, 0, "{stale} finished tasks woken by the event");
}
// ANCHOR_END: gave_up

// ANCHOR: timeout_from_its_making
#[test]
fn a_timeout_counts_from_when_it_is_made_not_from_its_first_poll() {
    let first_poll = within(PATIENCE, "a timeout awaited late", || {
        let reactor = Reactor::new().unwrap();
        let mut executor = Executor::new(Rc::clone(&reactor));
        executor.spawn(async move {
            let limit = Duration::from_millis(50);
            let mut late = pin!(timeout(&reactor, limit, pending::<()>()));
            // Its 50 ms run out while this sleep waits, before its first
            // poll: that poll must find the time up.
            sleep(&reactor, 2 * limit).await;
            poll_fn(|cx| Poll::Ready(late.as_mut().poll(cx))).await
        });
        let mut outputs = Vec::new();
        executor
            .run(|output| {
                outputs.push(output);
                Ok(())
            })
            .unwrap();
        outputs
    });
    let timed_out = Err(TimedOut(Duration::from_millis(50)));
    assert_eq!(first_poll, [Poll::Ready(timed_out)]);
}
// ANCHOR_END: timeout_from_its_making

thread_local! {
    /// The reactor that `PollsASleep` reaches: a `Waker` must be `Send`,
    /// so it cannot hold the `Rc` itself.
    static REACTOR: RefCell<Option<Rc<Reactor>>> = const { RefCell::new(None) };
}

/// A waker that polls a new sleep and drops it when woken, as an executor
/// that runs its task inside `wake` would.
#[derive(Default)]
struct PollsASleep(AtomicUsize);

impl Wake for PollsASleep {
    fn wake(self: Arc<Self>) {
        REACTOR.with_borrow(|reactor| {
            let reactor = reactor.as_ref().expect("the test sets it");
            let mut other = sleep(reactor, DEADLINE);
            let _ = Pin::new(&mut other).poll(&mut Context::from_waker(Waker::noop()));
        });
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_waker_that_polls_a_sleep_finds_the_timer_queue_free() {
    within(PATIENCE, "a waker that polls a sleep", || {
        let reactor = Reactor::new().unwrap();
        REACTOR.set(Some(Rc::clone(&reactor)));
        let woken = Arc::new(PollsASleep::default());
        let waker = Waker::from(Arc::clone(&woken));
        let mut due = sleep(&reactor, Duration::from_millis(1));
        let first = Pin::new(&mut due).poll(&mut Context::from_waker(&waker));
        assert!(first.is_pending());
        while woken.0.load(Ordering::SeqCst) == 0 {
            reactor.turn(|| true).unwrap();
        }
        REACTOR.set(None);
    });
}

#[test]
fn a_source_the_reactor_no_longer_watches_is_an_error_not_a_retry() {
    let reactor = Reactor::new().unwrap();
    let (ours, _theirs) = pair();
    let token = reactor.register(&ours).unwrap();
    reactor.deregister(&ours, token);
    let (_count, waker) = counted();
    let mut cx = Context::from_waker(&waker);
    match reactor.poll_ready(token, Direction::Read, &mut None, &mut cx) {
        Poll::Ready(Err(error)) => assert_eq!(error.kind(), io::ErrorKind::NotFound),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn a_sleep_of_duration_max_never_ends_and_does_not_panic() {
    let outputs = within(PATIENCE, "Duration::MAX", || {
        let reactor = Reactor::new().unwrap();
        let mut executor = Executor::new(Rc::clone(&reactor));
        executor.spawn(async move {
            let answer = timeout(&reactor, Duration::MAX, async { 42 }).await;
            let short = Duration::from_millis(1);
            let never = timeout(&reactor, short, sleep(&reactor, Duration::MAX)).await;
            (answer, never)
        });
        let mut outputs = Vec::new();
        executor
            .run(|output| {
                outputs.push(output);
                Ok(())
            })
            .unwrap();
        outputs
    });
    assert_eq!(outputs, [(Ok(42), Err(TimedOut(Duration::from_millis(1))))]);
}

#[test]
fn a_refused_connect_is_reported_as_refused() {
    // The connect's end comes as an event, and SO_ERROR says how it ended:
    // nothing else (no getpeername) is needed to tell.
    let kind = within(PATIENCE, "a refused connect", || {
        let reactor = Reactor::new().unwrap();
        let mut executor = Executor::new(Rc::clone(&reactor));
        let addr = refusing_addr();
        executor.spawn(async move { client::fetch(&reactor, addr, "/0/never").await });
        let mut ended = None;
        executor
            .run(|result| {
                ended = Some(result);
                Ok(())
            })
            .unwrap();
        ended
            .expect("the task ended")
            .expect_err("nothing listens")
            .kind()
    });
    assert_eq!(kind, io::ErrorKind::ConnectionRefused);
}
