//! The programs the syscall and scale measurements start, each in a
//! process of its own: the clients, the delay server, and `measured`, the
//! runner that reports what a client cost (`examples/measured.rs`).

use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The programs, built by `scripts/bench`.
pub struct Programs {
    pub chapters: PathBuf,
    pub tokio_client: PathBuf,
    pub server: PathBuf,
    pub measured: PathBuf,
}

impl Programs {
    /// The programs in `bins`, or which one is missing.
    pub fn find(bins: &Path) -> io::Result<Programs> {
        let examples = bins.join("examples");
        let programs = Programs {
            chapters: bins.to_path_buf(),
            tokio_client: examples.join("tokio_client"),
            server: examples.join("delay_server"),
            measured: examples.join("measured"),
        };
        for program in [
            programs.chapter("d-ready-list"),
            programs.tokio_client.clone(),
            programs.server.clone(),
            programs.measured.clone(),
        ] {
            if !program.exists() {
                return Err(io::Error::other(format!(
                    "{} is missing: scripts/bench builds it",
                    program.display()
                )));
            }
        }
        Ok(programs)
    }

    /// A chapter's release binary: `a-epoll` .. `d-ready-list`.
    pub fn chapter(&self, name: &str) -> PathBuf {
        self.chapters.join(name)
    }
}

/// Which delay server a run talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// The chapters' delay server, a thread per connection.
    Threads,
    /// `examples/delay_server.rs tokio`: event-driven.
    Tokio,
}

impl Server {
    pub fn name(self) -> &'static str {
        match self {
            Server::Threads => "threads",
            Server::Tokio => "tokio",
        }
    }
}

/// No server outlives this, whatever happens to the measuring process.
const SERVER_DEADLINE: &str = "600";

/// A delay server in a process of its own, stopped when dropped.
pub struct ServerProcess {
    child: Child,
    pub addr: String,
}

impl ServerProcess {
    pub fn start(program: &Path, server: Server) -> io::Result<ServerProcess> {
        let mut child = Command::new(program)
            .args([server.name(), "--deadline", SERVER_DEADLINE])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            BufReader::new(stdout).read_line(&mut line)?;
        }
        let Some(addr) = line.trim().strip_prefix("listening ") else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other(format!(
                "the {} delay server did not start: {line:?}",
                server.name()
            )));
        };
        Ok(ServerProcess {
            addr: addr.to_string(),
            child,
        })
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // The server stops when its standard input closes; it is given ten
        // seconds to close its connections, then killed. Polling its exit
        // every 10 ms is a wait for a condition, not a sleep standing in
        // for one.
        drop(self.child.stdin.take());
        let end = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `measured` reported about one program.
pub struct Report {
    pub status: String,
    pub wall_us: u64,
    pub user_us: u64,
    pub sys_us: u64,
    pub rss_kib: u64,
}

impl Report {
    pub fn find(stderr: &str) -> io::Result<Report> {
        let line = stderr
            .lines()
            .rev()
            .find_map(|line| line.strip_prefix("measured: status="))
            .ok_or_else(|| io::Error::other(format!("no report from measured: {stderr}")))?;
        let mut words = line.split_whitespace();
        let status = words.next().unwrap_or_default().to_string();
        let mut field = |name: &str| -> io::Result<u64> {
            words
                .next()
                .and_then(|word| word.strip_prefix(name)?.strip_prefix('='))
                .and_then(|value| value.parse().ok())
                .ok_or_else(|| io::Error::other(format!("measured: no {name} in {line:?}")))
        };
        Ok(Report {
            status,
            wall_us: field("wall_us")?,
            user_us: field("user_us")?,
            sys_us: field("sys_us")?,
            rss_kib: field("maxrss_kib")?,
        })
    }

    /// User plus system time, in milliseconds.
    pub fn cpu_ms(&self) -> f64 {
        (self.user_us + self.sys_us) as f64 / 1000.0
    }
}

/// Runs `program args` under `measured`, killed after `kill_after`
/// seconds; its standard output, and what `measured` reported.
pub fn measured(
    programs: &Programs,
    kill_after: &str,
    program: &Path,
    args: &[String],
) -> io::Result<(String, Report)> {
    let output = Command::new(&programs.measured)
        .args(["--deadline", kill_after, "--"])
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report = Report::find(&stderr)?;
    if report.status != "0" {
        eprintln!(
            "  {} failed ({}): {}",
            program.display(),
            report.status,
            stderr.lines().next().unwrap_or_default()
        );
    }
    Ok((String::from_utf8_lossy(&output.stdout).into_owned(), report))
}
