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
mod timers;
mod unpark;
mod uring;
mod wakes;

use std::error::Error;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Instant;

use d_ready_list::delay_server::DelayServer;
use d_ready_list::http;
use reactor::Reactor;

/// How many wakes `--wakes` sends from another thread.
const WAKES: usize = 10_000;

// ANCHOR: main
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [] => demo(false),
        [flag] if flag == "--ring" => demo(true),
        [flag] if flag == "--wakes" => measure_wakes(),
        _ => {
            eprintln!(
                "usage: async_client [--ring | --wakes]  (no flag: chapter 4's default demo)"
            );
            return ExitCode::from(2);
        }
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
fn demo(ring: bool) -> Result<(), Box<dyn Error>> {
    // Said before anything else is printed: io_uring may be refused here.
    let ring = match ring {
        true => Some(Reactor::with_ring().map_err(|error| uring::unavailable(&error))?),
        false => None,
    };
    let requests = client::demo_requests();
    let mut out = io::stdout().lock();
    let server = DelayServer::start()?;
    writeln!(out, "delay server: {} (embedded)", server.addr())?;
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
        Some(reactor) => uring::client::run_on(reactor, server.addr(), &requests, &mut print)?,
        None => client::run(server.addr(), &requests, &mut print)?,
    };
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
