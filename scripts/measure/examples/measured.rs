//! Runs one program and reports what it cost: wall time, CPU time (user and
//! system) and peak RSS, from `wait4`.
//!
//! Usage: measured --deadline SECS [--nofile N] -- PROGRAM [ARGS...]
//!
//! The report is one line on standard error, after the program's own output:
//!
//! ```text
//! measured: status=0 wall_us=1234 user_us=567 sys_us=89 maxrss_kib=6000
//! ```
//!
//! `status` is the exit code, or `signal-N` if a signal ended the program;
//! past the deadline the program is killed (`signal-9`).
//!
//! Why a process of its own: Linux reports as a process's peak RSS
//! (`ru_maxrss`) the larger of its own peak and the peak of the memory it
//! replaced at `exec`. A program spawned by the measuring process, which by
//! then holds tens or hundreds of MiB, would be charged that memory. This
//! small process is what the program replaces instead, so what is charged
//! is at most this process's own few MiB: the floor every reported peak
//! has, which a run of `true` shows.
//!
//! `--nofile N` raises both open-file limits to N before the program starts
//! (raising the hard limit needs root); it is the same for every contender.
//!
//! Built and started by the `measure` bench target; not a tutorial chapter.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("measured: failed: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut deadline = None;
    let mut nofile = None;
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
    loop {
        match args.next().as_deref() {
            Some("--deadline") => {
                let secs: f64 = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or(bad("--deadline SECS"))?;
                deadline = Some(Duration::from_secs_f64(secs));
            }
            Some("--nofile") => {
                nofile = Some(
                    args.next()
                        .and_then(|s| s.parse().ok())
                        .ok_or(bad("--nofile N"))?,
                );
            }
            Some("--") => break,
            _ => {
                return Err(bad(
                    "usage: measured --deadline SECS [--nofile N] -- PROGRAM [ARGS...]",
                ));
            }
        }
    }
    let deadline = deadline.ok_or(bad("--deadline SECS is required"))?;
    let program = args.next().ok_or(bad("no program"))?;
    if let Some(n) = nofile {
        set_nofile(n)?;
    }

    let start = Instant::now();
    let child = Command::new(&program).args(args).spawn()?;
    let pid = child.id() as libc::pid_t;
    let pidfd = pidfd_open(pid)?;
    if !wait_readable(&pidfd, deadline)? {
        // SAFETY: kill takes no pointers; the pid is our child's, which has
        // not been reaped (only wait4 below reaps it), so it names no other
        // process.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let mut status = 0;
    // SAFETY: rusage is plain data, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pid is our child's, not yet waited for; status and usage
    // point at live values of the types wait4 writes.
    if unsafe { libc::wait4(pid, &mut status, 0, &mut usage) } == -1 {
        return Err(io::Error::last_os_error());
    }
    let wall = start.elapsed();
    let status = std::process::ExitStatus::from_raw(status);
    let status = match (status.code(), status.signal()) {
        (Some(code), _) => code.to_string(),
        (None, Some(signal)) => format!("signal-{signal}"),
        (None, None) => "unknown".to_string(),
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    eprintln!(
        "measured: status={status} wall_us={} user_us={} sys_us={} maxrss_kib={}",
        wall.as_micros(),
        micros(usage.ru_utime),
        micros(usage.ru_stime),
        usage.ru_maxrss
    );
    Ok(())
}

fn set_nofile(n: libc::rlim_t) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: setrlimit only reads the rlimit the pointer points at.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A pidfd for our child: readable once it has exited.
fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags, no pointers.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// Waits until `fd` is readable or `timeout` passes; false on timeout.
/// A signal (`EINTR`) does not end the wait: it goes on for the time left.
fn wait_readable(fd: &OwnedFd, timeout: Duration) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let end = Instant::now() + timeout;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let mut poll = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // Rounded up: with 0.4 ms left, a timeout of 0 would spin.
        // SAFETY: one pollfd, alive for the call, which the kernel reads and
        // writes (only `revents`).
        let ready = unsafe { libc::poll(&mut poll, 1, measure::wait_ms(left)) };
        match ready {
            -1 => {
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
            0 if left.is_zero() => return Ok(false),
            0 => {}
            _ => return Ok(true),
        }
    }
}
