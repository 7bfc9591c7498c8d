//! The demo's requests over the ring: the same `async fn` as
//! `client::fetch`, with buffers given to each operation and taken back.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

use d_ready_list::http::{self, Parsed};

use super::ops::UringTcp;
use crate::client::{self, Answer, Request};
use crate::executor::Report;
use crate::reactor::Reactor;

/// How much room each receive is given: an answer of the demo's fits.
/// The buffer lives on the heap, being lent to the kernel; at 4 KiB, a
/// thousand of them freed in the reverse of the order they were allocated
/// made glibc hand memory back to the kernel (`brk`) after nearly every
/// answer. 512 bytes stay in its per-thread cache.
const READ_SIZE: usize = 512;

// ANCHOR: fetch
/// One request on its own connection, over the ring: the buffer goes to
/// each receive and comes back with the bytes appended.
pub async fn fetch(reactor: &Rc<Reactor>, addr: SocketAddr, path: &str) -> io::Result<Vec<u8>> {
    let stream = UringTcp::connect(reactor, addr).await?;
    let request = http::request(path, &addr.to_string());
    stream.send_all(request.into_bytes()).await?;
    let mut received = Vec::with_capacity(READ_SIZE);
    loop {
        received.reserve(READ_SIZE);
        let (n, buffer) = stream.recv(received).await;
        received = buffer;
        let n = n?;
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

/// `client::run_on` with `fetch` over the ring.
pub fn run_on(
    reactor: &Rc<Reactor>,
    addr: SocketAddr,
    requests: &[Request],
    report: impl FnMut(&Answer) -> io::Result<()>,
) -> io::Result<Report> {
    client::run_with(reactor, fetch, addr, requests, report)
}
