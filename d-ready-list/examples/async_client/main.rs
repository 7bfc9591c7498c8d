//! The demo once more, as `async fn`s on a small executor and a reactor over
//! chapter 4's `Poll`: what sits under async/await, with no async crate.
//!
//! `cargo run -p d-ready-list --example async_client` (it takes no flags:
//! the demo's five requests, against the embedded delay server)

mod client;
mod executor;
mod reactor;

use std::error::Error;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Instant;

use d_ready_list::cli::Options;
use d_ready_list::delay_server::DelayServer;
use d_ready_list::http;

// ANCHOR: main
fn main() -> ExitCode {
    if std::env::args().len() > 1 {
        eprintln!("async_client: takes no arguments; it runs chapter 4's default demo");
        return ExitCode::from(2);
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("async_client: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let options = Options::default();
    let mut out = io::stdout().lock();
    let server = DelayServer::start()?;
    writeln!(out, "delay server: {} (embedded)", server.addr())?;
    let start = Instant::now();
    let report = client::run(
        server.addr(),
        &options.paths(),
        options.deadline(),
        |answer| {
            let body = http::preview(&answer.body, 60);
            let ms = answer.elapsed.as_millis();
            writeln!(out, "request {:<3} {ms:>6} ms  {body}", answer.request)
        },
    )?;
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
