//! Why a run fails, in one line each.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::endless::ENDLESS_PATH;
use crate::http;

/// Why a run failed. Its `Display` is the one line the program prints.
#[derive(Debug)]
pub enum Error {
    /// `--addr` names no address we can connect to.
    Resolve(String, io::Error),
    /// The embedded delay server could not start.
    Setup(io::Error),
    /// epoll itself failed: out of memory or fds, or a bug of ours.
    Poll(io::Error),
    Connect {
        addr: SocketAddr,
        source: io::Error,
    },
    Request {
        request: usize,
        path: String,
        problem: Problem,
    },
    Deadline {
        deadline: Duration,
        missing: Vec<String>,
    },
    /// Standard output went away (for example `| head -1`).
    Output(io::Error),
}

/// What went wrong with one request.
#[derive(Debug)]
pub enum Problem {
    /// The non-blocking connect failed; `SO_ERROR` said why.
    Connect(io::Error),
    Io(io::Error),
    Response(http::Invalid),
    Status(u16, String),
    /// Both connections of a hedged request failed, in this order.
    Hedged {
        first: Box<Problem>,
        second: Box<Problem>,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Resolve(addr, error) => write!(f, "cannot resolve {addr:?}: {error}"),
            Error::Setup(error) => write!(f, "cannot start the delay server: {error}"),
            Error::Poll(error) => write!(f, "epoll failed: {error}"),
            Error::Connect { addr, source } => write!(f, "cannot connect to {addr}: {source}"),
            Error::Request {
                request,
                path,
                problem,
            } => {
                write!(f, "request {request} (GET {path}): {problem}")?;
                if path == ENDLESS_PATH && matches!(problem, Problem::Status(..)) {
                    write!(
                        f,
                        " (--endless needs a server with /endless, such as the embedded one)"
                    )?;
                }
                Ok(())
            }
            Error::Deadline { deadline, missing } => {
                write!(f, "gave up after the {} s deadline", deadline.as_secs_f64())?;
                match missing.as_slice() {
                    [] => Ok(()),
                    [first, rest @ ..] => write!(
                        f,
                        ": {} response(s) missing, the first for GET {first}",
                        rest.len() + 1
                    ),
                }
            }
            Error::Output(error) => write!(f, "cannot write output: {error}"),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Connect(error) => write!(f, "cannot connect: {error}"),
            Problem::Io(error) => write!(f, "{error}"),
            Problem::Response(invalid) => write!(f, "{invalid}"),
            Problem::Status(status, reason) => write!(f, "the server answered {status} {reason}"),
            Problem::Hedged { first, second } => {
                write!(f, "both connections failed: {first}; then {second}")
            }
        }
    }
}

impl std::error::Error for Error {}
