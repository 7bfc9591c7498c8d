//! Why a run fails, in one line each.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::http;
use crate::poll::Token;

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
        token: Token,
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
    Io(io::Error),
    Response(http::Invalid),
    Status(u16, String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Resolve(addr, error) => write!(f, "cannot resolve {addr:?}: {error}"),
            Error::Setup(error) => write!(f, "cannot start the delay server: {error}"),
            Error::Poll(error) => write!(f, "epoll failed: {error}"),
            Error::Connect { addr, source } => write!(f, "cannot connect to {addr}: {source}"),
            Error::Request {
                token,
                path,
                problem,
            } => write!(f, "request {} (GET {path}): {problem}", token.0),
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
            Problem::Io(error) => write!(f, "{error}"),
            Problem::Response(invalid) => write!(f, "{invalid}"),
            Problem::Status(status, reason) => write!(f, "the server answered {status} {reason}"),
        }
    }
}

impl std::error::Error for Error {}
