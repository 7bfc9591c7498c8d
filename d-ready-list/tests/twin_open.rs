//! A hedged request whose second connection cannot even be opened goes on,
//! on the first one alone, as if its twin had failed later.
//!
//! The only test in its file, so in a process of its own: it lowers the
//! process's limit on open files for a moment, which no other test thread
//! must meet.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use d_ready_list::client::Budget;
use d_ready_list::worker::Worker;

const PATIENCE: Duration = Duration::from_secs(20);

/// The lowest fd number not in use: the one the next socket will get.
fn lowest_free_fd(near: &impl AsRawFd) -> libc::c_int {
    // SAFETY: dup takes an open fd (borrowed for the call) and no pointers.
    let fd = unsafe { libc::dup(near.as_raw_fd()) };
    assert!(fd >= 0, "dup: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` was made just now by dup and nothing else holds it.
    unsafe { libc::close(fd) };
    fd
}

fn open_files_limit() -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through a pointer to one.
    let ret = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(ret, 0, "getrlimit: {}", std::io::Error::last_os_error());
    limit
}

fn set_open_files_limit(limit: &libc::rlimit) {
    // SAFETY: setrlimit only reads the rlimit the pointer points at.
    let ret = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, limit) };
    assert_eq!(ret, 0, "setrlimit: {}", std::io::Error::last_os_error());
}

// ANCHOR: twin_open
#[test]
fn a_twin_that_cannot_be_opened_leaves_the_other_to_answer() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut worker = Worker::new(Instant::now(), Budget::default()).unwrap();

    // Room for exactly one more fd: the first twin's socket gets it, and
    // the second fails with "Too many open files".
    let saved = open_files_limit();
    let one_more = libc::rlimit {
        rlim_cur: lowest_free_fd(&listener) as libc::rlim_t + 1,
        rlim_max: saved.rlim_max,
    };
    set_open_files_limit(&one_more);
    let opened = worker.open_hedged(addr, 0, "/alone");
    set_open_files_limit(&saved);
    let tokens = opened.expect("one connection is enough to go on");
    assert_eq!(tokens.len(), 1);
    assert_eq!(worker.stats().twins_failed, 1);

    let start = Instant::now();
    let mut done = Vec::new();
    while worker.sending() > 0 {
        assert!(start.elapsed() < PATIENCE, "the request was never sent");
        worker.wait(Some(PATIENCE)).unwrap();
        worker.turn(&mut done).unwrap();
    }
    let (mut server, _) = listener.accept().unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        server.read_exact(&mut byte).expect("request head");
        head.push(byte[0]);
    }
    server
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nalone")
        .unwrap();
    while done.is_empty() {
        assert!(start.elapsed() < PATIENCE, "no answer");
        worker.wait(Some(PATIENCE)).unwrap();
        worker.turn(&mut done).unwrap();
    }
    assert_eq!(done[0].body, b"alone");
    assert_eq!(worker.remaining(), 0);
}
// ANCHOR_END: twin_open
