//! The demo's requests as `async fn`s: what a reader of async Rust would
//! write, with no event, token or epoll in sight.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use d_ready_list::http::{self, Parsed};

use crate::executor::{Executor, Report};
use crate::reactor::{AsyncTcp, Reactor};

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

/// One answer, as the demo prints it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub request: usize,
    pub elapsed: Duration,
    pub body: Vec<u8>,
}

// ANCHOR: run
/// Spawns one task per path and runs them all on this thread, handing each
/// answer to `report` the moment it is complete.
pub fn run(
    addr: SocketAddr,
    paths: &[String],
    deadline: Duration,
    mut report: impl FnMut(&Answer) -> io::Result<()>,
) -> io::Result<Report> {
    let start = Instant::now();
    let reactor = Reactor::new()?;
    let mut executor = Executor::new(Rc::clone(&reactor));
    for (request, path) in paths.iter().cloned().enumerate() {
        let reactor = Rc::clone(&reactor);
        executor.spawn(async move {
            let body = fetch(&reactor, addr, &path).await.map_err(|error| {
                let message = format!("request {request} (GET {path}): {error}");
                io::Error::new(error.kind(), message)
            })?;
            let elapsed = start.elapsed();
            Ok(Answer {
                request,
                elapsed,
                body,
            })
        });
    }
    executor.run(deadline, |answer: io::Result<Answer>| report(&answer?))
}
// ANCHOR_END: run
