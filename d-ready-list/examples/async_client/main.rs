//! The demo once more, as `async fn`s on a small executor and a reactor over
//! chapter 4's `Poll`: what sits under async/await, with no async crate.
//!
//! `cargo run -p d-ready-list --example async_client [-- --addr HOST:PORT]`

mod client;
mod executor;
mod reactor;

use std::error::Error;
use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Instant;

use d_ready_list::cli::{self, Options};
use d_ready_list::delay_server::DelayServer;
use d_ready_list::http;

// ANCHOR: main
fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("async_client: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let Some(options) = parse()? else {
        print!("{HELP}");
        return Ok(());
    };
    let mut out = io::stdout().lock();
    let server;
    let addr = match &options.addr {
        Some(addr) => resolve(addr)?,
        None => {
            server = DelayServer::start()?;
            writeln!(out, "delay server: {} (embedded)", server.addr())?;
            server.addr()
        }
    };
    let start = Instant::now();
    let report = client::run(addr, &options.paths(), options.deadline(), |answer| {
        let body = http::preview(&answer.body, 60);
        let ms = answer.elapsed.as_millis();
        writeln!(out, "request {:<3} {ms:>6} ms  {body}", answer.request)
    })?;
    let polls: usize = report.tasks.iter().map(|task| task.polls).sum();
    writeln!(
        out,
        "{} responses in {} ms on 1 thread: {} epoll waits, {} events, {polls} polls",
        report.tasks.len(),
        start.elapsed().as_millis(),
        report.waits,
        report.events,
    )?;
    Ok(())
}
// ANCHOR_END: main

const HELP: &str = "\
Chapter 4's demo as async fns on one thread: a small executor and a reactor
over chapter 4's Poll. Each response is printed the moment it is complete.

Usage: cargo run -p d-ready-list --example async_client -- [OPTIONS]

Options:
  --addr HOST:PORT   use this delay server instead of starting one here
  -n, --requests N   how many requests to send [default: 5]
  --scale F          request i of N waits (N - i) * 1000 ms * F [default: 0.2]
  --deadline SECS    give up after this long [default: longest delay + 5]
  -h, --help         print this help
";

/// Chapter 4's flags, less the ones about threads and connections, which
/// mean nothing here.
fn parse() -> Result<Option<Options>, Box<dyn Error>> {
    let options =
        cli::parse(std::env::args().skip(1)).map_err(|error| format!("{error} (see --help)"))?;
    if let Some(options) = &options {
        let default = Options::default();
        if options.hedge || options.endless || options.workers != default.workers {
            return Err("--hedge, --endless and --workers are chapter 4's; this example runs the plain demo on one thread".into());
        }
    }
    Ok(options)
}

/// The first IPv4 address `addr` names, else its first: the book's delay
/// server listens on IPv4 only.
fn resolve(addr: &str) -> io::Result<SocketAddr> {
    let unresolved =
        |error: io::Error| io::Error::other(format!("cannot resolve {addr:?}: {error}"));
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs().map_err(unresolved)?.collect();
    let found = addrs.iter().find(|addr| addr.is_ipv4()).or(addrs.first());
    found
        .copied()
        .ok_or_else(|| unresolved(io::Error::other("no address found")))
}
