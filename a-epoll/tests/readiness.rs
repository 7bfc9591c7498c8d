//! The `Poll` API over real sockets, and what level-triggered readiness means.

mod support;

use std::collections::BTreeSet;
use std::ffi::c_int;
use std::io::ErrorKind;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use a_epoll::{Event, Events, Interest, Poll, Token};
use support::{PATIENCE, gettid, in_epoll_wait, pair, send, take, wait_until, within};

/// One wait with a generous timeout, for tests that know an event is coming.
fn wait(poll: &mut Poll, events: &mut Events) -> Vec<Event> {
    poll.poll(events, Some(PATIENCE)).expect("poll");
    events.iter().collect()
}

/// One wait that returns at once: what is ready right now.
fn ready_now(poll: &mut Poll, events: &mut Events) -> Vec<Event> {
    poll.poll(events, Some(Duration::ZERO)).expect("poll");
    events.iter().collect()
}

// ANCHOR: repeats
#[test]
fn readiness_repeats_while_data_is_unread() {
    let (mut ours, mut theirs) = pair();
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(8);
    poll.registry()
        .register(&ours, Token(7), Interest::READABLE)
        .unwrap();

    send(&mut theirs, b"hello");
    for _ in 0..3 {
        let ready = wait(&mut poll, &mut events);
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].token(), Token(7));
        assert!(ready[0].is_readable());
    }

    // Reading part of it changes nothing: there is still data to read.
    assert_eq!(take(&mut ours, 2), b"he");
    assert_eq!(ready_now(&mut poll, &mut events).len(), 1);

    // Reading the rest does: the socket is no longer ready.
    assert_eq!(take(&mut ours, 3), b"llo");
    assert!(ready_now(&mut poll, &mut events).is_empty());
}
// ANCHOR_END: repeats

// ANCHOR: eof_repeats
#[test]
fn eof_is_reported_on_every_wait_until_deregistered() {
    let (ours, theirs) = pair();
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(8);
    poll.registry()
        .register(&ours, Token(1), Interest::READABLE)
        .unwrap();

    drop(theirs);
    // A loop that counts "a response finished" once per such event counts
    // this one connection again on every wait.
    for _ in 0..3 {
        let ready = wait(&mut poll, &mut events);
        assert_eq!(ready.len(), 1);
        assert!(ready[0].is_readable() && ready[0].is_read_closed());
    }
    poll.registry().deregister(&ours).unwrap();
    assert!(ready_now(&mut poll, &mut events).is_empty());
}
// ANCHOR_END: eof_repeats

#[test]
fn several_ready_sockets_come_back_in_one_wait_with_their_own_tokens() {
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(8);
    let pairs: Vec<_> = (0..3).map(|_| pair()).collect();
    for (i, (ours, theirs)) in pairs.iter().enumerate() {
        poll.registry()
            .register(ours, Token(10 * (i + 1)), Interest::READABLE)
            .unwrap();
        send(theirs, b"x");
    }
    // No order is promised, so compare sets. A wrong `epoll_event` layout
    // would garble the tokens of every event after the first.
    let tokens: BTreeSet<Token> = wait(&mut poll, &mut events)
        .iter()
        .map(Event::token)
        .collect();
    assert_eq!(tokens, BTreeSet::from([Token(10), Token(20), Token(30)]));
}

#[test]
fn reregister_changes_token_and_interest() {
    let (ours, mut theirs) = pair();
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(8);

    // A fresh socket can be written but has nothing to read.
    poll.registry()
        .register(&ours, Token(1), Interest::READABLE)
        .unwrap();
    assert!(ready_now(&mut poll, &mut events).is_empty());

    poll.registry()
        .reregister(&ours, Token(2), Interest::WRITABLE)
        .unwrap();
    let ready = wait(&mut poll, &mut events);
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].token(), Token(2));
    assert!(ready[0].is_writable() && !ready[0].is_readable());

    poll.registry()
        .reregister(&ours, Token(3), Interest::READABLE)
        .unwrap();
    send(&mut theirs, b"x");
    let ready = wait(&mut poll, &mut events);
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].token(), Token(3));
    assert!(ready[0].is_readable() && !ready[0].is_writable());
}

#[test]
fn after_deregister_no_more_events() {
    let (ours, mut theirs) = pair();
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(8);
    poll.registry()
        .register(&ours, Token(1), Interest::READABLE)
        .unwrap();
    send(&mut theirs, b"unread");
    assert_eq!(wait(&mut poll, &mut events).len(), 1);

    poll.registry().deregister(&ours).unwrap();
    assert!(ready_now(&mut poll, &mut events).is_empty());
}

#[test]
fn registering_twice_is_already_exists() {
    let (ours, _theirs) = pair();
    let poll = Poll::new().unwrap();
    poll.registry()
        .register(&ours, Token(1), Interest::READABLE)
        .unwrap();
    let error = poll
        .registry()
        .register(&ours, Token(2), Interest::READABLE)
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::AlreadyExists);
}

#[test]
fn changing_or_removing_an_unknown_fd_is_not_found() {
    let (ours, _theirs) = pair();
    let poll = Poll::new().unwrap();
    let error = poll.registry().deregister(&ours).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound);
    let error = poll
        .registry()
        .reregister(&ours, Token(1), Interest::READABLE)
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound);
}

#[test]
fn a_cloned_registry_registers_on_the_same_epoll() {
    let (ours, mut theirs) = pair();
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(8);
    let registry = poll.registry().try_clone().unwrap();
    registry
        .register(&ours, Token(5), Interest::READABLE)
        .unwrap();
    drop(registry);

    send(&mut theirs, b"x");
    let ready = wait(&mut poll, &mut events);
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].token(), Token(5));
}

// ANCHOR: timeouts
#[test]
fn a_zero_timeout_returns_at_once() {
    let elapsed = within(PATIENCE, "poll with a zero timeout", || {
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(8);
        let start = Instant::now();
        poll.poll(&mut events, Some(Duration::ZERO)).unwrap();
        assert!(events.is_empty());
        start.elapsed()
    });
    // Loose, for a loaded machine; a wait of -1 (for ever) would be caught
    // by `within`, and any real wait is in whole milliseconds.
    assert!(elapsed < Duration::from_millis(500), "took {elapsed:?}");
}

#[test]
fn a_100_microsecond_timeout_waits_at_least_100_microseconds() {
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(8);
    let start = Instant::now();
    poll.poll(&mut events, Some(Duration::from_micros(100)))
        .unwrap();
    let elapsed = start.elapsed();
    assert!(events.is_empty());
    assert!(
        elapsed >= Duration::from_micros(100),
        "returned after {elapsed:?}"
    );
}
// ANCHOR_END: timeouts

#[test]
fn a_timeout_too_long_for_epoll_is_clamped_not_refused() {
    let (ours, mut theirs) = pair();
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(8);
    poll.registry()
        .register(&ours, Token(1), Interest::READABLE)
        .unwrap();
    send(&mut theirs, b"x");
    poll.poll(&mut events, Some(Duration::MAX)).unwrap();
    assert_eq!(events.len(), 1);
}

#[test]
#[should_panic(expected = "capacity must be from 1")]
fn an_events_buffer_cannot_be_empty() {
    let _ = Events::with_capacity(0);
}

// ANCHOR: cloexec
#[test]
fn a_child_process_after_exec_inherits_no_epoll_fd() {
    let poll = Poll::new().unwrap();
    let fd = poll.as_fd().as_raw_fd();
    // The shell reads its own fd table: what a program we start would get.
    let output = std::process::Command::new("sh")
        .args(["-c", &format!("readlink /proc/$$/fd/{fd} || true")])
        .output()
        .expect("run sh");
    let seen = String::from_utf8_lossy(&output.stdout);
    assert!(
        !seen.contains("eventpoll"),
        "the child has our epoll fd {fd}: {seen}"
    );
}
// ANCHOR_END: cloexec

// ANCHOR: small_events
#[test]
fn an_events_buffer_smaller_than_the_ready_set_loses_nothing() {
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(2);
    let pairs: Vec<_> = (0..5).map(|_| pair()).collect();
    for (i, (ours, theirs)) in pairs.iter().enumerate() {
        poll.registry()
            .register(ours, Token(i), Interest::READABLE)
            .unwrap();
        send(theirs, b"x");
    }
    // The rest stay on the kernel's ready list for the next wait.
    let mut seen = BTreeSet::new();
    for _ in 0..5 {
        let ready = ready_now(&mut poll, &mut events);
        assert!(ready.len() <= 2, "{ready:?}");
        seen.extend(ready.iter().map(Event::token));
    }
    assert_eq!(seen, (0..5).map(Token).collect::<BTreeSet<_>>());
}
// ANCHOR_END: small_events

// ANCHOR: duplicated_fd
#[test]
fn a_duplicated_fd_keeps_its_registration_after_close_unless_deregistered_first() {
    // Each half has a `Poll` of its own. Any fork, by any thread of this
    // process (another test's `Command::spawn`), briefly gives the child a
    // copy of every fd, ours included: epoll(7)'s Q6 happening to us. Were
    // the halves to share one `Poll`, such a copy could keep the first
    // half's registration alive into the second.

    // The pitfall: close one fd of a socket that has another. epoll watches
    // the socket, not the number, so the registration lives on.
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(8);
    let (ours, theirs) = pair();
    let duplicate = ours.try_clone().unwrap();
    poll.registry()
        .register(&ours, Token(1), Interest::READABLE)
        .unwrap();
    drop(ours);
    send(&theirs, b"x");
    let ready = wait(&mut poll, &mut events);
    assert_eq!(
        ready.iter().map(Event::token).collect::<Vec<_>>(),
        [Token(1)]
    );
    drop(duplicate);

    // The fix: deregister first, then close. Copies of the fd elsewhere,
    // ours or a child's, no longer matter.
    let mut poll = Poll::new().unwrap();
    let (ours, theirs) = pair();
    let duplicate = ours.try_clone().unwrap();
    poll.registry()
        .register(&ours, Token(2), Interest::READABLE)
        .unwrap();
    poll.registry().deregister(&ours).unwrap();
    drop(ours);
    send(&theirs, b"x");
    assert!(ready_now(&mut poll, &mut events).is_empty());
    drop(duplicate);
}
// ANCHOR_END: duplicated_fd

// ANCHOR: close_path
#[test]
fn the_clients_close_takes_a_duplicated_socket_off_the_interest_list() {
    // The pitfall, in the kernel's own words: a socket with a second fd (a
    // `dup`, or the copy a `fork` makes) is closed without a deregister,
    // and the interest list still holds it, under the number it had.
    let poll = Poll::new().unwrap();
    let (ours, _theirs) = tcp_pair();
    let (fd, copy) = (ours.as_raw_fd(), ours.try_clone().unwrap());
    poll.registry()
        .register(&ours, Token(1), Interest::READABLE)
        .unwrap();
    drop(ours);
    assert_eq!(interest_list(&poll), [(fd, READABLE_AS_HELD, 1)]);
    drop(copy);

    // The client's own close path, with a copy of the fd alive: nothing
    // is left watched.
    let poll = Poll::new().unwrap();
    let (ours, _theirs) = tcp_pair();
    let copy = ours.try_clone().unwrap();
    poll.registry()
        .register(&ours, Token(2), Interest::READABLE)
        .unwrap();
    a_epoll::client::close(poll.registry(), ours).unwrap();
    assert_eq!(interest_list(&poll), []);
    drop(copy);
}
// ANCHOR_END: close_path

/// A connected pair of TCP sockets on loopback, the kind the client uses.
fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let ours = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (theirs, _) = listener.accept().expect("accept");
    (ours, theirs)
}

/// Blocks until the kernel says the peer's FIN has reached `stream`,
/// asking poll(2), not our epoll: the wait after it then knows what is true.
fn wait_for_peer_shutdown(stream: &TcpStream) {
    let mut entry = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    let timeout = c_int::try_from(PATIENCE.as_millis()).unwrap();
    // SAFETY: one pollfd, which lives for the whole call.
    let ready = unsafe { libc::poll(&mut entry, 1, timeout) };
    assert!(
        ready == 1 && entry.revents & libc::POLLRDHUP != 0,
        "no FIN after {PATIENCE:?}"
    );
}

// ANCHOR: half_close
#[test]
fn a_peers_half_close_is_reported_as_read_closed_while_data_is_unread() {
    let (ours, theirs) = tcp_pair();
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(8);
    poll.registry()
        .register(&ours, Token(1), Interest::READABLE)
        .unwrap();
    send(&theirs, b"x");
    let ready = wait(&mut poll, &mut events);
    assert_eq!(ready.len(), 1);
    assert!(ready[0].is_readable() && !ready[0].is_read_closed());

    // The peer will send no more (`shutdown(SHUT_WR)`); our byte is unread.
    theirs.shutdown(Shutdown::Write).unwrap();
    wait_for_peer_shutdown(&ours);
    // Level-triggered: the unread byte keeps it ready, but the wait after
    // the half-close must say more than "readable".
    let ready = wait(&mut poll, &mut events);
    assert_eq!(ready.len(), 1);
    assert!(
        ready[0].is_readable() && ready[0].is_read_closed(),
        "EPOLLIN alone cannot tell a half-close from more data: {ready:?}"
    );
    assert_eq!(take(&ours, 1), b"x");
}
// ANCHOR_END: half_close

// ANCHOR: signal_eventfd
/// The eventfd the SIGUSR2 handler writes to, and the flag it sets.
static SIGNAL_EVENTFD: AtomicI32 = AtomicI32::new(-1);
static SIGNALLED: AtomicBool = AtomicBool::new(false);

/// Sets the flag the program acts on, then makes the `Poll` wake up to look
/// at it: `poll` retries `EINTR`, so the flag alone would not end a wait.
extern "C" fn on_sigusr2(_: c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
    let fd = SIGNAL_EVENTFD.load(Ordering::SeqCst);
    let one = 1u64.to_ne_bytes();
    // SAFETY: write(2) is async-signal-safe, and `one` is 8 live bytes. The
    // fd is the test's eventfd, open until the test has had its answer.
    unsafe { libc::write(fd, one.as_ptr().cast(), one.len()) };
}

#[test]
fn a_signal_handler_that_writes_an_eventfd_ends_a_wait_with_no_timeout() {
    // SAFETY: eventfd takes no pointers.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    assert!(raw >= 0, "eventfd: {}", std::io::Error::last_os_error());
    // SAFETY: a new fd that nothing else owns.
    let eventfd = unsafe { OwnedFd::from_raw_fd(raw) };
    SIGNAL_EVENTFD.store(raw, Ordering::SeqCst);
    // SAFETY: a zeroed sigaction is "no flags, empty mask", and the handler
    // touches only atomics and write(2), all async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigusr2 as extern "C" fn(c_int) as libc::sighandler_t;
        assert_eq!(
            libc::sigaction(libc::SIGUSR2, &action, std::ptr::null_mut()),
            0
        );
    }
    let mut poll = Poll::new().unwrap();
    poll.registry()
        .register(&eventfd, Token(3), Interest::READABLE)
        .unwrap();

    let (tid_tx, tid_rx) = mpsc::channel();
    let (answer_tx, answer) = mpsc::channel();
    let waiter = thread::spawn(move || {
        tid_tx.send(gettid()).unwrap();
        let mut events = Events::with_capacity(8);
        let result = poll.poll(&mut events, None);
        let _ =
            answer_tx.send(result.map(|()| events.iter().map(|e| e.token()).collect::<Vec<_>>()));
    });
    let tid = tid_rx.recv_timeout(PATIENCE).expect("waiter started");
    wait_until(PATIENCE, "waiter blocked in epoll_wait", || {
        in_epoll_wait(tid)
    });
    // SAFETY: the thread is alive: it is blocked in epoll_wait until the
    // eventfd is written, and it has not been joined.
    let sent = unsafe { libc::pthread_kill(waiter.as_pthread_t(), libc::SIGUSR2) };
    assert_eq!(sent, 0);

    let tokens = answer
        .recv_timeout(PATIENCE)
        .expect("the wait with no timeout never saw the signal");
    assert_eq!(tokens.expect("poll retries EINTR"), [Token(3)]);
    assert!(SIGNALLED.load(Ordering::SeqCst));
    waiter.join().unwrap();
}
// ANCHOR_END: signal_eventfd

/// The kernel's own view of `poll`'s interest list, /proc/self/fdinfo/EPFD:
/// each registered fd with its event mask and its data, in fd order. It
/// prints the file too, for `--nocapture`.
fn interest_list(poll: &Poll) -> Vec<(c_int, u32, u64)> {
    let epfd = poll.as_fd().as_raw_fd();
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{epfd}")).expect("fdinfo");
    print!("{text}");
    // tfd:        7 events:     2019 data:                3  pos:0 ino:...
    let mut entries: Vec<_> = text
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let ["tfd:", fd, "events:", events, "data:", data, ..] = words[..] else {
                return None;
            };
            let events = u32::from_str_radix(events, 16).ok()?;
            Some((
                fd.parse().ok()?,
                events,
                u64::from_str_radix(data, 16).ok()?,
            ))
        })
        .collect();
    entries.sort_unstable();
    entries
}

/// `READABLE` as the kernel holds it: what we asked for, and the two bits
/// epoll_ctl adds to every registration.
const READABLE_AS_HELD: u32 =
    (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLERR | libc::EPOLLHUP) as u32;

// ANCHOR: fdinfo
#[test]
fn the_kernels_interest_list_holds_our_fd_our_interest_and_our_token() {
    let (ours, _theirs) = pair();
    let poll = Poll::new().unwrap();
    poll.registry()
        .register(&ours, Token(7), Interest::READABLE)
        .unwrap();
    assert_eq!(
        interest_list(&poll),
        [(ours.as_raw_fd(), READABLE_AS_HELD, 7)]
    );
    poll.registry().deregister(&ours).unwrap();
    assert_eq!(interest_list(&poll), []);
}
// ANCHOR_END: fdinfo
