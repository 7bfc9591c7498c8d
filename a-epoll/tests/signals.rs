//! A signal can end `epoll_wait` early with `EINTR`; `Poll::poll` must wait
//! on instead of reporting an error.
//!
//! Each test waits until the polling thread is really blocked in the
//! epoll_wait system call (as /proc shows it) before signalling it, so the
//! signal lands in the wait and not before or after it.

mod support;

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::thread::JoinHandleExt;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use a_epoll::{Events, Interest, Poll, Token};
use support::{PATIENCE, gettid, in_epoll_wait, pair, send, wait_until};

/// A thread blocked in epoll_wait, and the channel its answer comes on.
struct Waiter<T> {
    thread: thread::JoinHandle<()>,
    tid: libc::pid_t,
    answer: mpsc::Receiver<T>,
}

/// Starts a thread that calls `wait` once and sends back what it returned,
/// and returns once that thread is blocked in epoll_wait.
fn blocked_waiter<T: Send + 'static>(wait: impl FnOnce() -> T + Send + 'static) -> Waiter<T> {
    let (tid_tx, tid_rx) = mpsc::channel();
    let (result_tx, result_rx) = mpsc::channel();
    let thread = thread::spawn(move || {
        tid_tx.send(gettid()).unwrap();
        let _ = result_tx.send(wait());
    });
    let tid = tid_rx.recv_timeout(PATIENCE).expect("waiter started");
    wait_until(PATIENCE, "waiter blocked in epoll_wait", || {
        in_epoll_wait(tid)
    });
    Waiter {
        thread,
        tid,
        answer: result_rx,
    }
}

static HANDLED: AtomicUsize = AtomicUsize::new(0);

extern "C" fn count_signal(_: libc::c_int) {
    HANDLED.fetch_add(1, Ordering::SeqCst);
}

// ANCHOR: handler
/// Makes SIGUSR1 run `count_signal` in whichever thread it is sent to.
fn count_sigusr1() {
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value, and
    // `count_signal` only touches an atomic, which is async-signal-safe.
    // Without SA_RESTART; epoll_wait is never restarted anyway.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = count_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
            0
        );
    }
}

#[test]
fn a_signal_delivered_to_a_handler_does_not_end_the_wait() {
    count_sigusr1();
    let (ours, theirs) = pair();
    let mut poll = Poll::new().unwrap();
    poll.registry()
        .register(&ours, Token(9), Interest::READABLE)
        .unwrap();

    let waiter = blocked_waiter(move || {
        let mut events = Events::with_capacity(8);
        poll.poll(&mut events, Some(PATIENCE))
            .map(|()| events.iter().map(|e| e.token()).collect::<Vec<_>>())
    });
    // SAFETY: the thread is alive (it has not sent its result, and cannot
    // until we make the socket readable), so its pthread_t is valid.
    let sent = unsafe { libc::pthread_kill(waiter.thread.as_pthread_t(), libc::SIGUSR1) };
    assert_eq!(sent, 0);
    wait_until(PATIENCE, "handler ran", || {
        HANDLED.load(Ordering::SeqCst) > 0
    });

    // Still waiting: the readiness we now cause is what ends it.
    send(&theirs, b"x");
    let tokens = waiter.answer.recv_timeout(PATIENCE).expect("poll returned");
    assert_eq!(tokens.expect("poll must not fail with EINTR"), [Token(9)]);
    waiter.thread.join().unwrap();
}
// ANCHOR_END: handler

/// Tests run on parallel threads, but a stop is for the whole process: it
/// would end another test's raw wait, and one test's SIGCONT could discard
/// another's SIGSTOP before it is seen. Each test that stops the process
/// holds this for its whole length.
static ONE_STOP_AT_A_TIME: Mutex<()> = Mutex::new(());

fn alone() -> MutexGuard<'static, ()> {
    ONE_STOP_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Stops this whole process and continues it, from another process. The
/// continue waits until thread `tid` has really stopped: a SIGCONT sent
/// while the SIGSTOP is still pending would discard it unseen.
fn stop_and_continue_this_process(tid: libc::pid_t) {
    let pid = std::process::id();
    let script = format!(
        "kill -STOP {pid}; tries=0
         until grep -q '^State:.*(stopped)' /proc/{pid}/task/{tid}/status; do
             tries=$((tries + 1))
             if [ $tries -gt 2000 ]; then kill -CONT {pid}; exit 1; fi
             sleep 0.01
         done
         kill -CONT {pid}"
    );
    let status = Command::new("sh")
        .args(["-c", &script])
        .status()
        .expect("run sh");
    assert!(status.success(), "thread {tid} did not stop within 20 s");
}

// ANCHOR: stop_continue
#[test]
fn a_stop_and_continue_ends_a_raw_wait_but_not_poll() {
    let _alone = alone();
    // First the pitfall, with libc's epoll_wait and no signal handler at all.
    // SAFETY: epoll_create1 takes no pointers.
    let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(epfd >= 0);
    // SAFETY: a new fd that nothing else owns.
    let epoll = unsafe { OwnedFd::from_raw_fd(epfd) };
    let waiter = blocked_waiter(move || {
        let mut buffer = [libc::epoll_event { events: 0, u64: 0 }; 8];
        // SAFETY: `epoll` stays open for the call (the closure owns it) and
        // the buffer holds the 8 entries we allow.
        let ret = unsafe { libc::epoll_wait(epoll.as_raw_fd(), buffer.as_mut_ptr(), 8, -1) };
        (ret, io::Error::last_os_error().raw_os_error())
    });
    stop_and_continue_this_process(waiter.tid);
    let (ret, errno) = waiter
        .answer
        .recv_timeout(PATIENCE)
        .expect("raw epoll_wait returned");
    assert_eq!((ret, errno), (-1, Some(libc::EINTR)));
    waiter.thread.join().unwrap();

    // Then the fix: the same interruption, and `Poll::poll` waits on.
    let (ours, theirs) = pair();
    let mut poll = Poll::new().unwrap();
    poll.registry()
        .register(&ours, Token(4), Interest::READABLE)
        .unwrap();
    let waiter = blocked_waiter(move || {
        let mut events = Events::with_capacity(8);
        poll.poll(&mut events, Some(PATIENCE))
            .map(|()| events.len())
    });
    stop_and_continue_this_process(waiter.tid);
    send(&theirs, b"x");
    let ready = waiter.answer.recv_timeout(PATIENCE).expect("poll returned");
    assert_eq!(ready.expect("poll must not fail with EINTR"), 1);
    waiter.thread.join().unwrap();
}
// ANCHOR_END: stop_continue

#[test]
fn after_an_interrupted_wait_the_timeout_still_ends_it() {
    let _alone = alone();
    let mut poll = Poll::new().unwrap();
    let waiter = blocked_waiter(move || {
        let mut events = Events::with_capacity(8);
        let start = Instant::now();
        let timeout = Duration::from_millis(300);
        poll.poll(&mut events, Some(timeout))
            .map(|()| (events.len(), start.elapsed()))
    });
    stop_and_continue_this_process(waiter.tid);
    let (ready, elapsed) = waiter
        .answer
        .recv_timeout(PATIENCE)
        .expect("poll returned")
        .expect("poll must not fail with EINTR");
    waiter.thread.join().unwrap();
    assert_eq!(ready, 0);
    assert!(
        elapsed >= Duration::from_millis(300),
        "returned after {elapsed:?}"
    );
}

// ANCHOR: signal_stream
#[test]
fn under_a_steady_stream_of_signals_the_wait_still_ends_on_time() {
    count_sigusr1();
    let mut poll = Poll::new().unwrap();
    let timeout = Duration::from_millis(300);
    let waiter = blocked_waiter(move || {
        let mut events = Events::with_capacity(8);
        let start = Instant::now();
        poll.poll(&mut events, Some(timeout))
            .map(|()| start.elapsed())
    });
    // A signal every 20 ms, each one shorter than the timeout: a wait that
    // starts the whole timeout again after each one never ends while they
    // come. They stop after 5 s at the latest, so the test cannot hang.
    let streaming = Instant::now();
    let elapsed = loop {
        // SAFETY: the thread has not been joined, so its pthread_t is valid
        // (a thread that has returned keeps it until it is joined).
        let sent = unsafe { libc::pthread_kill(waiter.thread.as_pthread_t(), libc::SIGUSR1) };
        assert_eq!(sent, 0);
        match waiter.answer.recv_timeout(Duration::from_millis(20)) {
            Ok(result) => break result.expect("poll must not fail with EINTR"),
            Err(_) if streaming.elapsed() > Duration::from_secs(5) => {
                panic!("the wait did not end within 5 s of signals")
            }
            Err(_) => {}
        }
    };
    waiter.thread.join().unwrap();
    assert!(elapsed >= timeout, "returned early, after {elapsed:?}");
    // Generous, for a loaded machine; the broken retry takes the full 5 s.
    assert!(
        elapsed < Duration::from_secs(2),
        "took {elapsed:?} for a {timeout:?} timeout"
    );
}
// ANCHOR_END: signal_stream
