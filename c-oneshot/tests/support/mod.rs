//! Helpers shared by the integration tests; the same file in every chapter.

// Each test file uses only some of these.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Generous: tests run on a loaded two-core machine.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Runs `f` on its own thread and returns what it returns, or fails the test
/// if it takes longer than `limit`: a hang becomes a failure with a name.
pub fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (done, result) = mpsc::channel();
    let worker = thread::spawn(move || {
        let _ = done.send(f());
    });
    match result.recv_timeout(limit) {
        Ok(value) => {
            let _ = worker.join();
            value
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: still running after {limit:?}"),
        // The closure panicked: show its panic, not ours.
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the worker sends before it returns"),
        },
    }
}

/// Checks `condition` until it holds or `limit` passes. For conditions that
/// no event announces (a thread's state in /proc); never a stand-in for one
/// that a channel or a join could report.
pub fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "{what}: not true after {limit:?}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// A connected pair of Unix stream sockets: the quickest real fds to make
/// readable on demand.
pub fn pair() -> (UnixStream, UnixStream) {
    UnixStream::pair().expect("socketpair")
}

pub fn send(mut stream: impl Write, bytes: &[u8]) {
    stream.write_all(bytes).expect("write to socketpair");
}

/// Reads exactly `n` bytes, which the test knows are waiting.
pub fn take(mut stream: impl Read, n: usize) -> Vec<u8> {
    let mut bytes = vec![0; n];
    stream.read_exact(&mut bytes).expect("read from socketpair");
    bytes
}

/// An address where nothing listens: a port the OS gave us, then let go.
pub fn refusing_addr() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local_addr")
}

/// How many file descriptors this process has open.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// The calling thread's id, as /proc names it.
pub fn gettid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() }
}

/// Whether thread `tid` of this process is blocked in epoll_wait (or, where
/// the architecture has only that one, epoll_pwait). Tests use it to act
/// only once a thread is really waiting.
pub fn in_epoll_wait(tid: libc::pid_t) -> bool {
    let path = format!("/proc/self/task/{tid}/syscall");
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    let number = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse::<libc::c_long>().ok());
    #[cfg(target_arch = "x86_64")]
    let waits = [libc::SYS_epoll_wait, libc::SYS_epoll_pwait];
    #[cfg(not(target_arch = "x86_64"))]
    let waits = [libc::SYS_epoll_pwait];
    number.is_some_and(|n| waits.contains(&n))
}
