//! Idle descriptors: one active socket and I idle ones, all registered;
//! the time of one wait round (make the active one readable, wait, read)
//! on epoll against `poll(2)`.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use crate::goals::{Goal, Want};
use crate::output::{self, ratio};
use crate::plot;
use crate::runs::Context;
use crate::sys;
use measure::stats::median;

pub const IDLE: [usize; 4] = [10, 100, 1_000, 10_000];
const REPEATS: usize = 5;
const WAIT_LIMIT: Duration = Duration::from_secs(5);

/// Lifts the soft open-file limit to the hard one: 10,000 idle sockets,
/// and the scale run's 10,000 connections, need more than the usual 1,024.
pub fn raise_fd_limit() -> io::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through a pointer to one.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == -1 {
        return Err(io::Error::last_os_error());
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit reads one rlimit through a pointer to one.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Idle sockets: unbound UDP sockets, one fd each, never readable.
fn idle_sockets(count: usize) -> io::Result<Vec<Socket>> {
    (0..count)
        .map(|_| Socket::new(Domain::IPV4, Type::DGRAM, None))
        .collect()
}

/// Rounds per run: many for few fds, fewer where `poll(2)` gets slow.
fn rounds(idle: usize) -> usize {
    (2_000_000 / (idle + 100)).clamp(200, 20_000)
}

fn epoll_rounds(idle: &[Socket], reader: &UnixStream, writer: &UnixStream) -> io::Result<Duration> {
    use d_ready_list::{Events, Poll};
    let poll = Poll::new()?;
    let flags = (libc::EPOLLIN | libc::EPOLLET) as u32;
    for (token, socket) in idle.iter().enumerate() {
        sys::epoll_add(poll.as_fd(), socket.as_fd(), token, flags)?;
    }
    sys::epoll_add(poll.as_fd(), reader.as_fd(), usize::MAX, flags)?;
    let mut events = Events::with_capacity(16);
    let limit = Some(WAIT_LIMIT);
    let rounds = rounds(idle.len());
    let start = Instant::now();
    for _ in 0..rounds {
        (&*writer).write_all(b"x")?;
        poll.poll(&mut events, limit)?;
        if events.len() != 1 || events.iter().next().map(|e| e.token().0) != Some(usize::MAX) {
            return Err(io::Error::other("expected one event, the active socket's"));
        }
        drain_one(reader)?;
    }
    Ok(start.elapsed() / rounds as u32)
}

fn poll_rounds(idle: &[Socket], reader: &UnixStream, writer: &UnixStream) -> io::Result<Duration> {
    let mut fds: Vec<libc::pollfd> = idle
        .iter()
        .map(|socket| socket.as_raw_fd())
        .chain([reader.as_raw_fd()])
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let rounds = rounds(idle.len());
    let start = Instant::now();
    for _ in 0..rounds {
        (&*writer).write_all(b"x")?;
        let ready = sys::poll(&mut fds, WAIT_LIMIT)?;
        if ready != 1 || fds[idle.len()].revents & libc::POLLIN == 0 {
            return Err(io::Error::other("expected the active socket, alone"));
        }
        drain_one(reader)?;
    }
    Ok(start.elapsed() / rounds as u32)
}

fn drain_one(reader: &UnixStream) -> io::Result<()> {
    let mut byte = [0; 8];
    let n = (&*reader).read(&mut byte)?;
    if n != 1 {
        return Err(io::Error::other("expected one byte"));
    }
    match (&*reader).read(&mut byte) {
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Ok(_) => Err(io::Error::other("an extra byte")),
        Err(error) => Err(error),
    }
}

pub fn run(ctx: &Context) -> io::Result<Vec<Goal>> {
    let repeats = if ctx.quick { 2 } else { REPEATS };
    let (reader, writer) = UnixStream::pair()?;
    reader.set_nonblocking(true)?;
    let mut rows = Vec::new();
    let mut medians = Vec::new();
    for idle in IDLE {
        let sockets = idle_sockets(idle).map_err(|error| {
            io::Error::new(error.kind(), format!("{idle} idle sockets: {error}"))
        })?;
        let (mut epoll, mut poll) = (Vec::new(), Vec::new());
        for repeat in 0..=repeats {
            let e = epoll_rounds(&sockets, &reader, &writer)?;
            let p = poll_rounds(&sockets, &reader, &writer)?;
            if repeat > 0 {
                let (e, p) = (e.as_nanos() as f64, p.as_nanos() as f64);
                rows.push(format!("epoll,{idle},{repeat},{e:.0}"));
                rows.push(format!("poll,{idle},{repeat},{p:.0}"));
                epoll.push(e);
                poll.push(p);
            }
        }
        medians.push((idle, median(&epoll), median(&poll)));
    }
    ctx.write_csv("idle.csv", "contender,idle,repeat,ns_per_round", &rows)?;

    let table_rows: Vec<Vec<String>> = medians
        .iter()
        .map(|(idle, e, p)| {
            vec![
                idle.to_string(),
                format!("{:.1} µs", e / 1000.0),
                format!("{:.1} µs", p / 1000.0),
                ratio(p / e),
            ]
        })
        .collect();
    let text = format!(
        "{}\nOne active socket; time per round (write, wait, read), median of {repeats} runs.\n",
        output::table(
            &["idle sockets", "epoll", "poll(2)", "poll(2) / epoll"],
            &table_rows
        )
    );
    ctx.write_table("idle.md", &text)?;
    print!("{text}");
    draw(&ctx.out, &medians)?;

    let (_, e_first, p_first) = medians[0];
    let (_, e_last, p_last) = medians[medians.len() - 1];
    let epoll_growth = e_last / e_first;
    let poll_growth = p_last / p_first;
    Ok(vec![
        Goal::exact(
            "idle",
            "idle: epoll at 10000 idle / at 10".into(),
            Want::AtMost(1.2),
            epoll_growth,
        ),
        Goal::exact(
            "idle",
            "idle: poll(2) at 10000 idle / at 10".into(),
            Want::AtLeast(1.2),
            poll_growth,
        ),
    ])
}

/// The plot, from `(idle, epoll ns, poll(2) ns)` medians per idle count.
fn draw(out: &Path, medians: &[(usize, f64, f64)]) -> io::Result<()> {
    plot::lines_log_log(
        &out.join("idle.svg"),
        "Time per wait round (µs) against idle sockets",
        "idle sockets",
        "µs per round",
        &[
            (
                "epoll".to_string(),
                medians
                    .iter()
                    .map(|(i, e, _)| (*i as f64, e / 1000.0))
                    .collect(),
            ),
            (
                "poll(2)".to_string(),
                medians
                    .iter()
                    .map(|(i, _, p)| (*i as f64, p / 1000.0))
                    .collect(),
            ),
        ],
    )
}

/// Draws the plot again from the recorded `idle.csv` in `out`.
pub fn redraw(out: &Path) -> io::Result<()> {
    let csv = std::fs::read_to_string(out.join("idle.csv"))?;
    let mut medians = Vec::new();
    for idle in IDLE {
        let mut times = [Vec::new(), Vec::new()];
        for line in csv.lines().skip(1) {
            let bad = || io::Error::other(format!("idle.csv: bad row {line:?}"));
            let fields: Vec<&str> = line.split(',').collect();
            let [contender, count, _repeat, ns] = fields[..] else {
                return Err(bad());
            };
            if count.parse::<usize>().map_err(|_| bad())? != idle {
                continue;
            }
            let which = match contender {
                "epoll" => 0,
                "poll" => 1,
                _ => return Err(bad()),
            };
            times[which].push(ns.parse::<f64>().map_err(|_| bad())?);
        }
        if !times[0].is_empty() {
            medians.push((idle, median(&times[0]), median(&times[1])));
        }
    }
    draw(out, &medians)
}
