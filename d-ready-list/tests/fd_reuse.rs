//! A connection closed in the middle of a batch frees its fd number at
//! once, and the next socket opened gets it. Tokens name slab slots, not
//! fds, and a removed slot is not reused until the batch is over, so the
//! old connection's event cannot reach the new one.
//!
//! The only test in its file, so in a process of its own: no other test
//! thread can take the fd number first.

mod support;

use std::collections::BTreeSet;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use d_ready_list::slab::Slab;
use d_ready_list::{Events, Interest, Poll, Token};
use support::{PATIENCE, pair, send};

// ANCHOR: fd_reuse
#[test]
fn a_socket_on_a_reused_fd_and_slot_receives_no_stale_event() {
    let poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(8);
    let mut connections: Slab<UnixStream> = Slab::new();
    let open = |connections: &mut Slab<UnixStream>| {
        let (stream, peer) = pair();
        let token = connections.insert(stream);
        let stream = connections.get(token).unwrap();
        poll.registry()
            .register(stream, token, Interest::READABLE)
            .unwrap();
        (token, peer)
    };

    // Two readable connections: one batch holds both events.
    let (a, a_peer) = open(&mut connections);
    let (b, b_peer) = open(&mut connections);
    send(&a_peer, b"a");
    send(&b_peer, b"b");
    poll.poll(&mut events, Some(PATIENCE)).unwrap();
    let batch: Vec<Token> = events.iter().map(|event| event.token()).collect();
    assert_eq!(BTreeSet::from_iter(batch.clone()), BTreeSet::from([a, b]));

    // Handling one of them closes B: deregister, mark removed, close.
    let b_fd = connections.get(b).unwrap().as_raw_fd();
    poll.registry()
        .deregister(connections.get(b).unwrap())
        .unwrap();
    drop(connections.remove(b));

    // A connection opened now, mid-batch, gets B's fd number: routing
    // events by fd would hand it B's event. It does not get B's slot,
    // which stays removed until the batch is over.
    let (c, c_peer) = open(&mut connections);
    assert_eq!(connections.get(c).unwrap().as_raw_fd(), b_fd);
    assert_ne!(c, b);

    // The rest of the batch: B's event finds nothing.
    let routed: Vec<bool> = batch
        .iter()
        .map(|t| connections.get(*t).is_some())
        .collect();
    let expected: Vec<bool> = batch.iter().map(|t| *t == a).collect();
    assert_eq!(routed, expected);

    // After the batch no token of B's is left, so its slot is freed, and
    // the next connection takes it, with the very same token.
    drop(batch);
    connections.release(b);
    let (d, _d_peer) = open(&mut connections);
    assert_eq!(d, b);

    // And the kernel has no stale event either: C and D are not readable,
    // and A's edge was reported already, so nothing is ready until C's
    // peer writes.
    poll.poll(&mut events, Some(Duration::ZERO)).unwrap();
    assert!(events.is_empty(), "{:?}", events.iter().collect::<Vec<_>>());
    send(&c_peer, b"c");
    poll.poll(&mut events, Some(PATIENCE)).unwrap();
    let tokens: Vec<Token> = events.iter().map(|event| event.token()).collect();
    assert_eq!(tokens, [c]);
}
// ANCHOR_END: fd_reuse
