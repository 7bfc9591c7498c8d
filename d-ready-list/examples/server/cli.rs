//! The server's command line, parsed by hand like the client's.

use std::time::Duration;

// The chapter's own: the same errors, said the same way, as the clients'.
pub use d_ready_list::cli::UsageError;

/// How the workers share the listening port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerMode {
    /// One listening socket, in every worker's epoll with `EPOLLEXCLUSIVE`.
    Shared,
    /// One listening socket per worker, all bound to the same port with
    /// `SO_REUSEPORT`: the kernel picks a socket for each connection.
    ReusePort,
}

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Where to listen. Port 0 lets the kernel pick one; the server prints it.
    pub addr: String,
    pub workers: usize,
    pub listener: ListenerMode,
    /// Connections each worker keeps open at once; 0: no limit.
    pub max_open: usize,
    /// Stop after this long, whatever happens; `None`: only when stdin
    /// closes (or the process is killed).
    pub deadline: Option<Duration>,
    /// How long a client may take to send its request head.
    pub head_timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            addr: "127.0.0.1:8080".into(),
            workers: 2,
            listener: ListenerMode::Shared,
            max_open: 0,
            deadline: None,
            head_timeout: Duration::from_secs(10),
        }
    }
}

/// The most worker threads one server may start.
pub const MAX_WORKERS: usize = 64;

pub const HELP: &str = "\
An event-driven delay server on chapter 4's loop: each worker thread has
its own epoll, accepts connections, and answers GET /{delay_ms}/{message}
after the delay, with no thread and no sleep per connection. Any chapter's
client can use it: cargo run -p a-epoll -- --addr 127.0.0.1:8080

Usage: cargo run -p d-ready-list --example server -- [OPTIONS]

Options:
  --addr HOST:PORT   where to listen [default: 127.0.0.1:8080]
  --port PORT        the same as --addr 127.0.0.1:PORT (0: any free port)
  --workers N        threads, each with its own epoll [default: 2]
  --listener MODE    shared: one listener in every worker's epoll, with
                     EPOLLEXCLUSIVE; reuseport: one SO_REUSEPORT listener
                     per worker [default: shared]
  --max-open N       connections each worker keeps open at once; the others
                     wait in the kernel's accept queue [default: 0, no limit]
  --head-timeout SECS
                     close a connection whose request head is not whole
                     after this long [default: 10]
  --deadline SECS    stop after this long [default: run until stdin closes]
  -h, --help         print this help

It stops when stdin closes (Ctrl-D) or at the deadline, and then prints how
many connections each worker accepted; or at once, with one line on stderr
and a failing exit status, if a worker fails.
";

/// `Ok(None)` means `--help`.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, UsageError> {
    let mut options = Options::default();
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let mut value = |what: &'static str| {
            args.next()
                .ok_or(UsageError::MissingValue(flag.clone(), what))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--addr" => options.addr = value("HOST:PORT")?,
            "--port" => {
                let text = value("PORT")?;
                let port: u16 = text.parse().map_err(|_| {
                    UsageError::Invalid("--port", text, "a port number from 0 to 65535")
                })?;
                options.addr = format!("127.0.0.1:{port}");
            }
            "--workers" => {
                let text = value("N")?;
                options.workers = text
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_WORKERS).contains(n))
                    .ok_or(UsageError::Invalid(
                        "--workers",
                        text,
                        "a whole number from 1 to 64",
                    ))?;
            }
            "--listener" => {
                let text = value("MODE")?;
                options.listener = match text.as_str() {
                    "shared" => ListenerMode::Shared,
                    "reuseport" => ListenerMode::ReusePort,
                    _ => {
                        return Err(UsageError::Invalid(
                            "--listener",
                            text,
                            "shared or reuseport",
                        ));
                    }
                };
            }
            "--max-open" => {
                let text = value("N")?;
                options.max_open = text.parse().map_err(|_| {
                    UsageError::Invalid("--max-open", text, "a whole number (0: no limit)")
                })?;
            }
            "--deadline" => options.deadline = Some(seconds("--deadline", value("SECS")?)?),
            "--head-timeout" => options.head_timeout = seconds("--head-timeout", value("SECS")?)?,
            _ => return Err(UsageError::Unknown(flag)),
        }
    }
    Ok(Some(options))
}

/// A number of seconds, above 0 and at most a day.
fn seconds(flag: &'static str, text: String) -> Result<Duration, UsageError> {
    text.parse()
        .ok()
        .filter(|s: &f64| *s > 0.0 && *s <= 86_400.0)
        .map(Duration::from_secs_f64)
        .ok_or(UsageError::Invalid(
            flag,
            text,
            "seconds, above 0 and at most 86400",
        ))
}
