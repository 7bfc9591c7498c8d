//! Starts the workers, waits for the signal to stop (stdin closing, or the
//! deadline), stops them and reports what each did.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::thread;
use std::time::{Duration, Instant};

use d_ready_list::{Events, Interest, Poll, Token};

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
    let mut wakers = Vec::new();
    let mut threads = Vec::new();
    for (id, listener) in listeners.into_iter().enumerate() {
        let (worker, waker) =
            Worker::new(id, listener, shared, options.max_open).map_err(Error::Setup)?;
        let thread = thread::Builder::new()
            .name(format!("worker-{id}"))
            .spawn(move || worker.run())
            .map_err(Error::Setup)?;
        wakers.push(waker);
        threads.push(thread);
    }
    let stop = StopSignal::new(options.deadline).map_err(Error::Setup)?;
    let mode = if shared {
        "shared, EPOLLEXCLUSIVE"
    } else {
        "SO_REUSEPORT"
    };
    writeln!(
        out,
        "server: listening on {local} ({} workers, {mode})",
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
    for (id, thread) in threads.into_iter().enumerate() {
        let stats = thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("panicked")))
            .map_err(|error| Error::Worker(id, error))?;
        all.push(stats);
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
            "worker {id}: accepted {}, answered {}, bad requests {}, failed {}, accept4 calls {}, wake-ups {}, out of descriptors {}",
            stats.accepted,
            stats.answered,
            stats.bad_requests,
            stats.failed,
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
/// that started the server closed its end of the pipe) or the deadline,
/// watched on an epoll of its own. A stdin that epoll cannot watch (a
/// regular file or /dev/null, which are always ready) leaves the deadline
/// alone, or the server runs until it is killed. Made before the server
/// says it listens, so that from then on it opens no descriptor of its own.
struct StopSignal {
    poll: Poll,
    watching: bool,
    end: Option<Instant>,
}

impl StopSignal {
    const STDIN: Token = Token(0);

    fn new(deadline: Option<Duration>) -> io::Result<StopSignal> {
        let poll = Poll::new()?;
        let watching = poll
            .registry()
            .register(&io::stdin(), StopSignal::STDIN, Interest::READABLE)
            .is_ok();
        Ok(StopSignal {
            poll,
            watching,
            end: deadline.map(|deadline| Instant::now() + deadline),
        })
    }

    /// Blocks until stdin ends or the deadline passes.
    fn wait(self) -> io::Result<()> {
        let stdin = io::stdin();
        let mut events = Events::with_capacity(1);
        loop {
            let left = self
                .end
                .map(|end| end.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Ok(());
            }
            self.poll.poll(&mut events, left)?;
            if self.watching && !events.is_empty() {
                let mut buffer = [0; 4096];
                match stdin.lock().read(&mut buffer) {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Ok(()),
                }
            }
        }
    }
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
