//! The listening side: an edge-triggered listener must accept until
//! `WouldBlock`; an error ends that loop and leaves the rest queued; what
//! the listener accepts is born non-blocking and close-on-exec; and its
//! port can be listened on again at once after it closes; and several
//! epolls watching one listener, with and without `EPOLLEXCLUSIVE`, as
//! the server example's workers do.

mod support;

use std::env;
use std::ffi::c_int;
use std::fs::File;
use std::io::{self, ErrorKind, Read};
use std::mem;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

use d_ready_list::listener::{accept, accept_until_would_block, listen};
use d_ready_list::{Events, Interest, Poll, Token, Waker};
use support::{PATIENCE, gettid, in_epoll_wait, wait_until, within};

const LISTENER: Token = Token(0);

/// How many clients connect at once.
const CLIENTS: usize = 4;

/// How long a wait may find nothing before we call the listener stalled.
const STALL: Duration = Duration::from_millis(300);

/// How many connections wait in `listener`'s accept queue: what `ss -lt`
/// shows as Recv-Q. For a listening socket the kernel reports it in
/// `TCP_INFO`, in the field that means "unacknowledged" on a connection.
fn accept_queue(listener: &TcpListener) -> usize {
    // SAFETY: tcp_info is plain integers, for which all zeroes is valid.
    let mut info: libc::tcp_info = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the fd is open while `listener` is borrowed; the pointer and
    // `len` describe `info`, and the kernel writes at most `len` bytes.
    let ret = unsafe {
        libc::getsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    assert_eq!(ret, 0, "TCP_INFO: {}", io::Error::last_os_error());
    info.tcpi_unacked as usize
}

/// A listener registered edge-triggered in `poll` (and not one-shot, so
/// that what follows its one event is the edge's doing), with `CLIENTS`
/// connections waiting in its accept queue, and the clients (kept open).
fn listener_with_waiting_clients(poll: &Poll) -> (TcpListener, Vec<TcpStream>) {
    let listener = listen("127.0.0.1:0".parse().unwrap(), 128).expect("listen");
    poll.registry()
        .register_listener(&listener, LISTENER, false)
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let clients = (0..CLIENTS)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    // A connect returns once the client's side of the handshake is done;
    // the server's side may queue the connection a moment later.
    wait_until(PATIENCE, "every connection in the accept queue", || {
        accept_queue(&listener) == CLIENTS
    });
    (listener, clients)
}

fn tokens(events: &Events) -> Vec<Token> {
    events.iter().map(|event| event.token()).collect()
}

// ANCHOR: accept_stall
#[test]
fn one_accept_per_edge_leaves_connections_queued_and_accepting_to_would_block_takes_all() {
    // Accept once per event, as a level-triggered loop may: four clients
    // are one edge, one accept, and the other three wait unseen.
    let poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(8);
    let (listener, _clients) = listener_with_waiting_clients(&poll);
    poll.poll(&mut events, Some(PATIENCE)).unwrap();
    assert_eq!(
        tokens(&events),
        [LISTENER],
        "one event for four connections"
    );
    let _first = accept(&listener).expect("accept");
    poll.poll(&mut events, Some(STALL)).unwrap();
    assert!(events.is_empty(), "no new edge: {:?}", tokens(&events));
    assert_eq!(accept_queue(&listener), CLIENTS - 1, "left waiting");

    // Accept until WouldBlock, as this chapter does: one edge, all four.
    let poll = Poll::new().unwrap();
    let (listener, _clients) = listener_with_waiting_clients(&poll);
    poll.poll(&mut events, Some(PATIENCE)).unwrap();
    assert_eq!(tokens(&events), [LISTENER]);
    let accepted = within(PATIENCE, "accept until WouldBlock", move || {
        let mut accepted = Vec::new();
        accept_until_would_block(&listener, &mut accepted).expect("accept");
        (accepted.len(), accept_queue(&listener))
    });
    assert_eq!(accepted, (CLIENTS, 0), "(accepted, left in the queue)");
}
// ANCHOR_END: accept_stall

// ANCHOR: accept4_flags
/// The flag `fcntl(F_GETFL)` or `fcntl(F_GETFD)` reports for `fd`.
fn has_flag(fd: &impl AsRawFd, command: c_int, flag: c_int) -> bool {
    // SAFETY: F_GETFL and F_GETFD take no argument and only read the flags
    // of an fd that is open while it is borrowed.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), command) };
    assert!(flags >= 0, "fcntl: {}", io::Error::last_os_error());
    flags & flag != 0
}

#[test]
fn the_listener_and_what_it_accepts_are_non_blocking_and_close_on_exec() {
    let listener = listen("127.0.0.1:0".parse().unwrap(), 128).expect("listen");
    let addr = listener.local_addr().unwrap();
    // With the queue empty, a non-blocking listener says so at once. (A
    // blocking one would wait here for a client that never comes.)
    let (listener, empty) = within(Duration::from_secs(5), "accept, queue empty", move || {
        let empty = accept(&listener).map(drop);
        (listener, empty)
    });
    assert_eq!(empty.unwrap_err().kind(), ErrorKind::WouldBlock);

    let poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(8);
    poll.registry()
        .register(&listener, LISTENER, Interest::READABLE)
        .unwrap();
    let _client = TcpStream::connect(addr).expect("connect");
    poll.poll(&mut events, Some(PATIENCE)).unwrap();
    assert_eq!(tokens(&events), [LISTENER]);
    let stream = accept(&listener).expect("accept");
    assert!(has_flag(&stream, libc::F_GETFL, libc::O_NONBLOCK));
    assert!(has_flag(&stream, libc::F_GETFD, libc::FD_CLOEXEC));
    assert!(has_flag(&listener, libc::F_GETFL, libc::O_NONBLOCK));
    assert!(has_flag(&listener, libc::F_GETFD, libc::FD_CLOEXEC));
}
// ANCHOR_END: accept4_flags

// ANCHOR: reuse_address
/// The state /proc/net/tcp gives a socket in `TIME_WAIT`.
const TIME_WAIT: &str = "06";

/// Whether a TCP socket on local port `port` is in `TIME_WAIT`.
fn in_time_wait(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let port = format!(":{port:04X}");
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() > 3 && fields[1].ends_with(&port) && fields[3] == TIME_WAIT
    })
}

#[test]
fn a_port_whose_server_closed_first_can_be_listened_on_again_at_once() {
    let listener = listen("127.0.0.1:0".parse().unwrap(), 128).expect("listen");
    let addr = listener.local_addr().unwrap();
    let mut client = TcpStream::connect(addr).expect("connect");
    let accepted = within(PATIENCE, "accept one client", move || {
        let mut accepted = Vec::new();
        while accepted.is_empty() {
            accept_until_would_block(&listener, &mut accepted).expect("accept");
        }
        accepted
    });
    // The server closes first, the client then sees EOF and closes: the
    // server's side of the connection waits in TIME_WAIT, on the port.
    drop(accepted);
    assert_eq!(client.read(&mut [0; 1]).expect("read EOF"), 0);
    drop(client);
    wait_until(PATIENCE, "the server's side in TIME_WAIT", || {
        in_time_wait(addr.port())
    });
    let again = listen(addr, 128).map(drop);
    assert!(again.is_ok(), "listen on {addr} again: {again:?}");
}
// ANCHOR_END: reuse_address

// ANCHOR: accept_error
/// Set in the child process that runs the test below under a lowered
/// limit of open files, which would hurt the tests running beside it here.
const IN_CHILD: &str = "LISTENER_TEST_IN_CHILD";

#[test]
fn an_accept_error_ends_the_loop_and_the_rest_stay_queued_with_no_new_edge() {
    const NAME: &str = "an_accept_error_ends_the_loop_and_the_rest_stay_queued_with_no_new_edge";
    if env::var_os(IN_CHILD).is_none() {
        let output = run_alone_in_a_child(NAME);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "the child: {}\n{stdout}{stderr}",
            output.status
        );
        return;
    }
    let poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(8);
    let (listener, _clients) = listener_with_waiting_clients(&poll);
    poll.poll(&mut events, Some(PATIENCE)).unwrap();
    assert_eq!(tokens(&events), [LISTENER]);

    // Leave room for two more descriptors, where four clients wait.
    let fillers = with_room_for(2);
    let (listener, accepted, result) = within(Duration::from_secs(5), "accept", move || {
        let mut accepted = Vec::new();
        let result = accept_until_would_block(&listener, &mut accepted);
        (listener, accepted, result)
    });
    let error = result.expect_err("out of descriptors");
    assert_eq!(error.raw_os_error(), Some(libc::EMFILE), "{error}");
    assert_eq!(accepted.len(), 2, "accepted before the error");
    assert_eq!(accept_queue(&listener), CLIENTS - 2, "left waiting");
    poll.poll(&mut events, Some(STALL)).unwrap();
    assert!(events.is_empty(), "no new edge: {:?}", tokens(&events));

    // Once descriptors are free, a call that no edge asked for takes them.
    drop(fillers);
    let mut accepted = accepted;
    accept_until_would_block(&listener, &mut accepted).expect("accept");
    assert_eq!((accepted.len(), accept_queue(&listener)), (CLIENTS, 0));
}
// ANCHOR_END: accept_error

/// Runs the test `name` of this file alone in a child process with
/// `IN_CHILD` set, and returns what it printed; kills it if it hangs.
fn run_alone_in_a_child(name: &str) -> Output {
    let child = Command::new(env::current_exe().expect("this test's path"))
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(IN_CHILD, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the child");
    let pid = child.id() as libc::pid_t;
    let (done, output) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match output.recv_timeout(PATIENCE) {
        Ok(output) => {
            let _ = waiter.join();
            output.expect("the child's output")
        }
        Err(_) => {
            // SAFETY: kill takes plain integers; the child is ours and not
            // yet reaped (its waiter is still waiting), so `pid` is its.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("the child: still running after {PATIENCE:?}, killed");
        }
    }
}

/// Lowers this process's limit of open files so that exactly `room` more
/// descriptors can be opened, by filling every other free number below the
/// limit; the limit is restored when what this returns is dropped.
fn with_room_for(room: usize) -> Fillers {
    let highest = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .expect("open fds");
    // SAFETY: rlimit is plain integers, for which all zeroes is valid.
    let mut old: libc::rlimit = unsafe { mem::zeroed() };
    // SAFETY: `old` is a live rlimit that getrlimit fills.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) }, 0);
    let lowered = libc::rlimit {
        rlim_cur: highest + 1 + room as u64,
        rlim_max: old.rlim_max,
    };
    // SAFETY: `lowered` is a live rlimit that setrlimit only reads.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
    let mut files = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(file) => files.push(file),
            Err(error) if error.raw_os_error() == Some(libc::EMFILE) => break,
            Err(error) => panic!("open /dev/null: {error}"),
        }
    }
    assert!(files.len() >= room, "{} free below the limit", files.len());
    files.truncate(files.len() - room);
    Fillers { files, old }
}

/// Files that fill the descriptor table, and the limit to restore.
struct Fillers {
    files: Vec<File>,
    old: libc::rlimit,
}

impl Drop for Fillers {
    fn drop(&mut self) {
        self.files.clear();
        // SAFETY: `old` is a live rlimit that setrlimit only reads.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &self.old) };
    }
}

// ANCHOR: herd
/// How many workers watch the one listener, each with an epoll of its own.
const WORKERS: usize = 4;

const STOP: Token = Token(1);

/// Whether thread `tid` of this process is asleep, and how many times it
/// has gone to sleep (`voluntary_ctxt_switches` in its /proc status), or
/// `None` once it has ended.
fn sleeps(tid: libc::pid_t) -> Option<(bool, u64)> {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).ok()?;
    let field = |name: &str| {
        let line = status.lines().find(|line| line.starts_with(name))?;
        line.split_whitespace().nth(1)
    };
    let asleep = field("State:")? == "S";
    let count = field("voluntary_ctxt_switches:")?.parse().ok()?;
    Some((asleep, count))
}

/// One connection arrives at a listener that `WORKERS` threads watch, each
/// blocked in `epoll_wait` on its own `Poll`, each ready to accept. Returns
/// which workers the kernel woke for it, and which of those it handed
/// the listener's event.
///
/// A worker handed the event accepts until `WouldBlock` and reports. One
/// woken too late finds the listener no longer readable: the kernel,
/// asking the listener again before `epoll_wait` returns, puts it back to
/// sleep, and all that shows is one more sleep in its count.
fn wakes_for_one_connection(exclusive: bool) -> (Vec<usize>, Vec<usize>) {
    let listener = Arc::new(listen("127.0.0.1:0".parse().unwrap(), 128).expect("listen"));
    let (handed, handed_to) = mpsc::channel();
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let poll = Poll::new().unwrap();
        poll.registry()
            .register_listener(&*listener, LISTENER, exclusive)
            .unwrap();
        let stop = Waker::new(poll.registry(), STOP).unwrap();
        let (tid, tids) = mpsc::channel();
        let (listener, handed) = (Arc::clone(&listener), handed.clone());
        let thread = thread::spawn(move || {
            tid.send(gettid()).unwrap();
            let mut events = Events::with_capacity(8);
            poll.poll(&mut events, None).unwrap();
            if events.iter().any(|event| event.token() == LISTENER) {
                let mut accepted = Vec::new();
                accept_until_would_block(&listener, &mut accepted).expect("accept");
                let _ = handed.send(worker);
            }
        });
        let tid = tids.recv_timeout(PATIENCE).expect("worker started");
        workers.push((stop, tid, thread));
    }
    let mut before = Vec::new();
    for (_, tid, _) in &workers {
        wait_until(PATIENCE, "worker asleep in epoll_wait", || {
            in_epoll_wait(*tid) && sleeps(*tid).is_some_and(|(asleep, _)| asleep)
        });
        before.push(sleeps(*tid).expect("worker alive").1);
    }

    let _client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    // Once a worker has accepted, the kernel has made every wake-up it will
    // make for this connection. Wait until each other worker is asleep
    // again (woken or not) or has reported.
    let mut handed = vec![handed_to.recv_timeout(PATIENCE).expect("a worker accepts")];
    let mut after = [None; WORKERS];
    wait_until(PATIENCE, "every worker asleep or done", || {
        handed.extend(handed_to.try_iter());
        workers.iter().enumerate().all(|(i, (_, tid, _))| {
            handed.contains(&i) || {
                let now = sleeps(*tid).filter(|(asleep, _)| *asleep && in_epoll_wait(*tid));
                after[i] = now.map(|(_, count)| count);
                now.is_some()
            }
        })
    });
    for (stop, _, _) in &workers {
        stop.wake().unwrap();
    }
    for (_, _, thread) in workers {
        thread.join().expect("worker");
    }
    handed.sort_unstable();
    let woken = (0..WORKERS)
        .filter(|i| handed.contains(i) || after[*i].is_some_and(|count| count > before[*i]))
        .collect::<Vec<_>>();
    println!(
        "EPOLLEXCLUSIVE {exclusive}: {} of {WORKERS} workers woke for one connection \
         (woken: {woken:?}, handed the event: {handed:?})",
        woken.len()
    );
    (woken, handed)
}

#[test]
fn one_connection_wakes_every_epoll_watching_the_listener_unless_exclusive() {
    // The thundering herd: every worker wakes, and only one can accept.
    let (woken, _) = wakes_for_one_connection(false);
    assert_eq!(
        woken.len(),
        WORKERS,
        "without EPOLLEXCLUSIVE, woken: {woken:?}"
    );
    // EPOLLEXCLUSIVE: one or more wake (epoll_ctl(2) promises no fewer),
    // and not the whole herd.
    let (woken, _) = wakes_for_one_connection(true);
    assert!(
        (1..WORKERS).contains(&woken.len()),
        "with EPOLLEXCLUSIVE, woken: {woken:?}"
    );
}
// ANCHOR_END: herd
