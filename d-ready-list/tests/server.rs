//! The `server` example, run as a child process (this test binary started
//! again, running only `server_child`), so that a test can lower its limit
//! on open files, count its threads in /proc, and see it exit.

mod support;

#[path = "../examples/server/accept.rs"]
mod accept;
// Its help text is for the example's `main`.
#[allow(dead_code)]
#[path = "../examples/server/cli.rs"]
mod cli;
#[path = "../examples/server/connection.rs"]
mod connection;
#[path = "../examples/server/server.rs"]
mod server;
#[path = "../examples/server/timers.rs"]
mod timers;
#[path = "../examples/server/worker.rs"]
mod worker;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use d_ready_list::client::{self, Budget, Config};
use support::{PATIENCE, wait_until};

/// What the child reads its command line from.
const CHILD_ARGS: &str = "SERVER_TEST_CHILD_ARGS";

/// The server itself, when this binary is started by `Server::start`;
/// otherwise it does nothing.
#[test]
#[ignore = "the server child process, started by the other tests"]
fn server_child() {
    let Ok(args) = std::env::var(CHILD_ARGS) else {
        return;
    };
    let options = cli::parse(args.split_whitespace().map(String::from))
        .expect("the test's command line parses")
        .expect("not --help");
    let _ = d_ready_list::raise_fd_limit();
    let code = match server::run(&options, &mut io::stdout()) {
        Ok(_) => 0,
        Err(error) => {
            eprintln!("server: {error}");
            1
        }
    };
    std::process::exit(code);
}

/// One worker's line of the server's report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct WorkerReport {
    accepted: u64,
    answered: u64,
    bad_requests: u64,
    failed: u64,
    accept_calls: u64,
    wakeups: u64,
    out_of_fds: u64,
    timed_out: u64,
}

/// A server child process, stopped (stdin closed) when dropped.
struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    fn start(args: &str) -> Server {
        Server::start_with(args, None)
    }

    /// Starts the server with `args`, and at most `nofile` open files if
    /// given, and waits for the line that says where it listens.
    fn start_with(args: &str, nofile: Option<u64>) -> Server {
        Server::start_reading(args, nofile, Stdio::piped())
    }

    /// The same, with `stdin` as the server's standard input.
    fn start_reading(args: &str, nofile: Option<u64>, stdin: Stdio) -> Server {
        let mut command = Command::new(std::env::current_exe().expect("current_exe"));
        command
            .args(["server_child", "--exact", "--ignored", "--nocapture"])
            .args(["--test-threads=1", "--quiet"])
            // Never outlives the test, even if the test is killed.
            .env(CHILD_ARGS, format!("--port 0 --deadline 60 {args}"))
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(nofile) = nofile {
            // SAFETY: the closure runs in the child between fork and exec,
            // where a lock another thread held at the fork stays held for
            // ever, so nothing may allocate or lock. setrlimit is not on
            // POSIX's list of async-signal-safe functions, but glibc's is a
            // bare wrapper around the system call: no allocation, no lock.
            // The closure allocates nothing (the error is made from errno).
            unsafe {
                command.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: nofile,
                        rlim_max: nofile,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == -1 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = command.spawn().expect("start the server child");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr_pipe = child.stderr.take().expect("stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let stderr = Arc::clone(&stderr);
            thread::spawn(move || {
                let mut text = String::new();
                let _ = stderr_pipe.read_to_string(&mut text);
                *stderr.lock().unwrap() = text;
            });
        }
        let (sender, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let addr = loop {
            let line = lines
                .recv_timeout(PATIENCE)
                .expect("the server says where it listens");
            if let Some(rest) = line.strip_prefix("server: listening on ") {
                let addr = rest.split_whitespace().next().expect("an address");
                break addr.parse().expect("a socket address");
            }
        };
        Server {
            child,
            stdin,
            addr,
            lines,
            stderr,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes the server's stdin, which stops it, and returns its exit
    /// status, each worker's report and what it said on stderr.
    fn stop(mut self) -> (ExitStatus, Vec<WorkerReport>, String) {
        drop(self.stdin.take());
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the server") {
                break status;
            }
            assert!(start.elapsed() < PATIENCE, "the server did not stop");
            thread::sleep(Duration::from_millis(5));
        };
        let mut reports = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(PATIENCE) {
            if line.starts_with("accepted per worker:") {
                break;
            }
            if line.starts_with("worker ") {
                reports.push(parse_report(&line));
            }
        }
        // The reader thread ends with the pipe; give it its moment.
        let mut stderr = String::new();
        wait_until(PATIENCE, "server stderr read", || {
            stderr = self.stderr.lock().unwrap().clone();
            Arc::strong_count(&self.stderr) == 1
        });
        (status, reports, stderr)
    }
}

impl Server {
    /// Waits for the server to exit on its own, its stdin still open:
    /// its exit status and what it said on stderr.
    fn exit(mut self) -> (ExitStatus, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the server") {
                break status;
            }
            assert!(start.elapsed() < PATIENCE, "the server did not stop");
            thread::sleep(Duration::from_millis(5));
        };
        let mut stderr = String::new();
        wait_until(PATIENCE, "server stderr read", || {
            stderr = self.stderr.lock().unwrap().clone();
            Arc::strong_count(&self.stderr) == 1
        });
        (status, stderr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Only when a test failed before `stop`: the child is ours.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_report(line: &str) -> WorkerReport {
    let numbers: Vec<u64> = line
        .split(", ")
        .map(|part| {
            let word = part.rsplit(' ').next().expect("a number");
            word.parse()
                .unwrap_or_else(|_| panic!("a number in {line:?}"))
        })
        .collect();
    let [
        accepted,
        answered,
        bad_requests,
        failed,
        timed_out,
        accept_calls,
        wakeups,
        out_of_fds,
    ] = numbers[..]
    else {
        panic!("an unexpected report line: {line:?}");
    };
    WorkerReport {
        accepted,
        answered,
        bad_requests,
        failed,
        accept_calls,
        wakeups,
        out_of_fds,
        timed_out,
    }
}

fn total(reports: &[WorkerReport], field: fn(&WorkerReport) -> u64) -> u64 {
    reports.iter().map(field).sum()
}

/// Sends a request for `path` on a new connection.
fn request(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect to the server");
    let head = d_ready_list::http::request(path, &addr.to_string());
    stream.write_all(head.as_bytes()).expect("send the request");
    stream
}

/// Reads a whole answer, to the server's close: its status and body.
fn answer(mut stream: TcpStream) -> io::Result<(u16, String)> {
    stream.set_read_timeout(Some(PATIENCE))?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other(format!("no whole head in {text:?}")))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no status in {head:?}")))?;
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .and_then(|length| length.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no length in {head:?}")))?;
    assert_eq!(body.len(), length, "the body has the length the head says");
    Ok((status, body.to_string()))
}

/// Reads every answer at once, each on a thread of its own, so that the
/// unanswered cost one `PATIENCE` in all, not one each.
fn answers(streams: Vec<TcpStream>) -> Vec<io::Result<(u16, String)>> {
    let readers: Vec<_> = streams
        .into_iter()
        .map(|stream| thread::spawn(move || answer(stream)))
        .collect();
    readers
        .into_iter()
        .map(|reader| reader.join().expect("a reader thread"))
        .collect()
}

/// How many file descriptors process `pid` has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| dir.count())
        .unwrap_or(0)
}

/// The `Threads:` line of /proc/PID/status.
fn threads(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a Threads line")
}

/// Tests that keep a core busy: two at once, on a two-core machine, would
/// make each other late.
static ONE_HEAVY_RUN_AT_A_TIME: Mutex<()> = Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    ONE_HEAVY_RUN_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ANCHOR: clients
/// Chapter 4's client, pointed at the server, gets every answer, each
/// after its own delay, whichever way the workers share the port.
#[test]
fn chapter_4s_client_gets_every_answer_in_both_listener_modes() {
    for mode in ["shared", "reuseport"] {
        let server = Server::start(&format!("--workers 2 --listener {mode}"));
        let options = d_ready_list::cli::Options {
            requests: 40,
            scale: 0.01,
            ..Default::default()
        };
        let config = Config {
            addr: server.addr,
            paths: options.paths(),
            deadline: PATIENCE,
            workers: 2,
            hedge: false,
            endless: false,
            max_open: 0,
            budget: Budget::default(),
        };
        let summary = client::run(&config, &mut io::sink()).expect("every request is answered");
        assert_eq!(summary.completed.len(), 40);
        for done in &summary.completed {
            let delay_ms: u64 = done.path.split('/').nth(1).unwrap().parse().unwrap();
            assert!(
                done.elapsed >= Duration::from_millis(delay_ms),
                "{} answered after {:?}",
                done.path,
                done.elapsed
            );
            assert_eq!(
                done.body,
                done.path.rsplit('/').next().unwrap().as_bytes(),
                "each answer is its own request's"
            );
        }
        let (status, reports, _) = server.stop();
        assert!(status.success(), "{mode}: {status}");
        assert_eq!(reports.len(), 2);
        assert_eq!(total(&reports, |r| r.accepted), 40, "{mode}: {reports:?}");
        assert_eq!(total(&reports, |r| r.answered), 40, "{mode}: {reports:?}");
    }
}
// ANCHOR_END: clients

#[test]
fn bad_requests_are_answered_400_and_the_server_goes_on() {
    let server = Server::start("--workers 1");
    let mut post = TcpStream::connect(server.addr).unwrap();
    post.write_all(b"POST /1/x HTTP/1.1\r\n\r\n").unwrap();
    let mut garbage = TcpStream::connect(server.addr).unwrap();
    garbage.write_all(b"\x00\x01 not http\r\n\r\n").unwrap();
    assert_eq!(answer(post).unwrap().0, 400);
    assert_eq!(answer(garbage).unwrap().0, 400);
    assert_eq!(answer(request(server.addr, "/nowhere")).unwrap().0, 404);
    let (status, body) = answer(request(server.addr, "/10/still%20here")).unwrap();
    assert_eq!((status, body.as_str()), (200, "still here"));
    let (status, reports, _) = server.stop();
    assert!(status.success());
    assert_eq!(reports[0].bad_requests, 2, "{reports:?}");
}

/// A head longer than the server takes (16 KiB) is answered 400, even
/// when its end comes in the read that takes it over the limit: the first
/// 16,000 bytes are read before the rest, blank line included, is sent.
#[test]
fn a_request_head_longer_than_the_limit_is_answered_400() {
    let server = Server::start("--workers 1");
    let mut client = TcpStream::connect(server.addr).unwrap();
    let mut head = b"GET /0/long HTTP/1.1\r\nX-Long: ".to_vec();
    head.resize(16_000, b'a');
    client.write_all(&head).unwrap();
    let port = client.local_addr().unwrap().port();
    wait_until(PATIENCE, "the server has read the first part", || {
        receive_queue(server.addr.port(), port) == Some(0)
    });
    let mut rest = vec![b'a'; 1_000];
    rest.extend_from_slice(b"\r\n\r\n");
    client.write_all(&rest).unwrap();
    assert_eq!(answer(client).unwrap().0, 400);
    let (status, reports, _) = server.stop();
    assert!(status.success());
    assert_eq!(reports[0].bad_requests, 1, "{reports:?}");
}

// ANCHOR: black_box
/// A client that resets, one that leaves before its answer, one that
/// never reads an endless body, and a client process stopped with
/// SIGSTOP: the others are answered, the server says in clear lines that
/// some failed, and it stops cleanly.
#[test]
fn clients_that_reset_leave_or_stop_reading_cost_the_others_nothing() {
    let server = Server::start("--workers 1");
    let reset = request(server.addr, "/100/reset");
    socket2::SockRef::from(&reset)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(reset);
    drop(request(server.addr, "/100/leaves"));
    let _never_reads = request(server.addr, "/endless");
    // The server's descriptors before the client connects: the stopped
    // client must be stopped with its connections open, not before it
    // made them.
    let before = open_fds(server.pid());
    let stopped = Command::new(env!("CARGO_BIN_EXE_d-ready-list"))
        .args([
            "--addr",
            &server.addr.to_string(),
            "-n",
            "3",
            "--scale",
            "0.2",
        ])
        .args(["--endless"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chapter 4's client");
    let pid = stopped.id() as libc::pid_t;
    // Its endless connection, at least, stays open until it is resumed.
    support::wait_until(PATIENCE, "the client's connections accepted", || {
        open_fds(server.pid()) >= before + 2
    });
    // SAFETY: kill takes no pointers; the pid is our own child's, not yet
    // waited for, so it names that process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);

    let sent = Instant::now();
    let (status, body) = answer(request(server.addr, "/300/others")).unwrap();
    let late = sent.elapsed().saturating_sub(Duration::from_millis(300));
    assert_eq!((status, body.as_str()), (200, "others"));
    // Nothing above may hold the others up: a generous bound for a busy
    // machine, far below what a blocked worker would cost (for ever).
    assert!(late < Duration::from_secs(2), "answered {late:?} late");

    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let output = support::within(PATIENCE, "the stopped client", move || {
        stopped.wait_with_output().unwrap()
    });
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (status, reports, stderr) = server.stop();
    assert!(status.success(), "{status}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr
            .lines()
            .all(|line| line.starts_with("server: worker 0: ")),
        "one clear line each: {stderr}"
    );
    // The reset fails; the one that left may have been written to before
    // its close arrived. The others, and the stopped client's three, are
    // answered.
    assert!(reports[0].failed >= 1, "{reports:?}\n{stderr}");
    // A failure is said, in at most one line each (fewer when they come
    // faster than a line a second: the rate limit's test shows that).
    let lines = stderr.lines().count() as u64;
    assert!(
        (1..=reports[0].failed).contains(&lines),
        "{lines} lines for {} failures: {stderr}",
        reports[0].failed
    );
    assert!(reports[0].answered >= 4, "{reports:?}\n{stderr}");
}
// ANCHOR_END: black_box

// ANCHOR: complaints
/// Clients that fail one after another (each resets while it waits) cost
/// the server's stderr at most a line a second, not a line each: a flood
/// of bad clients cannot become a flood of output.
#[test]
fn failing_clients_cost_at_most_a_line_a_second_on_stderr() {
    const CLIENTS: usize = 30;
    let server = Server::start("--workers 1");
    let pid = server.pid();
    let fds = open_fds(pid);
    let start = Instant::now();
    // Each reset once the server holds the connection, so that its close
    // is the server's doing: the descriptor count then falls back.
    for i in 0..CLIENTS {
        let stream = request(server.addr, &format!("/5000/reset-{i}"));
        let port = stream.local_addr().unwrap().port();
        wait_until(PATIENCE, "the server has read the request", || {
            receive_queue(server.addr.port(), port) == Some(0)
        });
        socket2::SockRef::from(&stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(stream);
    }
    wait_until(PATIENCE, "the server has closed every connection", || {
        open_fds(pid) <= fds
    });
    let seconds = start.elapsed().as_secs();
    let (status, reports, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
    assert_eq!(reports[0].failed, CLIENTS as u64, "{reports:?}\n{stderr}");
    let lines = stderr.lines().count() as u64;
    assert!(
        (1..=seconds + 1).contains(&lines),
        "{lines} lines in {seconds} s or so:\n{stderr}"
    );
}
// ANCHOR_END: complaints

// ANCHOR: emfile
/// More clients than the server has descriptors for: accepting stops at
/// `EMFILE` and starts again when a connection closes, so every client is
/// answered, and `accept4` is called a few times per connection, not as
/// fast as the loop can spin.
#[test]
fn out_of_descriptors_pauses_accepting_without_a_spin() {
    const CLIENTS: u64 = 40;
    // Its own few (stdio, epolls, eventfd, listener), and room for about
    // a dozen connections at a time.
    let server = Server::start_with("--workers 1", Some(24));
    let start = Instant::now();
    let streams: Vec<TcpStream> = (0..CLIENTS)
        .map(|i| request(server.addr, &format!("/200/client-{i}")))
        .collect();
    for (i, stream) in streams.into_iter().enumerate() {
        let (status, body) = answer(stream).expect("every client is answered");
        assert_eq!((status, body), (200, format!("client-{i}")));
    }
    // The retry every 50 ms while out of descriptors, at most.
    let retries = start.elapsed().as_millis() as u64 / 50 + 1;
    let (status, reports, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
    let report = &reports[0];
    assert!(
        report.out_of_fds > 0,
        "the limit was never reached: {report:?}"
    );
    assert_eq!(report.accepted, CLIENTS);
    // One call per connection, one per empty queue or EMFILE each time
    // the listener gets a turn: a listener edge, a close, or a retry.
    assert!(
        report.accept_calls <= 3 * CLIENTS + 4 + retries,
        "accept4 spun: {report:?}"
    );
    assert_eq!(
        stderr
            .lines()
            .filter(|line| line.contains("Too many open files"))
            .count(),
        1,
        "{stderr}"
    );
}
// ANCHOR_END: emfile

// ANCHOR: emfile_reuseport
/// The limit on descriptors is the process's, and a worker's own closes
/// are not the only way one comes free. Two `SO_REUSEPORT` workers, each
/// with its own queue, none with a connection: the test lowers the
/// server's limit (`prlimit`) to the descriptors it has, so that every
/// `accept4` meets `EMFILE`, connects ten clients, waits until all ten
/// sit in the accept queues, and raises the limit again. No connection
/// closes: a worker that waited for one of its own would never accept
/// again. Each tries again after a while, so every client is answered.
#[test]
fn out_of_descriptors_with_two_reuseport_workers_answers_everyone() {
    const CLIENTS: usize = 10;
    let server = Server::start("--workers 2 --listener reuseport");
    let pid = server.pid();
    let limit = nofile(pid);
    // The lowest fd number free in the server: the next one it would get.
    let used: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc fd")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let next = (0..).find(|fd| !used.contains(fd)).unwrap();
    set_nofile(pid, next, limit.rlim_max);
    let streams: Vec<TcpStream> = (0..CLIENTS)
        .map(|i| request(server.addr, &format!("/10/client-{i}")))
        .collect();
    wait_until(PATIENCE, "every client waits in an accept queue", || {
        accept_queues(server.addr.port()) == CLIENTS as u64
    });
    set_nofile(pid, limit.rlim_cur, limit.rlim_max);
    let answers = answers(streams);
    let (status, reports, stderr) = server.stop();
    let unanswered = answers.iter().filter(|answer| answer.is_err()).count();
    assert_eq!(unanswered, 0, "{reports:?}\n{stderr}");
    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer.unwrap(), (200, format!("client-{i}")));
    }
    assert!(status.success(), "{stderr}");
    assert!(
        total(&reports, |r| r.out_of_fds) > 0,
        "the limit was never reached: {reports:?}"
    );
}
// ANCHOR_END: emfile_reuseport

/// Process `pid`'s limit on open files.
fn nofile(pid: u32) -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: no new limit (null); the old one is written to `limit`.
    let ret = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            std::ptr::null(),
            &mut limit,
        )
    };
    assert_eq!(ret, 0, "prlimit: {}", io::Error::last_os_error());
    limit
}

/// Sets process `pid`'s limit on open files (our own child: allowed).
fn set_nofile(pid: u32, soft: u64, hard: u64) {
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: the new limit is read from `limit`; no old one (null).
    let ret = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(ret, 0, "prlimit: {}", io::Error::last_os_error());
}

/// Connections waiting in the accept queues of the sockets listening on
/// `port`: for a listener, /proc/net/tcp's receive queue is its accept
/// queue.
fn accept_queues(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = u16::from_str_radix(fields[1].rsplit(':').next()?, 16).ok()?;
            if local != port || fields[3] != "0A" {
                return None;
            }
            u64::from_str_radix(fields[4].split(':').nth(1)?, 16).ok()
        })
        .sum()
}

// ANCHOR: threads
/// Thousands of connections wait for their delays at once, and the server
/// has the same threads as when it started: the delays are deadlines in
/// a timer queue, not sleeping threads. As many connections as the hard
/// limit on open files allows, up to 10,000 (under `ulimit -n 1024`, a
/// thousand or so); the measurements run it at 10,000.
#[test]
fn the_thread_count_stays_the_same_under_thousands_of_connections() {
    let _alone = heavy();
    let _ = d_ready_list::raise_fd_limit();
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    assert_eq!(
        // SAFETY: getrlimit writes one rlimit through a pointer to one.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    // Room for the test's other fds (other tests run beside this one).
    let connections = (limit.rlim_cur.saturating_sub(200) as usize).min(10_000);
    eprintln!("{connections} connections at once");
    let server = Server::start("--workers 2");
    let pid = server.pid();
    let before = threads(pid);
    let fds_before = open_fds(pid);
    let streams: Vec<TcpStream> = (0..connections)
        .map(|i| request(server.addr, &format!("/4000/c{i}")))
        .collect();
    wait_until(PATIENCE, "the server holds every connection", || {
        open_fds(pid) >= fds_before + connections
    });
    let during = threads(pid);
    for (i, stream) in streams.into_iter().enumerate() {
        let (status, body) = answer(stream).expect("every connection is answered");
        assert_eq!((status, body), (200, format!("c{i}")));
    }
    assert_eq!(
        during, before,
        "threads before and with {connections} connections"
    );
    let (status, reports, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
    assert_eq!(total(&reports, |r| r.answered), connections as u64);
}
// ANCHOR_END: threads

// ANCHOR: starvation
/// The small requests' delays, and how late past its delay each may be.
const DELAYS_MS: [u64; 4] = [100, 200, 300, 400];
const BOUND: Duration = Duration::from_millis(300);

/// One client reads an endless body as fast as it can, another never
/// reads its own, and small delayed requests come in beside them: each is
/// answered within the bound of its delay, because a connection writes at
/// most a budget's worth in its turn.
#[test]
fn an_endless_reader_does_not_starve_the_small_requests() {
    let _alone = heavy();
    let server = Server::start("--workers 1");
    let _never_reads = request(server.addr, "/endless");
    let stop = Arc::new(AtomicBool::new(false));
    let read = Arc::new(AtomicU64::new(0));
    let reader = {
        let (stop, read) = (Arc::clone(&stop), Arc::clone(&read));
        let mut stream = request(server.addr, "/endless");
        thread::spawn(move || {
            let mut buffer = vec![0; 1 << 20];
            while !stop.load(Ordering::Relaxed) {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => read.fetch_add(n as u64, Ordering::Relaxed),
                };
            }
        })
    };
    wait_until(PATIENCE, "the endless body flows", || {
        read.load(Ordering::Relaxed) >= 1 << 20
    });
    let (done, answers) = mpsc::channel();
    for (i, delay) in DELAYS_MS.into_iter().enumerate() {
        let done = done.clone();
        let stream = request(server.addr, &format!("/{delay}/small-{i}"));
        let sent = Instant::now();
        thread::spawn(move || {
            let answered = answer(stream).map(|_| sent.elapsed());
            let _ = done.send((i, answered));
        });
    }
    let give_up =
        Instant::now() + Duration::from_millis(DELAYS_MS[3]) + BOUND + Duration::from_secs(1);
    let mut lateness = [None; DELAYS_MS.len()];
    while lateness.contains(&None) {
        let left = give_up.saturating_duration_since(Instant::now());
        let Ok((i, Ok(elapsed))) = answers.recv_timeout(left) else {
            break;
        };
        lateness[i] = Some(elapsed.saturating_sub(Duration::from_millis(DELAYS_MS[i])));
    }
    // The reader goes, so that a turn that never ends (the break) ends.
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    let (status, _, stderr) = server.stop();
    eprintln!("lateness past each delay: {lateness:?}");
    for (i, late) in lateness.iter().enumerate() {
        let late = late.unwrap_or_else(|| panic!("small request {i} was not answered in time"));
        assert!(late <= BOUND, "small request {i} was {late:?} late");
    }
    assert!(status.success(), "{stderr}");
}
// ANCHOR_END: starvation

// ANCHOR: behind_the_head
/// A client sends its request and, behind it in the same write, 60 KiB
/// more, all there before the server reads any of it (the worker's one
/// place is taken, so the connection waits in the accept queue). The
/// server's first read takes a full buffer and finds the head; bytes are
/// left, and nothing more will arrive to make an edge for them. The worker
/// reads on (edge-triggered: until the socket is empty), so they are read:
/// the kernel shows the socket's receive queue empty. A worker that waited
/// for an edge would leave them there until the client's answer is due,
/// and a close with unread bytes resets the connection instead of ending
/// it.
#[test]
fn bytes_left_behind_a_request_head_are_read_without_a_new_edge() {
    let server = Server::start("--workers 1 --max-open 1");
    let blocker = request(server.addr, "/300/blocker");
    let port = blocker.local_addr().unwrap().port();
    wait_until(PATIENCE, "the server has read the blocker", || {
        receive_queue(server.addr.port(), port) == Some(0)
    });
    let mut behind = TcpStream::connect(server.addr).unwrap();
    let mut bytes =
        d_ready_list::http::request("/60000/behind", &server.addr.to_string()).into_bytes();
    bytes.resize(bytes.len() + 60 * 1024, b'x');
    behind.write_all(&bytes).unwrap();
    let port = behind.local_addr().unwrap().port();
    assert_eq!(answer(blocker).unwrap(), (200, "blocker".to_string()));
    wait_until(PATIENCE, "the server has read every byte", || {
        receive_queue(server.addr.port(), port) == Some(0)
    });
    drop(behind);
    let (status, reports, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
    assert_eq!(reports[0].accepted, 2, "{reports:?}");
}
// ANCHOR_END: behind_the_head

// ANCHOR: cleanup
/// A client resets while it waits for its delay; the next client is given
/// its slot, and so its token. The reset client's deadline must have gone
/// with it: the new client is answered at its own time, not the old one's.
#[test]
fn a_reset_client_leaves_no_deadline_behind_in_its_slot() {
    // Reading /proc/net/tcp beside the heavy tests' thousands of sockets
    // is slow; the old client must be reset well before its deadline.
    let _alone = heavy();
    let server = Server::start("--workers 1");
    let pid = server.pid();
    let fds = open_fds(pid);
    let old = request(server.addr, "/3000/old");
    let old_port = old.local_addr().unwrap().port();
    wait_until(PATIENCE, "the server has read the old request", || {
        receive_queue(server.addr.port(), old_port) == Some(0)
    });
    socket2::SockRef::from(&old)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(old);
    wait_until(PATIENCE, "the server has closed the old connection", || {
        open_fds(pid) <= fds
    });
    let sent = Instant::now();
    let (status, body) = answer(request(server.addr, "/4500/new")).unwrap();
    let elapsed = sent.elapsed();
    assert_eq!((status, body.as_str()), (200, "new"));
    assert!(
        elapsed >= Duration::from_millis(4500),
        "answered after {elapsed:?}, at the old client's deadline"
    );
    let (status, reports, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
    // The old client was reset before its answer went out: otherwise it
    // left no deadline behind, and the test proved nothing.
    assert_eq!(reports[0].failed, 1, "{reports:?} {stderr}");
}
// ANCHOR_END: cleanup

/// Bytes not yet read by the server on its end of the connection from
/// `client_port`, from the kernel's table of TCP sockets; `None` while it
/// has no such socket.
fn receive_queue(server_port: u16, client_port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let port = |field: &str| u16::from_str_radix(field.rsplit(':').next()?, 16).ok();
        if port(fields[1])? != server_port || port(fields[2])? != client_port {
            return None;
        }
        u64::from_str_radix(fields[4].split(':').nth(1)?, 16).ok()
    })
}

// ANCHOR: herd
/// Four workers watch one shared listener, and connections come one at a
/// time while all four wait. With `EPOLLEXCLUSIVE` one worker wakes for
/// each, now and then two; without it all four would. A wake shows in
/// /proc as a voluntary context switch of the thread that slept: without
/// `EPOLLEXCLUSIVE` the three that find nothing to accept still wake (the
/// kernel checks the listener again and sends them back to sleep, so
/// no `accept4` of theirs shows it).
#[test]
fn a_shared_listener_wakes_about_one_worker_per_connection() {
    const CONNECTIONS: usize = 50;
    let _alone = heavy();
    let server = Server::start("--workers 4 --listener shared");
    let pid = server.pid();
    // A thread takes its name once it runs.
    let mut workers = Vec::new();
    wait_until(PATIENCE, "four named workers", || {
        workers = worker_threads(pid);
        workers.len() == 4
    });
    let fds = open_fds(pid);
    let before: u64 = workers.iter().map(|&tid| switches(pid, tid)).sum();
    let mut open = Vec::new();
    for i in 0..CONNECTIONS {
        // Connected, and nothing sent: each connection wakes workers only
        // for itself, and they are all asleep before the next one comes.
        open.push(TcpStream::connect(server.addr).unwrap());
        wait_until(PATIENCE, "the connection is accepted", || {
            open_fds(pid) > fds + i
        });
        wait_until(PATIENCE, "every worker sleeps", || {
            workers.iter().all(|&tid| sleeping(pid, tid))
        });
    }
    let wakes: u64 = workers.iter().map(|&tid| switches(pid, tid)).sum::<u64>() - before;
    eprintln!("{wakes} worker wake-ups for {CONNECTIONS} connections");
    drop(open);
    let (status, _, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
    assert!(
        wakes <= 2 * CONNECTIONS as u64,
        "a herd: {wakes} wake-ups for {CONNECTIONS} connections"
    );
}
// ANCHOR_END: herd

/// The thread ids of the server's workers (threads named `worker-N`).
fn worker_threads(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("/proc task")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|tid: &u32| {
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                .is_ok_and(|name| name.starts_with("worker-"))
        })
        .collect()
}

/// How often thread `tid` has gone to sleep of its own accord.
fn switches(pid: u32, tid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).expect("status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a voluntary_ctxt_switches line")
}

/// Whether thread `tid` is asleep (state S), as in a wait.
fn sleeping(pid: u32, tid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('S'))
    })
}

// ANCHOR: half_request
/// A client that sends half a request and then nothing: its socket is
/// non-blocking from `accept4`, so the worker reads what there is, sees
/// `WouldBlock`, and serves the next client, instead of waiting in `read`
/// for the rest. With `--max-open 1` the half request holds the worker's
/// one place, and the next client waits in the accept queue until the
/// half request's head deadline closes it.
#[test]
fn a_client_that_sends_half_a_request_stalls_nobody() {
    for args in ["--workers 1", "--workers 1 --max-open 1 --head-timeout 0.5"] {
        let server = Server::start(args);
        let mut half = TcpStream::connect(server.addr).unwrap();
        // More than one read takes, with no end of head: the server reads
        // again, and that read must say `WouldBlock`, not wait.
        let mut bytes = b"GET /10/half HTTP/1.1\r\nHo".to_vec();
        bytes.resize(8 * 1024, b'o');
        half.write_all(&bytes).unwrap();
        let mut next = request(server.addr, "/10/next");
        next.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut bytes = Vec::new();
        let read = next.read_to_end(&mut bytes);
        assert!(
            read.is_ok(),
            "{args}: the next client was not answered: {read:?}"
        );
        assert!(String::from_utf8_lossy(&bytes).ends_with("\r\n\r\nnext"));
        drop(half);
        let (status, reports, stderr) = server.stop();
        assert!(status.success(), "{stderr}");
        if args.contains("--max-open") {
            assert_eq!(reports[0].timed_out, 1, "{args}: {reports:?}");
        }
    }
}
// ANCHOR_END: half_request

// ANCHOR: half_close
/// A client that shuts down its sending half after its request (as
/// `nc -N` does) has said all it will say, and still reads: it is
/// answered. Both orders: the end comes after the server has read the
/// request, or is already there when the server first reads (the worker's
/// one place taken, the second client waits in the accept queue).
#[test]
fn a_client_that_shuts_down_its_sending_half_is_still_answered() {
    let server = Server::start("--workers 1 --max-open 1");
    let after_read = request(server.addr, "/300/half");
    let port = after_read.local_addr().unwrap().port();
    wait_until(PATIENCE, "the server has read the request", || {
        receive_queue(server.addr.port(), port) == Some(0)
    });
    after_read.shutdown(Shutdown::Write).unwrap();
    let already_there = request(server.addr, "/10/already");
    already_there.shutdown(Shutdown::Write).unwrap();
    let answers = answers(vec![after_read, already_there]);
    let (status, reports, stderr) = server.stop();
    assert_eq!(
        answers
            .into_iter()
            .map(|answer| answer.map_err(|error| error.to_string()))
            .collect::<Vec<_>>(),
        [Ok((200, "half".into())), Ok((200, "already".into()))],
        "{reports:?}\n{stderr}"
    );
    assert!(status.success(), "{stderr}");
}
// ANCHOR_END: half_close

// ANCHOR: shared_pause
/// `--max-open 1` and one shared listener: the worker that holds the long
/// request is full, and must not take the wake-up for the next
/// connection, which under `EPOLLEXCLUSIVE` may be the only one, and which
/// edge-triggered it would never be given again. The other worker, idle,
/// answers the short request at once.
#[test]
fn a_full_worker_does_not_swallow_the_shared_listeners_wakeups() {
    let server = Server::start("--workers 2 --listener shared --max-open 1");
    let pid = server.pid();
    let mut workers = Vec::new();
    wait_until(PATIENCE, "two named workers", || {
        workers = worker_threads(pid);
        workers.len() == 2
    });
    // Both asleep before the long request too: then the kernel offers it
    // to the epoll first in the listener's queue, the one it offers the
    // next connection to as well. A worker still starting when the long
    // request came would let the two land on different workers, and the
    // break this test is for would go unseen.
    wait_until(PATIENCE, "every worker asleep", || {
        workers.iter().all(|&tid| sleeping(pid, tid))
    });
    let long = request(server.addr, "/3000/long");
    let port = long.local_addr().unwrap().port();
    wait_until(
        PATIENCE,
        "the long request read, every worker asleep",
        || {
            receive_queue(server.addr.port(), port) == Some(0)
                && workers.iter().all(|&tid| sleeping(pid, tid))
        },
    );
    let sent = Instant::now();
    let (status, body) = answer(request(server.addr, "/10/short")).unwrap();
    let elapsed = sent.elapsed();
    assert_eq!((status, body.as_str()), (200, "short"));
    drop(long);
    let (status, reports, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
    assert!(
        elapsed < Duration::from_millis(1000),
        "{elapsed:?}: {reports:?}"
    );
}
// ANCHOR_END: shared_pause

// ANCHOR: worker_fails
/// A worker that fails on its own stops the whole server at once: one
/// line says which worker and why, and the exit status says it failed;
/// the server does not wait for its stdin to close. To make a worker
/// fail, the test takes a copy of the server's listening socket
/// (`pidfd_getfd`, allowed on our own child) and shuts it down: it is no
/// longer listening, and `accept4` says `EINVAL`, a bug no worker can
/// get past.
#[test]
fn a_worker_that_fails_stops_the_server_with_one_line() {
    let server = Server::start("--workers 2");
    let listener = listening_fd(server.pid(), server.addr.port());
    // SAFETY: shutdown takes no pointers; the fd is our own copy.
    let shut = unsafe { libc::shutdown(listener.as_raw_fd(), libc::SHUT_RD) };
    assert_eq!(shut, 0, "{}", io::Error::last_os_error());
    let (status, stderr) = server.exit();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.len() == 1
            && lines[0].starts_with("server: worker ")
            && lines[0].contains(" stopped: "),
        "{stderr}"
    );
}
// ANCHOR_END: worker_fails

/// A copy, in this process, of the socket that process `pid` listens on
/// at `port`: its inode found in /proc/PID/net/tcp, its fd among
/// /proc/PID/fd's links, and the fd copied with `pidfd_getfd`.
fn listening_fd(pid: u32, port: u16) -> OwnedFd {
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).expect("net/tcp");
    let inode = table
        .lines()
        .skip(1)
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = u16::from_str_radix(fields[1].rsplit(':').next()?, 16).ok()?;
            (local == port && fields[3] == "0A").then(|| fields[9].to_string())
        })
        .expect("a listening socket on the port");
    let target = format!("socket:[{inode}]");
    let fd: i32 = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc fd")
        .filter_map(Result::ok)
        .find(|entry| {
            std::fs::read_link(entry.path()).is_ok_and(|link| link.as_os_str() == target.as_str())
        })
        .and_then(|entry| entry.file_name().to_str()?.parse().ok())
        .expect("the listener's fd");
    // SAFETY: pidfd_open takes no pointers.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    assert!(pidfd >= 0, "pidfd_open: {}", io::Error::last_os_error());
    // SAFETY: the kernel returned a new fd that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    // SAFETY: pidfd_getfd takes no pointers; pidfd is open while borrowed.
    let copy = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    assert!(copy >= 0, "pidfd_getfd: {}", io::Error::last_os_error());
    // SAFETY: as above: a new fd, ours alone.
    unsafe { OwnedFd::from_raw_fd(copy as i32) }
}

// ANCHOR: stdin_ends
/// The server stops when its stdin ends, even when the bytes before the
/// end and the end itself came together, as from `head -c 100 /dev/zero |`:
/// one edge for both, so stdin is read until nothing is left.
#[test]
fn the_server_stops_when_its_stdin_held_bytes_then_ended() {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into an array of two.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 returned two new fds that nothing else owns.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let mut write = std::fs::File::from(write);
    write.write_all(&[0; 100]).unwrap();
    drop(write);
    let server = Server::start_reading("--workers 1", None, Stdio::from(read));
    let (status, reports, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
    assert_eq!(reports.len(), 1, "{stderr}");
}
// ANCHOR_END: stdin_ends

// ANCHOR: max_open
/// With `--max-open 2`, a worker holds at most two connections; the rest
/// wait in the accept queue. Ten requests of 300 ms each then take at
/// least five rounds: no run can be faster, however fast the machine.
#[test]
fn max_open_keeps_the_rest_waiting_in_the_accept_queue() {
    const CLIENTS: usize = 10;
    let server = Server::start("--workers 1 --max-open 2");
    let start = Instant::now();
    let streams: Vec<TcpStream> = (0..CLIENTS)
        .map(|i| request(server.addr, &format!("/300/c{i}")))
        .collect();
    for (i, stream) in streams.into_iter().enumerate() {
        let (status, body) = answer(stream).expect("every client is answered");
        assert_eq!((status, body), (200, format!("c{i}")));
    }
    let elapsed = start.elapsed();
    let (status, reports, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
    assert_eq!(reports[0].answered, CLIENTS as u64);
    assert!(
        elapsed >= Duration::from_millis(300 * CLIENTS as u64 / 2),
        "ten answers in {elapsed:?}: more than two at a time"
    );
}
// ANCHOR_END: max_open
