//! Chapter 4: a ready list that gives every ready connection a bounded turn,
//! so that one endless sender cannot starve the others, and a cleanup list
//! that lets a connection be closed while a batch of events still names it.
//! Each worker thread has an epoll of its own, so registrations go back to
//! chapter 2's: once per connection, edge-triggered, no one-shot.
//!
//! Read it top to bottom: [`ffi`] declares the kernel's interface by hand,
//! `poll` wraps it in a small mio-shaped API ([`Poll`], [`Registry`],
//! [`Token`], [`Interest`], [`Events`], [`Event`], [`Waker`]), [`slab`]
//! turns tokens into connections, [`worker`] is the chapter's lesson (one
//! thread's event loop, with the ready list and the cleanup list),
//! `connection` is one connection's I/O within a turn's budget, `opening`
//! holds the requests that wait for a connection, [`endless`] is the body
//! that never ends, and [`client`] runs the workers and reports. Imports go
//! one way: client, then worker, then connection, then http.
//! [`listener`] is the other side of a socket, a listening one, as in
//! chapters 2 and 3; the server example accepts from it. [`delay_server`]
//! and [`http`] are support code, the same file, byte for
//! byte, in every chapter. [`cli`], the command line, is support code too,
//! but not the same everywhere: this chapter's is chapter 3's plus
//! `--hedge`, `--endless` and `--max-open`.

#[cfg(not(target_os = "linux"))]
compile_error!(
    "epoll is Linux-only: run this tutorial on Linux, for example in a Linux VM or a container (docker run -it rust)"
);

pub mod cli;
pub mod client;
mod connection;
pub mod delay_server;
pub mod endless;
pub mod error;
pub mod ffi;
pub mod http;
pub mod listener;
mod opening;
mod poll;
pub mod slab;
mod stats;
pub mod worker;

pub use poll::{Event, Events, Interest, Poll, Registry, Token, Waker};

use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};

use client::{Config, Error, Summary};
use delay_server::DelayServer;

// ANCHOR: run_program
/// What `main` does: find or start a delay server, then run the client.
pub fn run_program(
    options: &cli::Options,
    out: &mut (impl Write + Send),
) -> Result<Summary, Error> {
    // Not fatal: with the limit as it was, a connect past it fails with
    // "Too many open files", which says what to do.
    let _ = raise_fd_limit();
    let embedded;
    let addr = match &options.addr {
        Some(addr) => resolve(addr)?,
        None => {
            embedded = DelayServer::start().map_err(Error::Setup)?;
            writeln!(out, "delay server: {} (embedded)", embedded.addr()).map_err(Error::Output)?;
            embedded.addr()
        }
    };
    let config = Config {
        addr,
        paths: options.paths(),
        deadline: options.deadline(),
        workers: options.workers,
        hedge: options.hedge,
        endless: options.endless,
        max_open: options.max_open,
        budget: client::Budget::default(),
    };
    client::run(&config, out)
}
// ANCHOR_END: run_program

// ANCHOR: fd_limit
/// Every connection is a file descriptor, and so is each of the embedded
/// server's. Many desktops start programs with a soft limit of 1024 open
/// files under a much higher hard limit; servers raise the soft limit to
/// the hard one when they start, and so does this program (and so do the
/// tests that open hundreds of connections).
pub fn raise_fd_limit() -> io::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through the pointer, which points
    // at one that lives for the whole call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == -1 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit only reads the rlimit the pointer points at.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
// ANCHOR_END: fd_limit

/// The first IPv4 address `addr` names, else its first address: the book's
/// delay server listens on IPv4 only, and `localhost` often resolves to
/// `::1` first.
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
