//! Dispatch cost: K socket pairs, each made readable and then drained, for
//! R rounds; events handled per second. The contenders take turns in short
//! runs, and chapter 4 is compared with each in the ratio of two runs next
//! to each other, so that what the machine does meanwhile cancels out. Every epoll contender registers
//! with the same flags (`EPOLLIN | EPOLLRDHUP | EPOLLET`, mio's), so the
//! only difference is the code between the kernel and the handler.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use measure::stats::{Summary, median, summarize};

use crate::goals::{Goal, Want};
use crate::output::{self, ratio};
use crate::plot;
use crate::runs::Context;
use crate::sys;

const PAIRS: usize = 256;
/// No wait may take this long: every socket is readable before it starts.
const WAIT_LIMIT: Duration = Duration::from_secs(5);
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

/// Times `rounds` rounds: each makes every socket readable, then calls
/// `wait` until every socket has been handled. `wait` waits once, drains
/// each socket it was told about, and says how many that was. One round
/// before the clock starts brings the new epoll's structures into the
/// cache.
fn time_rounds(
    pairs: &Pairs,
    rounds: usize,
    mut wait: impl FnMut(&Pairs) -> io::Result<usize>,
) -> io::Result<Duration> {
    let mut round = || {
        pairs.make_all_readable()?;
        let mut handled = 0;
        while handled < PAIRS {
            match wait(pairs)? {
                0 => return Err(timed_out()),
                n => handled += n,
            }
        }
        Ok(())
    };
    round()?;
    let start = Instant::now();
    for _ in 0..rounds {
        round()?;
    }
    Ok(start.elapsed())
}

/// Chapter 4's `Poll` and `Events`.
fn chapter4(pairs: &Pairs, rounds: usize) -> io::Result<Duration> {
    use d_ready_list::{Events, Poll};
    let poll = Poll::new()?;
    for (token, reader) in pairs.readers.iter().enumerate() {
        sys::epoll_add(poll.as_fd(), reader.as_fd(), token, FLAGS)?;
    }
    let mut events = Events::with_capacity(PAIRS);
    let limit = Some(WAIT_LIMIT);
    time_rounds(pairs, rounds, |pairs| {
        poll.poll(&mut events, limit)?;
        for event in events.iter() {
            pairs.drain(event.token().0)?;
        }
        Ok(events.len())
    })
}

/// Straight on `libc::epoll_wait`: the floor.
fn bare(pairs: &Pairs, rounds: usize) -> io::Result<Duration> {
    let epoll = sys::epoll_create()?;
    for (token, reader) in pairs.readers.iter().enumerate() {
        sys::epoll_add(epoll.as_fd(), reader.as_fd(), token, FLAGS)?;
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; PAIRS];
    time_rounds(pairs, rounds, |pairs| {
        let ready = sys::epoll_wait(epoll.as_fd(), &mut events, WAIT_LIMIT)?;
        for event in &events[..ready] {
            let token = event.u64;
            pairs.drain(token as usize)?;
        }
        Ok(ready)
    })
}

/// mio, which registers `EPOLLIN | EPOLLRDHUP | EPOLLET` for
/// `Interest::READABLE`.
fn mio(pairs: &Pairs, rounds: usize) -> io::Result<Duration> {
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
    let limit = Some(WAIT_LIMIT);
    time_rounds(pairs, rounds, |pairs| {
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
fn poll2(pairs: &Pairs, rounds: usize) -> io::Result<Duration> {
    let mut fds: Vec<libc::pollfd> = pairs
        .readers
        .iter()
        .map(|reader| libc::pollfd {
            fd: reader.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    time_rounds(pairs, rounds, |pairs| {
        sys::poll(&mut fds, WAIT_LIMIT)?;
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

/// How big a run is: the full one, or the reduced one of `--quick`.
struct Plan {
    /// Blocks of short runs, one run of each contender per block.
    blocks: usize,
    /// Rounds in one short run.
    rounds: usize,
}

const FULL: Plan = Plan {
    blocks: 101,
    rounds: 40,
};
const QUICK: Plan = Plan {
    blocks: 9,
    rounds: 20,
};

pub fn run(ctx: &Context) -> io::Result<Vec<Goal>> {
    let plan = if ctx.quick { QUICK } else { FULL };
    let pairs = Pairs::new()?;
    let runners: [fn(&Pairs, usize) -> io::Result<Duration>; 4] = [chapter4, bare, mio, poll2];
    let events = (PAIRS * plan.rounds) as f64;
    // rates[contender][block]
    let mut rates = vec![Vec::new(); CONTENDERS.len()];
    let mut rows = Vec::new();
    // Short runs, interleaved: every block runs each contender once, each
    // block starting with the next contender, so that a slow second on the
    // machine falls on all of them alike and none always goes first. Block
    // 0 warms up and is not kept.
    for block in 0..=plan.blocks {
        for turn in 0..runners.len() {
            let index = (block + turn) % runners.len();
            let took = runners[index](&pairs, plan.rounds)?;
            if block > 0 {
                let rate = events / took.as_secs_f64();
                rates[index].push(rate);
                rows.push(format!("{},{block},{rate:.0}", CONTENDERS[index]));
            }
        }
    }
    ctx.write_csv("dispatch.csv", "contender,repeat,events_per_second", &rows)?;

    // Chapter 4's rate over each contender's, block by block.
    let paired: Vec<Summary> = rates
        .iter()
        .map(|theirs| {
            let ratios: Vec<f64> = rates[0].iter().zip(theirs).map(|(a, b)| a / b).collect();
            summarize(&ratios)
        })
        .collect();
    let table_rows: Vec<Vec<String>> = CONTENDERS
        .iter()
        .zip(&rates)
        .zip(&paired)
        .enumerate()
        .map(|(index, ((name, all), ratio_to))| {
            let own = summarize(all);
            let (paired, interval) = if index == 0 {
                ("(itself)".to_string(), String::new())
            } else {
                (
                    ratio(ratio_to.median),
                    format!(
                        "{} to {}",
                        ratio(ratio_to.interval.0),
                        ratio(ratio_to.interval.1)
                    ),
                )
            };
            vec![
                name.to_string(),
                format!("{:.3} M", own.median / 1e6),
                format!(
                    "{:.3} to {:.3} M",
                    own.quartiles.0 / 1e6,
                    own.quartiles.1 / 1e6
                ),
                paired,
                interval,
            ]
        })
        .collect();
    let confidence = paired[1].confidence * 100.0;
    let text = format!(
        "{}\n{PAIRS} socket pairs; {} blocks, each one short run of {} rounds per contender, \
         in turn. Events per second: the median run and the middle half of the runs. \
         Chapter 4 against a contender: the median of the {} ratios between the two runs \
         of one block, and a {confidence:.0}% confidence interval for it.\n",
        output::table(
            &[
                "contender",
                "events per second",
                "middle half of runs",
                "chapter 4 / it, paired",
                "interval"
            ],
            &table_rows
        ),
        plan.blocks,
        plan.rounds,
        plan.blocks,
    );
    ctx.write_table("dispatch.md", &text)?;
    print!("{text}");
    draw(&ctx.out, &rates)?;

    Ok(vec![
        Goal::interval(
            "dispatch",
            "dispatch: chapter 4 / bare epoll_wait".into(),
            Want::AtLeast(1.0),
            &paired[1],
        ),
        Goal::interval(
            "dispatch",
            "dispatch: chapter 4 / mio".into(),
            Want::AtLeast(1.0),
            &paired[2],
        ),
    ])
}

/// The plot: each contender's median rate, from `rates[contender][block]`.
fn draw(out: &Path, rates: &[Vec<f64>]) -> io::Result<()> {
    plot::bars(
        &out.join("dispatch.svg"),
        "Events handled per second (millions), median",
        &CONTENDERS
            .iter()
            .zip(rates)
            .map(|(n, r)| (n.to_string(), median(r) / 1e6))
            .collect::<Vec<_>>(),
    )
}

/// Draws the plot again from the recorded `dispatch.csv` in `out`.
pub fn redraw(out: &Path) -> io::Result<()> {
    let csv = std::fs::read_to_string(out.join("dispatch.csv"))?;
    let mut rates = vec![Vec::new(); CONTENDERS.len()];
    for line in csv.lines().skip(1) {
        let bad = || io::Error::other(format!("dispatch.csv: bad row {line:?}"));
        let (name, rest) = line.split_once(',').ok_or_else(bad)?;
        let (_block, rate) = rest.split_once(',').ok_or_else(bad)?;
        let index = CONTENDERS.iter().position(|c| *c == name).ok_or_else(bad)?;
        rates[index].push(rate.parse::<f64>().map_err(|_| bad())?);
    }
    draw(out, &rates)
}
