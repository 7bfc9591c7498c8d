//! Several threads waiting on one epoll: the herd as it really behaves,
//! what one-shot changes, what EPOLLEXCLUSIVE does not, and the waker.
//!
//! Every test makes its threads block in epoll_wait (as /proc shows) before
//! it makes anything ready, so which thread wakes is the kernel's choice,
//! not an accident of timing.

mod support;

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use c_oneshot::{Events, Interest, Poll, Token, Waker};
use support::{PATIENCE, gettid, in_epoll_wait, pair, send, wait_until};

/// An epoll instance made with libc, for the registrations our API refuses
/// to make: level-triggered, edge-triggered without one-shot, exclusive.
struct RawEpoll(OwnedFd);

impl RawEpoll {
    fn new() -> Arc<RawEpoll> {
        // SAFETY: epoll_create1 takes no pointers.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(fd >= 0, "epoll_create1: {}", io::Error::last_os_error());
        // SAFETY: a new fd that nothing else owns.
        Arc::new(RawEpoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn ctl(&self, op: libc::c_int, fd: &impl AsRawFd, flags: libc::c_int) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: flags as u32,
            u64: 1,
        };
        // SAFETY: both fds are open for the call, and `event` is a live
        // epoll_event that the kernel only reads.
        let ret = unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd.as_raw_fd(), &mut event) };
        if ret == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Waits (for up to `PATIENCE`) and returns the tokens it got.
    fn wait(&self) -> Vec<u64> {
        let mut buffer = [libc::epoll_event { events: 0, u64: 0 }; 8];
        // SAFETY: the epoll fd is open, and the buffer holds the 8 entries
        // we allow.
        let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), buffer.as_mut_ptr(), 8, 20_000) };
        assert!(n >= 0, "epoll_wait: {}", io::Error::last_os_error());
        buffer[..n as usize].iter().map(|event| event.u64).collect()
    }
}

/// Starts `count` threads that each run `wait` once and send back what it
/// returned, and returns once all of them are blocked in epoll_wait.
fn blocked_threads<T: Send + 'static>(
    count: usize,
    wait: impl Fn() -> T + Send + Sync + 'static,
) -> Receiver<T> {
    let wait = Arc::new(wait);
    let (answers, answered) = mpsc::channel();
    let (tids, tid) = mpsc::channel();
    for _ in 0..count {
        let (wait, answers, tids) = (Arc::clone(&wait), answers.clone(), tids.clone());
        thread::spawn(move || {
            tids.send(gettid()).unwrap();
            let _ = answers.send(wait());
        });
    }
    for _ in 0..count {
        let tid = tid.recv_timeout(PATIENCE).expect("thread started");
        wait_until(PATIENCE, "thread blocked in epoll_wait", || {
            in_epoll_wait(tid)
        });
    }
    answered
}

// ANCHOR: herd
#[test]
fn level_triggered_wakes_every_waiting_thread_for_one_ready_socket() {
    for exclusive in [0, libc::EPOLLEXCLUSIVE] {
        let (ours, theirs) = pair();
        let epoll = RawEpoll::new();
        epoll
            .ctl(libc::EPOLL_CTL_ADD, &ours, libc::EPOLLIN | exclusive)
            .unwrap();
        let waiter = Arc::clone(&epoll);
        let answers = blocked_threads(2, move || waiter.wait());

        send(&theirs, b"x");
        // The first thread takes the event; a level-triggered fd goes back
        // on the ready list, which wakes the next waiter. Nobody reads, so
        // the fd is still ready when that waiter looks, and it takes the
        // event too.
        // EPOLLEXCLUSIVE changes nothing here: it is about several epoll
        // instances waiting on one fd, not several threads on one epoll.
        for _ in 0..2 {
            let tokens = answers.recv_timeout(PATIENCE).expect("both threads wake");
            assert_eq!(tokens, [1], "exclusive: {}", exclusive != 0);
        }
    }
}
// ANCHOR_END: herd

// ANCHOR: edges_race
#[test]
fn edge_triggered_alone_lets_two_threads_hold_events_for_one_socket() {
    let (ours, theirs) = pair();
    let epoll = RawEpoll::new();
    epoll
        .ctl(libc::EPOLL_CTL_ADD, &ours, libc::EPOLLIN | libc::EPOLLET)
        .unwrap();
    let waiter = Arc::clone(&epoll);
    let answers = blocked_threads(2, move || waiter.wait());

    // One edge wakes one thread...
    send(&theirs, b"first");
    assert_eq!(
        answers.recv_timeout(PATIENCE).expect("one thread wakes"),
        [1]
    );
    // ...and a second edge, while the first thread may still be reading,
    // wakes the other: two threads now hold an event for the same socket,
    // and nothing stops them from reading it at the same time.
    send(&theirs, b"second");
    assert_eq!(
        answers.recv_timeout(PATIENCE).expect("the other wakes"),
        [1]
    );
}
// ANCHOR_END: edges_race

// ANCHOR: oneshot_one_thread
#[test]
fn with_one_shot_exactly_one_thread_gets_the_socket_until_it_is_rearmed() {
    let (ours, theirs) = pair();
    let (other, other_peer) = pair();
    let poll = Arc::new(Poll::new().unwrap());
    poll.registry()
        .register(&ours, Token(3), Interest::READABLE)
        .unwrap();
    poll.registry()
        .register(&other, Token(4), Interest::READABLE)
        .unwrap();
    let waiter = Arc::clone(&poll);
    let answers = blocked_threads(2, move || {
        let mut events = Events::with_capacity(8);
        waiter.poll(&mut events, Some(PATIENCE)).unwrap();
        events.iter().map(|event| event.token()).collect::<Vec<_>>()
    });

    send(&theirs, b"first");
    assert_eq!(
        answers.recv_timeout(PATIENCE).expect("one thread wakes"),
        [Token(3)]
    );
    // More data, and nothing for anyone: the fd is disarmed. Not for a
    // wait of ours...
    send(&theirs, b"second");
    let mut events = Events::with_capacity(8);
    poll.poll(&mut events, Some(Duration::ZERO)).unwrap();
    assert!(events.is_empty(), "{:?}", events.iter().collect::<Vec<_>>());
    // ...nor for the other thread: when something else wakes it, that is
    // all it got. Had the second write reached it, it would have returned
    // with token 3, before or along with token 4.
    send(&other_peer, b"x");
    assert_eq!(
        answers
            .recv_timeout(PATIENCE)
            .expect("the other thread wakes"),
        [Token(4)],
        "the second thread was woken for the disarmed socket"
    );

    // Re-armed, with data waiting: reported at once.
    poll.registry()
        .reregister(&ours, Token(3), Interest::READABLE)
        .unwrap();
    poll.poll(&mut events, Some(Duration::ZERO)).unwrap();
    assert_eq!(
        events.iter().map(|event| event.token()).collect::<Vec<_>>(),
        [Token(3)]
    );
}
// ANCHOR_END: oneshot_one_thread

// ANCHOR: exclusive
#[test]
fn epollexclusive_is_refused_with_one_shot_and_by_epoll_ctl_mod() {
    let (ours, _theirs) = pair();
    let epoll = RawEpoll::new();
    let refused = |result: io::Result<()>| result.unwrap_err().raw_os_error() == Some(libc::EINVAL);

    let exclusive_oneshot = libc::EPOLLIN | libc::EPOLLEXCLUSIVE | libc::EPOLLONESHOT;
    assert!(refused(epoll.ctl(
        libc::EPOLL_CTL_ADD,
        &ours,
        exclusive_oneshot
    )));

    epoll
        .ctl(
            libc::EPOLL_CTL_ADD,
            &ours,
            libc::EPOLLIN | libc::EPOLLEXCLUSIVE,
        )
        .unwrap();
    // An exclusive registration cannot be changed at all (so not re-armed).
    assert!(refused(epoll.ctl(
        libc::EPOLL_CTL_MOD,
        &ours,
        libc::EPOLLIN
    )));

    let (other, _peer) = pair();
    epoll
        .ctl(libc::EPOLL_CTL_ADD, &other, libc::EPOLLIN)
        .unwrap();
    // Nor can MOD make a registration exclusive.
    assert!(refused(epoll.ctl(
        libc::EPOLL_CTL_MOD,
        &other,
        libc::EPOLLIN | libc::EPOLLEXCLUSIVE
    )));
}
// ANCHOR_END: exclusive

// ANCHOR: waker
#[test]
fn the_waker_stops_every_waiting_thread_and_stays_woken() {
    const WAKE: Token = Token(99);
    let poll = Arc::new(Poll::new().unwrap());
    let waker = Waker::new(poll.registry(), WAKE).unwrap();
    let waiter = Arc::clone(&poll);
    let answers = blocked_threads(4, move || {
        let mut events = Events::with_capacity(8);
        waiter.poll(&mut events, None).unwrap();
        events.iter().map(|event| event.token()).collect::<Vec<_>>()
    });

    let start = Instant::now();
    waker.wake().unwrap();
    for _ in 0..4 {
        let tokens = answers.recv_timeout(PATIENCE).expect("every thread wakes");
        assert_eq!(tokens, [WAKE]);
    }
    // Loose, for a loaded machine: the point is "promptly", not "eventually".
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );

    // A latch: nothing reads the eventfd, so every later wait sees it at
    // once. A loop that waited again after a wake would spin.
    let mut events = Events::with_capacity(8);
    for _ in 0..3 {
        poll.poll(&mut events, Some(Duration::ZERO)).unwrap();
        assert_eq!(
            events.iter().map(|event| event.token()).collect::<Vec<_>>(),
            [WAKE]
        );
    }
}
// ANCHOR_END: waker
