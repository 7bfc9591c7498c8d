//! The `async_client` example's executor and reactor, over real sockets and
//! an embedded delay server.

mod support;

#[path = "../examples/async_client/client.rs"]
mod client;
#[path = "../examples/async_client/executor.rs"]
mod executor;
#[path = "../examples/async_client/reactor.rs"]
mod reactor;

use std::io;
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::task::{Wake, Waker};
use std::thread;
use std::time::Duration;

use client::Answer;
use d_ready_list::cli::Options;
use d_ready_list::delay_server::DelayServer;
use d_ready_list::{Interest, Token};
use executor::Report;
use reactor::Reactor;
use support::{PATIENCE, gettid, in_epoll_wait, pair, send, wait_until, within};

/// Shorter than `PATIENCE`, so that a stalled run ends with the executor's
/// own deadline error rather than the test harness's.
const DEADLINE: Duration = Duration::from_secs(10);

/// Runs the async client for `paths` against a fresh embedded server.
fn run(paths: Vec<String>) -> io::Result<(Vec<Answer>, Report)> {
    within(PATIENCE, "async client run", move || {
        let server = DelayServer::start()?;
        let mut answers = Vec::new();
        let report = client::run(server.addr(), &paths, DEADLINE, |answer| {
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

// ANCHOR: exactly_once
#[test]
fn every_request_is_answered_exactly_once() {
    let (answers, report) = run(demo_paths(12, 0.05)).expect("run succeeds");
    let mut seen: Vec<(usize, String)> = answers
        .iter()
        .map(|a| (a.request, String::from_utf8_lossy(&a.body).into_owned()))
        .collect();
    // The kernel promises no order, so compare as sets.
    seen.sort();
    let expected: Vec<(usize, String)> = (0..12).map(|i| (i, format!("request-{i}"))).collect();
    assert_eq!(seen, expected);
    assert_eq!(report.tasks.len(), 12);
}
// ANCHOR_END: exactly_once

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
    assert_eq!(large.body.len(), 4_000_000);
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
    // Each wait that ends before the deadline brings at least one event.
    assert!(
        report.waits <= report.events + 2,
        "{} epoll waits for {} events",
        report.waits,
        report.events
    );
    // And a loop that never waits would show up as polls instead.
    let polls: usize = report.tasks.iter().map(|task| task.polls).sum();
    assert!(report.waits <= 10, "{} epoll waits", report.waits);
    assert!(polls <= 10, "{polls} polls");
}
// ANCHOR_END: no_busy_loop

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

// ANCHOR: only_those_tokens
#[test]
fn the_reactor_wakes_only_the_tasks_whose_tokens_came_back() {
    let reactor = Reactor::new().unwrap();
    let (quiet, _quiet_peer) = pair();
    let (busy, busy_peer) = pair();
    let (quiet_count, quiet_waker) = counted();
    let (busy_count, busy_waker) = counted();
    reactor
        .arm(&quiet, reactor.token(), Interest::READABLE, &quiet_waker)
        .unwrap();
    reactor
        .arm(&busy, reactor.token(), Interest::READABLE, &busy_waker)
        .unwrap();

    send(&busy_peer, b"x");
    reactor.wait(Some(PATIENCE)).unwrap();
    assert_eq!((wakes(&quiet_count), wakes(&busy_count)), (0, 1));
}
// ANCHOR_END: only_those_tokens

// ANCHOR: rearm
#[test]
fn a_woken_source_is_silent_until_it_is_armed_again() {
    let reactor = Reactor::new().unwrap();
    let (ours, theirs) = pair();
    let token: Token = reactor.token();
    let (count, waker) = counted();
    reactor
        .arm(&ours, token, Interest::READABLE, &waker)
        .unwrap();
    send(&theirs, b"x");
    reactor.wait(Some(PATIENCE)).unwrap();
    assert_eq!(wakes(&count), 1);

    // More bytes, unread, but the one-shot registration has fired: the
    // kernel has nothing to report (a zero timeout: the bytes are already
    // in the socket, so this is no race).
    send(&theirs, b"y");
    reactor.wait(Some(Duration::ZERO)).unwrap();
    assert_eq!(wakes(&count), 1);

    // What a future does when its read would block: arm again. The bytes
    // that came while it was disarmed are reported at once.
    reactor
        .arm(&ours, token, Interest::READABLE, &waker)
        .unwrap();
    reactor.wait(Some(Duration::ZERO)).unwrap();
    assert_eq!(wakes(&count), 2);
}
// ANCHOR_END: rearm

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
        let paths = ["/1500/late".to_string()];
        let mut answers = Vec::new();
        let result = client::run(addr, &paths, DEADLINE, |answer| {
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
    assert_eq!(answers[0].body, b"late");
    // The answer, not the signal, is what ended the wait.
    assert!(answers[0].elapsed >= Duration::from_millis(1500));
    runner.join().unwrap();
}
// ANCHOR_END: signal
