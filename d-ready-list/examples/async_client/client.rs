//! The demo's requests as `async fn`s: what a reader of async Rust would
//! write, with no event, token or epoll in sight.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use d_ready_list::cli::Options;
use d_ready_list::http::{self, Parsed};

use crate::executor::{Executor, Report};
use crate::reactor::Reactor;
use crate::tcp::AsyncTcp;
use crate::time::{self, TimedOut};

// ANCHOR: fetch
/// One request on its own connection, from connect to a whole response.
/// Each `.await` is a place where this function may be left and resumed.
pub async fn fetch(reactor: &Rc<Reactor>, addr: SocketAddr, path: &str) -> io::Result<Vec<u8>> {
    let stream = AsyncTcp::connect(reactor, addr)?;
    stream.connected().await?;
    let request = http::request(path, &addr.to_string());
    stream.write_all(request.as_bytes()).await?;
    let mut received = Vec::new();
    let mut buffer = [0; 4096];
    loop {
        let n = stream.read(&mut buffer).await?;
        received.extend_from_slice(&buffer[..n]);
        match http::parse(&received, n == 0) {
            Parsed::Complete(response) if response.status == 200 => return Ok(response.body),
            Parsed::Complete(response) => {
                let status = format!(
                    "the server answered {} {}",
                    response.status, response.reason
                );
                return Err(io::Error::other(status));
            }
            Parsed::Invalid(invalid) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    invalid.to_string(),
                ));
            }
            Parsed::Incomplete if n == 0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            Parsed::Incomplete => {}
        }
    }
}
// ANCHOR_END: fetch

/// One request of a run: where, and how long it may take.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub timeout: Duration,
}

/// The request the demo gives less time than its delay (800 ms), and how
/// much.
const HURRIED: (usize, Duration) = (1, Duration::from_millis(500));

/// Chapter 4's default demo, with one request in a hurry: the others may
/// take until the chapter's `--deadline`.
pub fn demo_requests() -> Vec<Request> {
    let options = Options::default();
    let paths = options.paths().into_iter().enumerate();
    paths
        .map(|(i, path)| Request {
            path,
            timeout: if i == HURRIED.0 {
                HURRIED.1
            } else {
                options.deadline()
            },
        })
        .collect()
}

/// One answer, as the demo prints it: a body, or the timeout it ran out of.
#[derive(Debug, Clone)]
pub struct Answer {
    pub request: usize,
    pub elapsed: Duration,
    pub body: Result<Vec<u8>, TimedOut>,
}

// ANCHOR: run
/// Spawns one task per request and runs them all on this thread, handing
/// each answer to `report` the moment it is complete. A request that runs
/// out of time is an answer too; any other failure ends the run.
pub fn run(
    addr: SocketAddr,
    requests: &[Request],
    report: impl FnMut(&Answer) -> io::Result<()>,
) -> io::Result<Report> {
    run_on(&Reactor::new()?, addr, requests, report)
}

/// `run`, on a reactor of the caller's (the book's picture records one).
pub fn run_on(
    reactor: &Rc<Reactor>,
    addr: SocketAddr,
    requests: &[Request],
    report: impl FnMut(&Answer) -> io::Result<()>,
) -> io::Result<Report> {
    run_with(reactor, fetch, addr, requests, report)
}

/// `run_on` with a `fetch` of the caller's: this file's, over readiness,
/// or the ring's (`uring::client`), so that both run the same requests
/// the same way.
pub fn run_with<F>(
    reactor: &Rc<Reactor>,
    fetch: F,
    addr: SocketAddr,
    requests: &[Request],
    mut report: impl FnMut(&Answer) -> io::Result<()>,
) -> io::Result<Report>
where
    F: AsyncFn(&Rc<Reactor>, SocketAddr, &str) -> io::Result<Vec<u8>> + Copy + 'static,
{
    let start = Instant::now();
    let mut executor = Executor::new(Rc::clone(reactor));
    for (request, Request { path, timeout }) in requests.iter().cloned().enumerate() {
        let reactor = Rc::clone(reactor);
        executor.spawn(async move {
            let fetched = fetch(&reactor, addr, &path);
            let body = match time::timeout(&reactor, timeout, fetched).await {
                Ok(fetched) => Ok(fetched.map_err(|error| {
                    let message = format!("request {request} (GET {path}): {error}");
                    io::Error::new(error.kind(), message)
                })?),
                Err(timed_out) => Err(timed_out),
            };
            Ok(Answer {
                request,
                elapsed: start.elapsed(),
                body,
            })
        });
    }
    executor.run(|answer: io::Result<Answer>| report(&answer?))
}
// ANCHOR_END: run
