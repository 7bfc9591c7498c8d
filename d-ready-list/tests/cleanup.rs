//! The cleanup list: one batch holds events for both connections of a
//! hedged request; handling the first answers the request and closes the
//! second, whose event must then not be acted on. And the other way round:
//! a twin that fails closes only itself. Last, the ready list's order: one
//! turn each in every round, round robin.

mod support;

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use d_ready_list::client::{Budget, Error, Problem, READ_CHUNK};
use d_ready_list::worker::{OPENS_PER_PASS, Worker};
use support::{PATIENCE, wait_until, within};

/// Bytes sent but not yet acknowledged by the peer's kernel. At zero,
/// everything we wrote sits in the peer's receive queue.
fn unacknowledged(stream: &TcpStream) -> libc::c_int {
    let mut bytes: libc::c_int = 0;
    // SAFETY: the fd is open while `stream` is borrowed, and TIOCOUTQ
    // (SIOCOUTQ) writes one c_int through the pointer, which points at one.
    let ret = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut bytes) };
    assert_eq!(
        ret,
        0,
        "ioctl(TIOCOUTQ): {}",
        std::io::Error::last_os_error()
    );
    bytes
}

/// Reads a request head, which the test knows is on its way.
fn read_head(stream: &mut TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("request head");
        head.push(byte[0]);
    }
}

// ANCHOR: same_batch
#[test]
fn a_twin_closed_earlier_in_the_batch_is_not_acted_on() {
    within(PATIENCE, "same-batch test", || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut worker = Worker::new(Instant::now(), Budget::default()).unwrap();
        // Two connections at most: request 1 waits until request 0 is
        // answered, and then opens in the middle of the round.
        worker.limit_open(2);
        let [first, second] = worker.open_hedged(addr, 0, "/twin").unwrap()[..] else {
            panic!("both twins open");
        };
        worker.queue(addr, 1, "/next", false);
        assert_eq!(worker.remaining(), 2);

        // Let the worker send both requests.
        let mut done = Vec::new();
        while worker.sending() > 0 {
            worker.wait(Some(PATIENCE)).unwrap();
            worker.turn(&mut done).unwrap();
        }
        let mut servers = [listener.accept().unwrap().0, listener.accept().unwrap().0];
        for server in &mut servers {
            read_head(server);
            server
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ntwin")
                .unwrap();
        }
        // Both answers are in the worker's receive queues before it waits,
        // so its one wait returns both events in one batch.
        wait_until(PATIENCE, "both answers acknowledged", || {
            servers.iter().all(|server| unacknowledged(server) == 0)
        });
        worker.wait(Some(PATIENCE)).unwrap();
        let batch: BTreeSet<_> = worker.ready_list().iter().copied().collect();
        assert_eq!(batch, BTreeSet::from([first, second]));

        // One round: whichever twin goes first answers, closes the other, and
        // opens request 1's connection. That one must not get the closed
        // twin's slot while the twin's entry is still ahead in this round.
        let turns_before = worker.stats().turns;
        worker.turn(&mut done).unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].body, b"twin");
        let stats = worker.stats();
        assert_eq!((stats.twins_closed, stats.ignored), (1, 1), "{stats:?}");
        assert_eq!(stats.turns - turns_before, 1, "only the winner had a turn");
        assert_eq!(worker.remaining(), 1);
        let _next = listener.accept().unwrap();

        // What the servers see proves which socket was read: the winner was
        // read to the end and closed (EOF); the loser was closed with its
        // answer unread, which makes the kernel reset the connection.
        let mut ends: Vec<ErrorKind> = servers
            .iter_mut()
            .map(|server| match server.read(&mut [0; 16]) {
                Ok(0) => ErrorKind::UnexpectedEof,
                Ok(n) => panic!("{n} unexpected bytes"),
                Err(error) => error.kind(),
            })
            .collect();
        ends.sort_by_key(|kind| kind.to_string());
        assert_eq!(ends, [ErrorKind::ConnectionReset, ErrorKind::UnexpectedEof]);
    });
}
// ANCHOR_END: same_batch

/// Accepts both connections of a hedged request and reads their requests.
fn accept_twins(listener: &TcpListener, worker: &mut Worker) -> [TcpStream; 2] {
    let mut done = Vec::new();
    while worker.sending() > 0 {
        worker.wait(Some(PATIENCE)).unwrap();
        worker.turn(&mut done).unwrap();
    }
    let mut servers = [listener.accept().unwrap().0, listener.accept().unwrap().0];
    for server in &mut servers {
        read_head(server);
    }
    servers
}

/// Closes a server's end with a TCP reset instead of a FIN.
fn reset(server: TcpStream) {
    socket2::SockRef::from(&server)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
}

// ANCHOR: failed_twin
#[test]
fn a_failed_twin_closes_only_itself_and_the_other_answers() {
    within(PATIENCE, "failed-twin test", || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut worker = Worker::new(Instant::now(), Budget::default()).unwrap();
        let addr = listener.local_addr().unwrap();
        let [first, second] = worker.open_hedged(addr, 0, "/twin").unwrap()[..] else {
            panic!("both twins open");
        };
        let [broken, mut good] = accept_twins(&listener, &mut worker);

        // One twin is reset: the request goes on, on the other one.
        reset(broken);
        let mut done = Vec::new();
        while worker.stats().twins_failed == 0 {
            worker.wait(Some(PATIENCE)).unwrap();
            worker
                .turn(&mut done)
                .expect("one failed twin must not fail the run");
        }
        assert!(done.is_empty());
        assert_eq!(worker.remaining(), 1);
        assert_eq!(
            usize::from(worker.is_open(first)) + usize::from(worker.is_open(second)),
            1
        );

        good.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ntwin")
            .unwrap();
        while done.is_empty() {
            worker.wait(Some(PATIENCE)).unwrap();
            worker.turn(&mut done).unwrap();
        }
        assert_eq!(done[0].body, b"twin");
        assert_eq!(worker.remaining(), 0);
        assert_eq!(worker.stats().twins_failed, 1);
    });
}
// ANCHOR_END: failed_twin

#[test]
fn a_hedged_request_fails_only_when_both_twins_fail_naming_both() {
    within(PATIENCE, "both-twins-fail test", || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut worker = Worker::new(Instant::now(), Budget::default()).unwrap();
        worker
            .open_hedged(listener.local_addr().unwrap(), 0, "/twin")
            .unwrap();
        let servers = accept_twins(&listener, &mut worker);
        servers.into_iter().for_each(reset);
        let mut done = Vec::new();
        let error = loop {
            worker.wait(Some(PATIENCE)).unwrap();
            if let Err(error) = worker.turn(&mut done) {
                break error;
            }
        };
        assert!(done.is_empty());
        match error {
            Error::Request {
                problem: Problem::Hedged { first, second },
                ..
            } => {
                for problem in [*first, *second] {
                    assert!(
                        matches!(&problem, Problem::Io(e) if e.kind() == ErrorKind::ConnectionReset),
                        "{problem:?}"
                    );
                }
            }
            other => panic!("expected both twins' problems, got {other:?}"),
        }
    });
}

// ANCHOR: at_most_once
#[test]
fn a_connection_is_on_the_ready_list_at_most_once() {
    within(PATIENCE, "at-most-once test", || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut worker = Worker::new(Instant::now(), Budget::Bytes(READ_CHUNK)).unwrap();
        let token = worker.open(addr, 0, "/once").unwrap();
        let mut done = Vec::new();
        while worker.sending() > 0 {
            worker.wait(Some(PATIENCE)).unwrap();
            worker.turn(&mut done).unwrap();
        }
        let (mut server, _) = listener.accept().unwrap();
        read_head(&mut server);
        // Three reads' worth, and no Content-Length: the answer goes on
        // until the server closes.
        server.write_all(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        server.write_all(&vec![b'x'; 3 * READ_CHUNK]).unwrap();
        wait_until(PATIENCE, "the answer acknowledged", || {
            unacknowledged(&server) == 0
        });
        worker.wait(Some(PATIENCE)).unwrap();
        assert_eq!(worker.ready_list(), &[token]);
        // One read, the budget is spent, and it is still ready: back on.
        worker.turn(&mut done).unwrap();
        assert_eq!(worker.ready_list(), &[token]);
        // Nothing new will happen, but the list has work: the next wait
        // only collects events, and does not block.
        let before = Instant::now();
        worker.wait(Some(Duration::from_secs(5))).unwrap();
        assert!(
            before.elapsed() < Duration::from_secs(4),
            "the wait blocked"
        );

        // New bytes bring a new edge while the connection is on the list;
        // the event is counted, and the list still holds it once.
        let events = worker.stats().events;
        server.write_all(b"more").unwrap();
        wait_until(PATIENCE, "the new bytes acknowledged", || {
            unacknowledged(&server) == 0
        });
        worker.wait(Some(PATIENCE)).unwrap();
        assert_eq!(worker.stats().events, events + 1);
        assert_eq!(worker.ready_list(), &[token], "on the list once");
    });
}
// ANCHOR_END: at_most_once

// ANCHOR: round_robin
#[test]
fn ready_connections_take_turns_in_order_one_read_each() {
    within(PATIENCE, "round-robin test", || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut worker = Worker::new(Instant::now(), Budget::Bytes(READ_CHUNK)).unwrap();
        for request in 0..3 {
            worker.open(addr, request, "/turns").unwrap();
        }
        let mut done = Vec::new();
        while worker.sending() > 0 {
            worker.wait(Some(PATIENCE)).unwrap();
            worker.turn(&mut done).unwrap();
        }
        // Each answer is exactly three reads long, and all of it is waiting
        // before the worker looks.
        let total = 3 * READ_CHUNK;
        let mut body = total;
        let head = loop {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {body}\r\n\r\n");
            if head.len() + body == total {
                break head;
            }
            body = total - head.len();
        };
        let mut servers: Vec<TcpStream> = (0..3).map(|_| listener.accept().unwrap().0).collect();
        for server in &mut servers {
            read_head(server);
            server.write_all(head.as_bytes()).unwrap();
            server.write_all(&vec![b'r'; body]).unwrap();
        }
        wait_until(PATIENCE, "every answer acknowledged", || {
            servers.iter().all(|server| unacknowledged(server) == 0)
        });
        worker.wait(Some(PATIENCE)).unwrap();
        let order: Vec<_> = worker.ready_list().iter().copied().collect();
        assert_eq!(order.len(), 3);

        // Round robin: nobody gets a second read before everyone got a
        // first, so all three finish in the third round, none sooner; and
        // each goes to the back of the list, so the order stays the same.
        for round in 1..=3 {
            worker.turn(&mut done).unwrap();
            let expected = if round < 3 { 0 } else { 3 };
            assert_eq!(done.len(), expected, "after round {round}");
            if round < 3 {
                let now: Vec<_> = worker.ready_list().iter().copied().collect();
                assert_eq!(now, order, "the order after round {round}");
            }
        }
    });
}
// ANCHOR_END: round_robin

// ANCHOR: leftover
#[test]
fn a_closed_twins_token_leaves_the_ready_list_before_its_slot_is_reused() {
    within(PATIENCE, "leftover test", || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut worker = Worker::new(Instant::now(), Budget::Bytes(READ_CHUNK)).unwrap();
        let [first, second] = worker.open_hedged(addr, 0, "/leftover").unwrap()[..] else {
            panic!("both twins open");
        };
        let mut servers = accept_twins(&listener, &mut worker);

        // Both answers start with one read's worth, and no Content-Length:
        // each ends when its server closes.
        let head = b"HTTP/1.1 200 OK\r\n\r\n";
        let start = [&head[..], &vec![b'x'; READ_CHUNK - head.len()]].concat();
        for server in &mut servers {
            server.write_all(&start).unwrap();
        }
        wait_until(PATIENCE, "both starts acknowledged", || {
            servers.iter().all(|server| unacknowledged(server) == 0)
        });
        worker.wait(Some(PATIENCE)).unwrap();
        let order: Vec<_> = worker.ready_list().iter().copied().collect();
        assert_eq!(order.len(), 2);

        // The first on the list gets more to read; the second's answer
        // ends. In round 2 the first reads and goes to the back of the list,
        // then the second reaches EOF, completes, and closes the first.
        let (slow, fast) = (order[0], order[1]);
        let server = |token| &servers[usize::from(token == second)];
        server(slow).write_all(&vec![b'x'; READ_CHUNK]).unwrap();
        server(fast).shutdown(Shutdown::Write).unwrap();
        wait_until(PATIENCE, "the rest acknowledged, FIN included", || {
            servers.iter().all(|server| unacknowledged(server) == 0)
        });
        let mut done = Vec::new();
        worker.turn(&mut done).unwrap();
        assert!(done.is_empty());
        worker.turn(&mut done).unwrap();
        assert_eq!(done.len(), 1);
        assert!(!worker.is_open(slow) && !worker.is_open(fast));

        // The closed twin's token was on the ready list for the next round;
        // the cleanup took it off before freeing the slot, so the next
        // connection, which gets that slot and token, is not on the list.
        assert!(
            !worker.ready_list().contains(&slow),
            "the closed twin {slow:?} is still on the ready list: {:?}",
            worker.ready_list()
        );
        let next = worker.open(addr, 1, "/next").unwrap();
        assert!(next == first || next == second, "{next:?} reuses a slot");
        assert!(!worker.ready_list().contains(&next));
    });
}
// ANCHOR_END: leftover

// ANCHOR: opens_per_turn
#[test]
fn one_pass_of_the_loop_opens_at_most_opens_per_pass_requests() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut worker = Worker::new(Instant::now(), Budget::default()).unwrap();
    for request in 0..OPENS_PER_PASS + 10 {
        worker.queue(addr, request, "/0/x", false);
    }
    // Opening is a round's work like any other: the rest wait for the next
    // pass, so the first requests can be sent in between.
    worker.open_waiting().unwrap();
    assert_eq!(worker.open_for_requests(), OPENS_PER_PASS);
    worker.open_waiting().unwrap();
    assert_eq!(worker.open_for_requests(), OPENS_PER_PASS + 10);
    assert_eq!(worker.remaining(), OPENS_PER_PASS + 10);

    // The allowance counts requests: hedged, each opens two connections.
    let mut hedged = Worker::new(Instant::now(), Budget::default()).unwrap();
    for request in 0..OPENS_PER_PASS + 10 {
        hedged.queue(addr, request, "/0/x", true);
    }
    hedged.open_waiting().unwrap();
    assert_eq!(hedged.open_for_requests(), 2 * OPENS_PER_PASS);
}
// ANCHOR_END: opens_per_turn

/// The fds in the kernel's interest list for `epoll`, in fd order: the
/// `tfd:` lines of /proc/self/fdinfo/EPFD. An entry outlives the close of
/// its fd while another fd of the same socket is open, and keeps the
/// number it was registered under.
fn watched_fds(epoll: &impl AsFd) -> Vec<RawFd> {
    let epfd = epoll.as_fd().as_raw_fd();
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{epfd}")).expect("fdinfo");
    let mut fds: Vec<RawFd> = text
        .lines()
        .filter_map(
            |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                ["tfd:", fd, ..] => fd.parse().ok(),
                _ => None,
            },
        )
        .collect();
    fds.sort_unstable();
    fds
}

/// Sends the request of the worker's one connection and accepts it.
fn accept_one(listener: &TcpListener, worker: &mut Worker) -> TcpStream {
    let mut done = Vec::new();
    while worker.sending() > 0 {
        worker.wait(Some(PATIENCE)).unwrap();
        worker.turn(&mut done).unwrap();
    }
    let (mut server, _) = listener.accept().unwrap();
    read_head(&mut server);
    server
}

// ANCHOR: close_deregisters
#[test]
fn a_closed_connection_leaves_the_interest_list_even_with_a_copy_of_its_fd() {
    within(PATIENCE, "deregister test", || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut worker = Worker::new(Instant::now(), Budget::default()).unwrap();
        worker.open(addr, 0, "/copied").unwrap();
        let watched = watched_fds(&worker);
        let [fd] = watched[..] else {
            panic!("one connection, one registration: {watched:?}");
        };
        // A copy of the connection's fd, as a `dup` makes one, or a
        // `fork` by any thread.
        // SAFETY: `fd` is the worker's connection, open until the worker
        // closes it below, long after this borrow has ended.
        let copy = unsafe { BorrowedFd::borrow_raw(fd) }
            .try_clone_to_owned()
            .unwrap();
        let mut server = accept_one(&listener, &mut worker);
        server
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\ncopied")
            .unwrap();
        let mut done = Vec::new();
        while done.is_empty() {
            worker.wait(Some(PATIENCE)).unwrap();
            worker.turn(&mut done).unwrap();
        }
        assert_eq!(done[0].body, b"copied");
        // The answer closed the connection, and the copy keeps its socket
        // open: only the deregister took it off the list.
        assert_eq!(watched_fds(&worker), [], "the closed connection is watched");
        drop(copy);
    });
}
// ANCHOR_END: close_deregisters

// ANCHOR: read_size
#[test]
fn an_answer_already_received_is_read_32_kib_at_a_time() {
    within(PATIENCE, "read size test", || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut worker = Worker::new(Instant::now(), Budget::default()).unwrap();
        worker.open(addr, 0, "/big").unwrap();
        let mut server = accept_one(&listener, &mut worker);
        // 96 KiB of body, all of it in the worker's receive queue before
        // its turn: each read takes what it asks for.
        let body = vec![b'x'; 96 * 1024];
        server
            .write_all(
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(),
            )
            .unwrap();
        server.write_all(&body).unwrap();
        wait_until(PATIENCE, "the answer acknowledged", || {
            unacknowledged(&server) == 0
        });
        let before = worker.stats().reads;
        let mut done = Vec::new();
        while done.is_empty() {
            worker.wait(Some(PATIENCE)).unwrap();
            worker.turn(&mut done).unwrap();
        }
        assert_eq!(done[0].body, body);
        // Three reads of 32 KiB, and one for the head's few bytes beyond
        // them (counted where the reads are made). Reads of 4 KiB would
        // take 25.
        let reads = worker.stats().reads - before;
        assert!(reads <= 4, "{reads} reads for 96 KiB and a head");
    });
}
// ANCHOR_END: read_size
