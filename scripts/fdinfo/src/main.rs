//! `cargo run -p fdinfo -- CHAPTER`: runs the chapter's program against a
//! delay server started here and, while its requests are in flight, prints
//! what Linux shows of it: its file descriptors (`/proc/PID/fd`) and its
//! epoll instance's interest list (`/proc/PID/fdinfo/EPFD`), one line per
//! registered descriptor. `scripts/book generate` puts the output in the
//! book; what differs from run to run (inode and mount numbers) is left as
//! it is here and ignored by `scripts/book check`.
//!
//! The program runs as a child process, not a thread, so that no server
//! socket of ours takes a number among its own: its descriptors are
//! numbered the same on every run.

use std::fs;
use std::process::{Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use a_epoll::delay_server::DelayServer;

/// Five requests of 5 s down to 1 s: the shortest is still in flight long
/// after the last one is registered, even on a loaded machine.
const REQUESTS: usize = 5;
const SCALE: &str = "1";
/// How long the program may take to register every request.
const PATIENCE: Duration = Duration::from_secs(20);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [chapter] = args.as_slice() else {
        eprintln!("usage: cargo run -p fdinfo -- CHAPTER (for example a-epoll)");
        return ExitCode::from(2);
    };
    match show(chapter) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("fdinfo: {message}");
            ExitCode::FAILURE
        }
    }
}

fn show(chapter: &str) -> Result<(), String> {
    // The chapter's binary, built beside this one: `cargo run -p fdinfo`
    // builds only the chapter's library, which this program links.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "--quiet", "-p", chapter, "--bin", chapter])
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !built.success() {
        return Err(format!("cargo build -p {chapter} failed"));
    }
    let binary = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .with_file_name(chapter);
    let server = DelayServer::start().map_err(|e| format!("delay server: {e}"))?;
    let mut child = Command::new(&binary)
        .args(["--addr", &server.addr().to_string()])
        .args(["--requests", &REQUESTS.to_string(), "--scale", SCALE])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    let pid = child.id();
    let seen = in_flight(pid);
    let status = child.wait().map_err(|e| e.to_string())?;
    let Seen { fds, epfd, fdinfo } = seen?;
    if !status.success() {
        return Err(format!("{chapter} failed: {status}"));
    }
    println!("$ ls -l /proc/PID/fd");
    for (fd, target) in fds {
        println!("{fd} -> {target}");
    }
    println!("$ cat /proc/PID/fdinfo/{epfd}");
    // The kernel lists the registrations in the order of its tree, which is
    // by each file's address in memory: a different order every run. Here
    // they are sorted by fd, so that a stale page shows as a changed line.
    let (mut registered, head): (Vec<&str>, Vec<&str>) =
        fdinfo.lines().partition(|line| line.starts_with("tfd:"));
    registered.sort_by_key(|line| tfd(line));
    for line in head.iter().chain(&registered) {
        println!("{line}");
    }
    Ok(())
}

/// The fd number of a `tfd:` line.
fn tfd(line: &str) -> Option<u32> {
    line.strip_prefix("tfd:")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// What the program had open, with every request registered.
struct Seen {
    fds: Vec<(u32, String)>,
    epfd: u32,
    fdinfo: String,
}

/// Waits until every request's socket is registered, then returns the
/// program's descriptors, which of them is the epoll fd, and its fdinfo. The program leaves no other mark
/// of "all registered" than the fdinfo itself, so this polls it, every
/// millisecond.
fn in_flight(pid: u32) -> Result<Seen, String> {
    let start = Instant::now();
    loop {
        let fds = descriptors(pid);
        let epoll = fds
            .iter()
            .find(|(_, target)| target == "anon_inode:[eventpoll]");
        if let Some(&(epfd, _)) = epoll {
            if let Ok(fdinfo) = fs::read_to_string(format!("/proc/{pid}/fdinfo/{epfd}")) {
                let sockets = fdinfo
                    .lines()
                    .filter_map(tfd)
                    .filter(|fd| fds.iter().any(|(n, t)| n == fd && t.starts_with("socket:")))
                    .count();
                if sockets == REQUESTS {
                    return Ok(Seen { fds, epfd, fdinfo });
                }
            }
        }
        if start.elapsed() > PATIENCE {
            return Err(format!(
                "not all {REQUESTS} requests registered after {PATIENCE:?}"
            ));
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// The program's sockets, epoll fds and eventfds, in order, with what each names.
/// Whatever else it has (its standard streams, and any descriptor it
/// inherited from whoever ran this) differs from one machine to another.
fn descriptors(pid: u32) -> Vec<(u32, String)> {
    let mut fds: Vec<(u32, String)> = fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let fd = entry.file_name().to_str()?.parse().ok()?;
            let target = fs::read_link(entry.path()).ok()?;
            Some((fd, target.to_string_lossy().into_owned()))
        })
        .filter(|(_, target)| target.starts_with("socket:") || target.starts_with("anon_inode:"))
        .collect();
    fds.sort();
    fds
}
