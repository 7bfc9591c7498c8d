//! Starts the workers, waits for the signal to stop (stdin closing, the
//! deadline, or a worker that failed), stops them and reports what each
//! did.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use d_ready_list::{Events, Interest, Poll, Token, Waker};

use crate::accept;
use crate::cli::{ListenerMode, Options};
use crate::worker::{Stats, Worker};

/// Why the server could not run.
#[derive(Debug)]
pub enum Error {
    Resolve(String, io::Error),
    Listen(SocketAddr, io::Error),
    Setup(io::Error),
    Worker(usize, io::Error),
    Output(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Resolve(addr, error) => write!(f, "cannot resolve {addr}: {error}"),
            Error::Listen(addr, error) => write!(f, "cannot listen on {addr}: {error}"),
            Error::Setup(error) => write!(f, "cannot start the workers: {error}"),
            Error::Worker(id, error) => write!(f, "worker {id} stopped: {error}"),
            Error::Output(error) => write!(f, "cannot write the report: {error}"),
        }
    }
}

impl std::error::Error for Error {}

// ANCHOR: run
/// Runs the server until stdin closes or the deadline passes, and returns
/// each worker's statistics, which it has also printed to `out`.
pub fn run(options: &Options, out: &mut impl Write) -> Result<Vec<Stats>, Error> {
    let addr = resolve(&options.addr)?;
    let shared = options.listener == ListenerMode::Shared;
    let listeners = accept::listeners(addr, options.workers, options.listener)
        .map_err(|error| Error::Listen(addr, error))?;
    let local = listeners[0].local_addr().map_err(Error::Setup)?;
    let stop = StopSignal::new(options.deadline).map_err(Error::Setup)?;
    let mut wakers = Vec::new();
    let mut threads = Vec::new();
    for (id, listener) in listeners.into_iter().enumerate() {
        let (worker, waker) =
            Worker::new(id, listener, shared, options.max_open, options.head_timeout)
                .map_err(Error::Setup)?;
        // However the worker ends (an error, a panic), the server hears
        // of it now, not at the next stop.
        let ended = WorkerEnded(Arc::clone(&stop.worker_ended));
        let thread = thread::Builder::new()
            .name(format!("worker-{id}"))
            .spawn(move || {
                let _ended = ended;
                worker.run()
            })
            .map_err(Error::Setup)?;
        wakers.push(waker);
        threads.push(thread);
    }
    let mode = if shared {
        "shared, EPOLLEXCLUSIVE"
    } else {
        "SO_REUSEPORT"
    };
    let noun = if options.workers == 1 {
        "worker"
    } else {
        "workers"
    };
    writeln!(
        out,
        "server: listening on {local} ({} {noun}, {mode})",
        options.workers
    )
    .and_then(|()| out.flush())
    .map_err(Error::Output)?;

    let waited = stop.wait();
    for waker in &wakers {
        // A worker that already stopped on an error is reported below.
        let _ = waker.wake();
    }
    let mut all = Vec::new();
    let mut failed = None;
    for (id, thread) in threads.into_iter().enumerate() {
        match thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("panicked")))
        {
            Ok(stats) => all.push(stats),
            Err(error) => {
                failed.get_or_insert(Error::Worker(id, error));
            }
        }
    }
    if let Some(error) = failed {
        return Err(error);
    }
    waited.map_err(Error::Setup)?;
    report(&all, out).map_err(Error::Output)?;
    Ok(all)
}
// ANCHOR_END: run

/// Prints what each worker did, and the accepts per worker on one line.
fn report(all: &[Stats], out: &mut impl Write) -> io::Result<()> {
    for (id, stats) in all.iter().enumerate() {
        writeln!(
            out,
            "worker {id}: accepted {}, answered {}, bad requests {}, failed {}, timed out {}, accept4 calls {}, wake-ups {}, out of descriptors {}",
            stats.accepted,
            stats.answered,
            stats.bad_requests,
            stats.failed,
            stats.timed_out,
            stats.accept_calls,
            stats.wakeups,
            stats.out_of_fds,
        )?;
    }
    let accepted: Vec<String> = all.iter().map(|stats| stats.accepted.to_string()).collect();
    writeln!(out, "accepted per worker: {}", accepted.join(" "))?;
    out.flush()
}

// ANCHOR: wait_for_stop
/// What stops the server: stdin reaching its end (Ctrl-D, or the program
/// that started the server closed its end of the pipe), the deadline, or
/// a worker that ended on its own, watched on an epoll of its own. A stdin
/// that epoll cannot watch (a regular file or /dev/null, which are always
/// ready) leaves the deadline alone, or the server runs until it is
/// killed. Made before the server says it listens, so that from then on
/// it opens no descriptor of its own.
struct StopSignal {
    poll: Poll,
    watching: bool,
    end: Option<Instant>,
    /// Woken by a worker's thread as it ends.
    worker_ended: Arc<Waker>,
}

/// Wakes the stop signal when dropped: when its worker's thread ends.
struct WorkerEnded(Arc<Waker>);

impl Drop for WorkerEnded {
    fn drop(&mut self) {
        let _ = self.0.wake();
    }
}

impl StopSignal {
    const STDIN: Token = Token(0);
    const WORKER_ENDED: Token = Token(1);

    fn new(deadline: Option<Duration>) -> io::Result<StopSignal> {
        let poll = Poll::new()?;
        let watching = poll
            .registry()
            .register(&io::stdin(), StopSignal::STDIN, Interest::READABLE)
            .is_ok();
        let worker_ended = Arc::new(Waker::new(poll.registry(), StopSignal::WORKER_ENDED)?);
        Ok(StopSignal {
            poll,
            watching,
            end: deadline.map(|deadline| Instant::now() + deadline),
            worker_ended,
        })
    }

    /// Blocks until stdin ends, the deadline passes, or a worker ends.
    fn wait(self) -> io::Result<()> {
        let mut events = Events::with_capacity(2);
        loop {
            let left = self
                .end
                .map(|end| end.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Ok(());
            }
            self.poll.poll(&mut events, left)?;
            for event in events.iter() {
                if event.token() == StopSignal::WORKER_ENDED || (self.watching && stdin_ended()) {
                    return Ok(());
                }
            }
        }
    }
}

/// Reads what stdin holds, and says whether it has reached its end.
/// Stdin is blocking (it is shared with whoever started the server, so
/// it stays as they made it), and registered edge-triggered: an edge
/// comes when bytes or the end arrive, and if both are there by the time
/// of the read, no other edge will follow. So it is read for as long as
/// `poll(2)`, level-triggered, says a read would not block.
fn stdin_ended() -> bool {
    // More than std's buffer for stdin holds, so that every read goes to
    // the fd, and `poll(2)` and the reads agree on what is left.
    let mut buffer = vec![0; 64 * 1024];
    loop {
        match io::stdin().lock().read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
        if !stdin_readable() {
            return false;
        }
    }
}

/// Whether a read of stdin would return at once, without waiting.
fn stdin_readable() -> bool {
    let mut fd = libc::pollfd {
        fd: io::stdin().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd, and we pass one; the kernel writes only its
    // `revents`. A zero timeout: poll(2) answers without waiting.
    unsafe { libc::poll(&mut fd, 1, 0) > 0 }
}
// ANCHOR_END: wait_for_stop

/// The first IPv4 address `addr` names, else its first address.
fn resolve(addr: &str) -> Result<SocketAddr, Error> {
    let unresolved = |source| Error::Resolve(addr.to_string(), source);
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs().map_err(unresolved)?.collect();
    addrs
        .iter()
        .find(|addr| addr.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| unresolved(io::Error::new(io::ErrorKind::NotFound, "no address found")))
}
