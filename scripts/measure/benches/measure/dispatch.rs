//! Dispatch cost: K socket pairs, each made readable and then drained, for
//! R rounds; events handled per second. Every epoll contender registers
//! with the same flags (`EPOLLIN | EPOLLRDHUP | EPOLLET`, mio's), so the
//! only difference is the code between the kernel and the handler.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::output::{self, Goal, ratio};
use crate::plot;
use crate::stats::median;
use crate::sys;

const PAIRS: usize = 256;
const ROUNDS: usize = 400;
const REPEATS: usize = 7;
/// No wait may take this long: every socket is readable before it starts.
const WAIT_LIMIT_MS: i32 = 5_000;
const FLAGS: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32;

pub const CONTENDERS: [&str; 4] = ["chapter 4 Poll", "bare epoll_wait", "mio::Poll", "poll(2)"];

struct Pairs {
    readers: Vec<UnixStream>,
    writers: Vec<UnixStream>,
}

impl Pairs {
    fn new() -> io::Result<Pairs> {
        let mut readers = Vec::new();
        let mut writers = Vec::new();
        for _ in 0..PAIRS {
            let (reader, writer) = UnixStream::pair()?;
            reader.set_nonblocking(true)?;
            readers.push(reader);
            writers.push(writer);
        }
        Ok(Pairs { readers, writers })
    }

    fn make_all_readable(&self) -> io::Result<()> {
        for mut writer in &self.writers {
            writer.write_all(b"x")?;
        }
        Ok(())
    }

    /// The handler: read until `WouldBlock`, as edge-triggered requires.
    fn drain(&self, index: usize) -> io::Result<()> {
        let mut buffer = [0; 64];
        loop {
            match (&self.readers[index]).read(&mut buffer) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(error) => return Err(error),
            }
        }
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "a wait returned no events")
}

/// Times R rounds: each makes every socket readable, then calls `wait`
/// until every socket has been handled. `wait` waits once, drains each
/// socket it was told about, and says how many that was.
fn time_rounds(
    pairs: &Pairs,
    mut wait: impl FnMut(&Pairs) -> io::Result<usize>,
) -> io::Result<Duration> {
    let start = Instant::now();
    for _ in 0..ROUNDS {
        pairs.make_all_readable()?;
        let mut handled = 0;
        while handled < PAIRS {
            match wait(pairs)? {
                0 => return Err(timed_out()),
                n => handled += n,
            }
        }
    }
    Ok(start.elapsed())
}

/// Chapter 4's `Poll` and `Events`.
fn chapter4(pairs: &Pairs) -> io::Result<Duration> {
    use d_ready_list::{Events, Poll};
    let poll = Poll::new()?;
    for (token, reader) in pairs.readers.iter().enumerate() {
        sys::epoll_add(poll.as_fd(), reader.as_fd(), token, FLAGS)?;
    }
    let mut events = Events::with_capacity(PAIRS);
    let limit = Some(Duration::from_millis(WAIT_LIMIT_MS as u64));
    time_rounds(pairs, |pairs| {
        poll.poll(&mut events, limit)?;
        for event in events.iter() {
            pairs.drain(event.token().0)?;
        }
        Ok(events.len())
    })
}

/// Straight on `libc::epoll_wait`: the floor.
fn bare(pairs: &Pairs) -> io::Result<Duration> {
    let epoll = sys::epoll_create()?;
    for (token, reader) in pairs.readers.iter().enumerate() {
        sys::epoll_add(epoll.as_fd(), reader.as_fd(), token, FLAGS)?;
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; PAIRS];
    time_rounds(pairs, |pairs| {
        let ready = sys::epoll_wait(epoll.as_fd(), &mut events, WAIT_LIMIT_MS)?;
        for event in &events[..ready] {
            let token = event.u64;
            pairs.drain(token as usize)?;
        }
        Ok(ready)
    })
}

/// mio, which registers `EPOLLIN | EPOLLRDHUP | EPOLLET` for
/// `Interest::READABLE`.
fn mio(pairs: &Pairs) -> io::Result<Duration> {
    use mio::unix::SourceFd;
    let mut poll = mio::Poll::new()?;
    for (token, reader) in pairs.readers.iter().enumerate() {
        poll.registry().register(
            &mut SourceFd(&reader.as_raw_fd()),
            mio::Token(token),
            mio::Interest::READABLE,
        )?;
    }
    let mut events = mio::Events::with_capacity(PAIRS);
    let limit = Some(Duration::from_millis(WAIT_LIMIT_MS as u64));
    time_rounds(pairs, |pairs| {
        poll.poll(&mut events, limit)?;
        let mut handled = 0;
        for event in events.iter() {
            pairs.drain(event.token().0)?;
            handled += 1;
        }
        Ok(handled)
    })
}

/// `poll(2)`: no registration, the whole list every call.
fn poll2(pairs: &Pairs) -> io::Result<Duration> {
    let mut fds: Vec<libc::pollfd> = pairs
        .readers
        .iter()
        .map(|reader| libc::pollfd {
            fd: reader.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    time_rounds(pairs, |pairs| {
        sys::poll(&mut fds, WAIT_LIMIT_MS)?;
        let mut handled = 0;
        for (index, fd) in fds.iter().enumerate() {
            if fd.revents != 0 {
                pairs.drain(index)?;
                handled += 1;
            }
        }
        Ok(handled)
    })
}

pub fn run(out: &Path) -> io::Result<Vec<Goal>> {
    let pairs = Pairs::new()?;
    let runners: [fn(&Pairs) -> io::Result<Duration>; 4] = [chapter4, bare, mio, poll2];
    let events = (PAIRS * ROUNDS) as f64;
    let mut rates = vec![Vec::new(); CONTENDERS.len()];
    let mut rows = Vec::new();
    // One warm-up pass, then the repeats, contenders interleaved.
    for repeat in 0..=REPEATS {
        for (index, runner) in runners.iter().enumerate() {
            let took = runner(&pairs)?;
            if repeat > 0 {
                let rate = events / took.as_secs_f64();
                rates[index].push(rate);
                rows.push(format!("{},{repeat},{rate:.0}", CONTENDERS[index]));
            }
        }
    }
    output::write_csv(
        out,
        "dispatch.csv",
        "contender,repeat,events_per_second",
        &rows,
    )?;

    let medians: Vec<f64> = rates.iter().map(|r| median(r)).collect();
    let table_rows: Vec<Vec<String>> = CONTENDERS
        .iter()
        .zip(&medians)
        .zip(&rates)
        .map(|((name, rate), all)| {
            let lowest = all.iter().copied().fold(f64::INFINITY, f64::min);
            let highest = all.iter().copied().fold(0.0, f64::max);
            vec![
                name.to_string(),
                format!("{:.3} M", rate / 1e6),
                format!("{:.3} to {:.3} M", lowest / 1e6, highest / 1e6),
                format!("{:.2}x", medians[0] / rate),
            ]
        })
        .collect();
    let text = format!(
        "{}\n{PAIRS} socket pairs, {ROUNDS} rounds, median of {REPEATS} runs.\n",
        output::table(
            &[
                "contender",
                "events per second",
                "all runs",
                "chapter 4 against it"
            ],
            &table_rows
        )
    );
    output::write_table(out, "dispatch.md", &text)?;
    print!("{text}");
    plot::bars(
        &out.join("dispatch.svg"),
        "Events handled per second (millions), median",
        &CONTENDERS
            .iter()
            .zip(&medians)
            .map(|(n, r)| (n.to_string(), r / 1e6))
            .collect::<Vec<_>>(),
    )?;

    let against_bare = medians[0] / medians[1];
    let against_mio = medians[0] / medians[2];
    Ok(vec![
        Goal {
            measurement: "dispatch",
            name: "dispatch: chapter 4 / bare epoll_wait".into(),
            wanted: "at least 0.95x".into(),
            measured: ratio(against_bare),
            met: against_bare >= 0.95,
        },
        Goal {
            measurement: "dispatch",
            name: "dispatch: chapter 4 / mio".into(),
            wanted: "at least 1.0x".into(),
            measured: ratio(against_mio),
            met: against_mio >= 1.0,
        },
    ])
}
