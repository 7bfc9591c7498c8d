//! The command line, parsed by hand to keep the dependencies to two.

use std::fmt;
use std::time::Duration;

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// `HOST:PORT` of a delay server; `None` starts the embedded one.
    pub addr: Option<String>,
    pub requests: usize,
    pub scale: f64,
    /// `None`: the longest delay plus `DEADLINE_SLACK`.
    pub deadline: Option<Duration>,
    /// How many worker threads, each with its own epoll.
    pub workers: usize,
    /// Send each request twice, on two connections; the first answer wins.
    pub hedge: bool,
    /// Read an endless body alongside the requests.
    pub endless: bool,
    /// Connections each worker keeps open at once; 0: no limit.
    pub max_open: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            addr: None,
            requests: 5,
            scale: 0.2,
            deadline: None,
            workers: 2,
            hedge: false,
            endless: false,
            max_open: 0,
        }
    }
}

/// Time allowed beyond the longest delay, by default.
pub const DEADLINE_SLACK: Duration = Duration::from_secs(5);
/// The most requests one run may make.
pub const MAX_REQUESTS: usize = 100_000;
/// The most worker threads one run may start.
pub const MAX_WORKERS: usize = 64;

pub const HELP: &str = "\
Sends N requests to a delay server, with decreasing delays, and prints each
response the moment it is complete: the requests are shared out among
worker threads, and each thread waits on all of its own at once, on an
epoll of its own.

Usage: cargo run -p <chapter> -- [OPTIONS]

Options:
  --addr HOST:PORT   use this delay server instead of starting one here
  -n, --requests N   how many requests to send [default: 5]
  --scale F          request i of N waits (N - i) * 1000 ms * F [default: 0.2]
  --deadline SECS    give up after this long [default: longest delay + 5]
  --workers N        threads, each with its own epoll [default: 2]
  --hedge            send each request on two connections; the first
                     answer wins and the other connection is closed
  --endless          also read an endless body, checksumming it as it comes
  --max-open N       connections each worker keeps open at once; the other
                     requests wait for one to finish [default: 0, no limit]
  -h, --help         print this help
";

impl Options {
    /// The delay, in milliseconds, of each request: the book's 1000 ms steps,
    /// longest first, so that the answers come back in reverse order.
    pub fn delays_ms(&self) -> Vec<u64> {
        (0..self.requests)
            .map(|i| ((self.requests - i) as f64 * 1000.0 * self.scale).round() as u64)
            .collect()
    }

    /// The path of each request, in the form the delay server understands.
    pub fn paths(&self) -> Vec<String> {
        self.delays_ms()
            .iter()
            .enumerate()
            .map(|(i, delay)| format!("/{delay}/request-{i}"))
            .collect()
    }

    pub fn deadline(&self) -> Duration {
        self.deadline.unwrap_or_else(|| {
            let longest = self.delays_ms().into_iter().max().unwrap_or(0);
            Duration::from_millis(longest) + DEADLINE_SLACK
        })
    }
}

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
            "--addr" => options.addr = Some(value("HOST:PORT")?),
            "--hedge" => options.hedge = true,
            "--endless" => options.endless = true,
            "-n" | "--requests" => {
                let text = value("N")?;
                options.requests = text
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_REQUESTS).contains(n))
                    .ok_or(UsageError::Invalid(
                        "--requests",
                        text,
                        "a whole number from 1 to 100000",
                    ))?;
            }
            "--scale" => {
                let text = value("F")?;
                options.scale = text
                    .parse()
                    .ok()
                    .filter(|f: &f64| (0.0..=100.0).contains(f))
                    .ok_or(UsageError::Invalid(
                        "--scale",
                        text,
                        "a number from 0 to 100",
                    ))?;
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
            "--max-open" => {
                let text = value("N")?;
                options.max_open = text.parse().map_err(|_| {
                    UsageError::Invalid("--max-open", text, "a whole number (0: no limit)")
                })?;
            }
            "--deadline" => {
                let text = value("SECS")?;
                let secs = text
                    .parse()
                    .ok()
                    .filter(|s: &f64| *s > 0.0 && *s <= 86_400.0)
                    .ok_or(UsageError::Invalid(
                        "--deadline",
                        text,
                        "seconds, above 0 and at most 86400",
                    ))?;
                options.deadline = Some(Duration::from_secs_f64(secs));
            }
            _ => return Err(UsageError::Unknown(flag)),
        }
    }
    Ok(Some(options))
}

/// A command line we cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageError {
    Unknown(String),
    MissingValue(String, &'static str),
    Invalid(&'static str, String, &'static str),
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::Unknown(flag) => write!(f, "unknown option {flag:?}"),
            UsageError::MissingValue(flag, what) => write!(f, "{flag} needs a value: {what}"),
            UsageError::Invalid(flag, value, want) => {
                write!(f, "{flag} takes {want}, not {value:?}")
            }
        }
    }
}

impl std::error::Error for UsageError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(line: &str) -> Result<Option<Options>, UsageError> {
        parse(line.split_whitespace().map(String::from))
    }

    #[test]
    fn defaults_make_a_one_second_demo() {
        let options = parse_words("").unwrap().unwrap();
        assert_eq!(options.delays_ms(), [1000, 800, 600, 400, 200]);
        assert_eq!(options.paths()[4], "/200/request-4");
        assert_eq!(options.deadline(), Duration::from_secs(6));
    }

    #[test]
    fn scale_one_gives_the_books_delays() {
        let options = parse_words("-n 3 --scale 1 --deadline 0.5")
            .unwrap()
            .unwrap();
        assert_eq!(options.delays_ms(), [3000, 2000, 1000]);
        assert_eq!(options.deadline(), Duration::from_millis(500));
    }

    #[test]
    fn bad_command_lines_say_what_is_wrong() {
        assert_eq!(parse_words("--help").unwrap(), None);
        assert_eq!(
            parse_words("--frobnicate"),
            Err(UsageError::Unknown("--frobnicate".into()))
        );
        assert_eq!(
            parse_words("--addr"),
            Err(UsageError::MissingValue("--addr".into(), "HOST:PORT"))
        );
        for bad in [
            "-n 0",
            "-n many",
            "--scale -1",
            "--scale NaN",
            "--deadline 0",
        ] {
            assert!(
                matches!(parse_words(bad), Err(UsageError::Invalid(..))),
                "{bad}"
            );
        }
    }
}
