//! Chapter 4's `Waker`: mio's kind, reusable. Each worker has one, and the
//! futures page's executor uses it to be woken from another thread.

mod support;

use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

use d_ready_list::{Events, Poll, Token, Waker};
use support::{PATIENCE, gettid, in_epoll_wait, wait_until};

const WAKE: Token = Token(7);

fn tokens(poll: &Poll, timeout: Option<Duration>) -> Vec<Token> {
    let mut events = Events::with_capacity(8);
    poll.poll(&mut events, timeout).unwrap();
    events.iter().map(|event| event.token()).collect()
}

// ANCHOR: reusable
#[test]
fn each_wake_is_reported_once_and_the_waker_can_be_used_again() {
    let poll = Poll::new().unwrap();
    let waker = Waker::new(poll.registry(), WAKE).unwrap();
    for _ in 0..3 {
        waker.wake().unwrap();
        assert_eq!(tokens(&poll, Some(PATIENCE)), [WAKE]);
        // Reported once: a waker that stayed ready would make every later
        // wait return at once, and an event loop that waits on it spin.
        assert!(tokens(&poll, Some(Duration::ZERO)).is_empty());
    }
    // Wakes before a wait are reported together, once.
    waker.wake().unwrap();
    waker.wake().unwrap();
    assert_eq!(tokens(&poll, Some(PATIENCE)), [WAKE]);
    assert!(tokens(&poll, Some(Duration::ZERO)).is_empty());
}
// ANCHOR_END: reusable

#[test]
fn a_wake_from_another_thread_ends_a_wait_that_has_no_timeout() {
    let poll = Arc::new(Poll::new().unwrap());
    let waker = Waker::new(poll.registry(), WAKE).unwrap();
    let (tid_sender, tid) = mpsc::channel();
    let (sender, woken) = mpsc::channel();
    let waiter = Arc::clone(&poll);
    thread::spawn(move || {
        tid_sender.send(gettid()).unwrap();
        let _ = sender.send(tokens(&waiter, None));
    });
    let tid = tid.recv_timeout(PATIENCE).unwrap();
    wait_until(PATIENCE, "the waiter blocks in epoll_wait", || {
        in_epoll_wait(tid)
    });
    waker.wake().unwrap();
    let tokens = woken
        .recv_timeout(PATIENCE)
        .expect("the wake ends the wait");
    assert_eq!(tokens, [WAKE]);
}
