//! The demo once more, as `async fn`s on a small executor and a reactor over
//! chapter 4's `Poll`: what sits under async/await, with no async crate.
//!
//! `cargo run -p d-ready-list --example async_client`: the demo's five
//! requests against the embedded delay server, one of them with a timeout
//! shorter than its delay.
//! `cargo run -p d-ready-list --example async_client -- --ring`: the same
//! demo over io_uring.
//! `cargo run -p d-ready-list --example async_client -- --wakes`: what
//! wakes from another thread cost in eventfd writes.

mod client;
mod executor;
mod reactor;
mod tcp;
mod time;
mod timers;
mod trace;
mod unpark;
mod uring;
mod wakes;

use std::error::Error;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Instant;

use std::net::ToSocketAddrs;

use d_ready_list::cli::Options;
use d_ready_list::delay_server::DelayServer;
use d_ready_list::http;
use reactor::Reactor;

/// How many wakes `--wakes` sends from another thread.
const WAKES: usize = 10_000;

const USAGE: &str = "usage: async_client [--ring] [--addr HOST:PORT] [-n N] [--scale F] \
                     | --wakes  (no flag: chapter 4's default demo)";

// ANCHOR: main
fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let ring = args.first().is_some_and(|flag| flag == "--ring");
    if ring {
        args.remove(0);
    }
    let result = match args.as_slice() {
        [] => demo(ring, None),
        [flag] if flag == "--wakes" && !ring => measure_wakes(),
        // Chapter 4's own flags (`--addr`, `-n`, `--scale`...), so that
        // the measurements run this example as they run the chapters.
        _ => match d_ready_list::cli::parse(args) {
            Ok(Some(options)) => demo(ring, Some(options)),
            Ok(None) => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            Err(error) => {
                eprintln!("async_client: {error}\n{USAGE}");
                return ExitCode::from(2);
            }
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("async_client: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The demo, over readiness or (`ring`) over io_uring: the same lines.
/// With `options`, chapter 4's requests as its flags say, each with the
/// chapter's deadline; without, the default demo with one in a hurry.
fn demo(ring: bool, options: Option<Options>) -> Result<(), Box<dyn Error>> {
    // Said before anything else is printed: io_uring may be refused here.
    let ring = match ring {
        true => Some(Reactor::with_ring().map_err(|error| uring::unavailable(&error))?),
        false => None,
    };
    let (requests, addr) = match &options {
        None => (client::demo_requests(), None),
        Some(options) => {
            let timeout = options.deadline();
            let paths = options.paths().into_iter();
            let requests = paths.map(|path| client::Request { path, timeout });
            (requests.collect(), options.addr.clone())
        }
    };
    d_ready_list::raise_fd_limit()?;
    let mut out = io::stdout().lock();
    let (server, addr) = match addr {
        Some(addr) => {
            let addr = addr.to_socket_addrs()?.next().ok_or("--addr: no address")?;
            writeln!(out, "delay server: {addr}")?;
            (None, addr)
        }
        None => {
            let server = DelayServer::start()?;
            writeln!(out, "delay server: {} (embedded)", server.addr())?;
            let addr = server.addr();
            (Some(server), addr)
        }
    };
    let start = Instant::now();
    let (mut answered, mut timed_out) = (0, 0);
    let mut print = |answer: &client::Answer| {
        let ms = answer.elapsed.as_millis();
        let shown = match &answer.body {
            Ok(body) => {
                answered += 1;
                http::preview(body, 60)
            }
            Err(timed_out_after) => {
                timed_out += 1;
                timed_out_after.to_string()
            }
        };
        writeln!(out, "request {:<3} {ms:>6} ms  {shown}", answer.request)
    };
    let report = match &ring {
        Some(reactor) => uring::client::run_on(reactor, addr, &requests, &mut print)?,
        None => client::run(addr, &requests, &mut print)?,
    };
    drop(server);
    let polls: usize = report.tasks.iter().map(|task| task.polls).sum();
    let enters = ring.as_ref().and_then(|reactor| reactor.ring());
    let enters = enters.map_or(String::new(), |ring| {
        format!(", {} io_uring_enters", ring.stats().enters)
    });
    writeln!(
        out,
        "{answered} answered and {timed_out} timed out in {} ms on 1 thread: \
         {} epoll waits, {} events, {polls} polls{enters}",
        start.elapsed().as_millis(),
        report.reactor.waits,
        report.reactor.events,
    )?;
    Ok(())
}
// ANCHOR_END: main

// ANCHOR: measure_wakes
fn measure_wakes() -> Result<(), Box<dyn Error>> {
    let report = wakes::measure(WAKES)?;
    let polls: usize = report.tasks.iter().map(|task| task.polls).sum();
    println!(
        "{WAKES} wakes from another thread: {} eventfd writes, {} epoll waits \
         ({} waits asleep), {polls} polls",
        report.eventfd_writes, report.reactor.waits, report.reactor.sleeps,
    );
    Ok(())
}
// ANCHOR_END: measure_wakes
