//! An event-driven delay server on chapter 4's loop, speaking the same
//! protocol as the support delay server, so that every chapter's client
//! can use it: `cargo run -p d-ready-list --example server -- --port 8080`,
//! then `cargo run -p a-epoll -- --addr 127.0.0.1:8080`.
//!
//! Read it in this order: `server.rs` starts the workers and stops them;
//! `worker.rs` is one thread's loop, with the ready list and the cleanup
//! list; `accept.rs` the listeners and `accept4`; `timers.rs` the delays;
//! `connection.rs` one client's request and answer.

mod accept;
mod cli;
mod connection;
mod server;
mod timers;
mod worker;

use std::process::ExitCode;

// ANCHOR: main
fn main() -> ExitCode {
    let options = match cli::parse(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{}", cli::HELP);
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("server: {error} (see --help)");
            return ExitCode::from(2);
        }
    };
    // Every connection is a descriptor: take all the hard limit allows.
    // (Not fatal: past the limit, accepting pauses until one closes.)
    let _ = d_ready_list::raise_fd_limit();
    match server::run(&options, &mut std::io::stdout()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("server: {error}");
            ExitCode::FAILURE
        }
    }
}
// ANCHOR_END: main
