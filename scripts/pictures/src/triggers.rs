//! Level-triggered, edge-triggered and one-shot, for the same arriving
//! bytes: one script of writes, reads and waits, run on a Unix socket pair
//! with each of the first three chapters' own `Poll`, and what each wait
//! returned.
//!
//! Every step is deterministic. A write on a socket pair has put its bytes
//! in the other end's receive queue, and woken epoll, by the time it
//! returns, so a wait with a zero timeout right after it sees whatever it
//! will ever see. The recording is the same on every run, and the picture
//! can be checked for staleness byte for byte.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::svg::{self, Fill, Font, Svg};

/// One step of the script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The peer writes this many bytes.
    Write(usize),
    /// We read at most this many bytes.
    Read(usize),
    /// We read until `WouldBlock`.
    ReadAll,
    /// `poll` with a zero timeout.
    Wait,
    /// `reregister`: one-shot's re-arm. The other two skip it.
    Rearm,
}

/// The script every chapter runs.
const SCRIPT: [Step; 13] = [
    Step::Write(3),
    Step::Wait,
    Step::Wait,
    Step::Read(1),
    Step::Wait,
    Step::Write(2),
    Step::Wait,
    Step::ReadAll,
    Step::Wait,
    Step::Write(1),
    Step::Wait,
    Step::Rearm,
    Step::Wait,
];

/// What a step did, in one chapter's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// A wait returned our socket, readable.
    Event,
    /// A wait returned nothing.
    Nothing,
    /// A write or a read, of this many bytes.
    Moved(usize),
    Rearmed,
    /// A re-arm in a chapter that has none.
    Skipped,
}

const TOKEN: usize = 7;

/// The two calls of a chapter's `Poll` that the script needs.
trait Epoll {
    /// Waits with a zero timeout: did our socket come back?
    fn wait(&mut self) -> io::Result<bool>;
    fn rearm(&mut self, source: &UnixStream) -> io::Result<()>;
}

/// Implements `Epoll` for a chapter's `Poll` and its `Events`, and defines
/// `$record`, which runs the script on that chapter.
macro_rules! chapter {
    ($record:ident, $chapter:ident) => {
        impl Epoll for ($chapter::Poll, $chapter::Events) {
            fn wait(&mut self) -> io::Result<bool> {
                let (poll, events) = self;
                poll.poll(events, Some(Duration::ZERO))?;
                let mut ours = false;
                for event in events.iter() {
                    if event.token() != $chapter::Token(TOKEN) || !event.is_readable() {
                        return Err(io::Error::other(format!("unexpected {event:?}")));
                    }
                    ours = true;
                }
                Ok(ours)
            }

            fn rearm(&mut self, source: &UnixStream) -> io::Result<()> {
                self.0.registry().reregister(
                    source,
                    $chapter::Token(TOKEN),
                    $chapter::Interest::READABLE,
                )
            }
        }

        fn $record(rearms: bool) -> io::Result<Vec<Seen>> {
            let (ours, theirs) = UnixStream::pair()?;
            let poll = $chapter::Poll::new()?;
            poll.registry().register(
                &ours,
                $chapter::Token(TOKEN),
                $chapter::Interest::READABLE,
            )?;
            run(
                &mut (poll, $chapter::Events::with_capacity(4)),
                ours,
                theirs,
                rearms,
            )
        }
    };
}

chapter!(record_level, a_epoll);
chapter!(record_edge, b_edge_triggered);
chapter!(record_oneshot, c_oneshot);

fn run(
    epoll: &mut impl Epoll,
    mut ours: UnixStream,
    mut theirs: UnixStream,
    rearms: bool,
) -> io::Result<Vec<Seen>> {
    ours.set_nonblocking(true)?;
    let mut seen = Vec::new();
    for step in SCRIPT {
        seen.push(match step {
            Step::Write(n) => {
                theirs.write_all(&b"abcdefgh"[..n])?;
                Seen::Moved(n)
            }
            Step::Read(n) => Seen::Moved(ours.read(&mut vec![0; n])?),
            Step::ReadAll => {
                let mut buffer = [0; 64];
                let mut total = 0;
                loop {
                    match ours.read(&mut buffer) {
                        Ok(0) => break,
                        Ok(n) => total += n,
                        Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                        Err(error) => return Err(error),
                    }
                }
                Seen::Moved(total)
            }
            Step::Wait if epoll.wait()? => Seen::Event,
            Step::Wait => Seen::Nothing,
            Step::Rearm if rearms => {
                epoll.rearm(&ours)?;
                Seen::Rearmed
            }
            Step::Rearm => Seen::Skipped,
        });
    }
    Ok(seen)
}

/// One row of the picture: which chapter, and what its run saw.
struct Row {
    name: &'static str,
    chapter: &'static str,
    seen: Vec<Seen>,
}

fn record() -> io::Result<Vec<Row>> {
    Ok(vec![
        Row {
            name: "level-triggered",
            chapter: "chapter 1",
            seen: record_level(false)?,
        },
        Row {
            name: "edge-triggered",
            chapter: "chapter 2",
            seen: record_edge(false)?,
        },
        Row {
            name: "one-shot",
            chapter: "chapter 3",
            seen: record_oneshot(true)?,
        },
    ])
}

const LEFT: f64 = 140.0;
const COLUMN: f64 = 54.0;
const ROW: f64 = 50.0;
/// Where the first chapter's row begins.
const ROWS_TOP: f64 = 84.0;

fn column_middle(i: usize) -> f64 {
    LEFT + COLUMN * i as f64 + COLUMN / 2.0
}

/// Runs the script on each chapter and draws what the waits returned.
pub fn draw() -> io::Result<String> {
    let rows = record()?;
    let width = LEFT + COLUMN * SCRIPT.len() as f64 + 10.0;
    let legend_top = ROWS_TOP + ROW * rows.len() as f64 + 14.0;
    let mut svg = Svg::new(width, legend_top + 36.0);
    let small = Font::boxed(12.0);

    // The script, along the top, and how many bytes wait unread after each
    // step. The counts come from the first run; every run moved the same
    // bytes, or `record` would have failed on a short read below.
    svg.text(0.0, 30.0, "step", Font::page(13.0));
    svg.text(0.0, 62.0, "bytes unread", Font::page(13.0));
    let mut unread = 0;
    for (i, step) in SCRIPT.iter().enumerate() {
        let x = LEFT + COLUMN * i as f64 + 3.0;
        let (text, fill) = match step {
            Step::Write(n) => (format!("write {n}"), Fill::solid(svg::GREEN)),
            Step::Read(n) => (format!("read {n}"), Fill::solid(svg::BLUE)),
            Step::ReadAll => ("read all".to_string(), Fill::solid(svg::BLUE)),
            Step::Rearm => ("re-arm".to_string(), Fill::solid(svg::PURPLE)),
            Step::Wait => ("wait".to_string(), Fill::outline(svg::INK)),
        };
        let font = if *step == Step::Wait {
            Font::page(12.0).bold(false)
        } else {
            small
        };
        svg.label((x, 12.0, COLUMN - 6.0, 26.0), fill, &text, font);
        match rows[0].seen[i] {
            Seen::Moved(n) if matches!(step, Step::Write(_)) => unread += n,
            Seen::Moved(n) => unread -= n,
            _ => {}
        }
        svg.text(
            column_middle(i),
            62.0,
            &unread.to_string(),
            Font::page(13.0).middle(),
        );
        if matches!(step, Step::Write(_) | Step::Read(_) | Step::ReadAll) {
            // The writes and reads, carried down through the rows.
            let bottom = ROWS_TOP + ROW * rows.len() as f64;
            svg.line(
                (column_middle(i), 70.0),
                (column_middle(i), bottom),
                svg::INK,
                true,
            );
        }
    }

    for (r, row) in rows.iter().enumerate() {
        let top = ROWS_TOP + ROW * r as f64;
        let middle = top + ROW / 2.0;
        svg.text(0.0, middle - 3.0, row.name, Font::page(14.0));
        svg.text(
            0.0,
            middle + 14.0,
            row.chapter,
            Font::page(12.0).bold(false),
        );
        for (i, (seen, step)) in row.seen.iter().zip(SCRIPT).enumerate() {
            let x = LEFT + COLUMN * i as f64 + 3.0;
            let (y, w, h) = (middle - 13.0, COLUMN - 6.0, 26.0);
            match seen {
                Seen::Event => svg.label((x, y, w, h), Fill::solid(svg::AMBER), "event", small),
                Seen::Nothing => svg.label(
                    (x, y, w, h),
                    Fill::outline(svg::INK).dashed(),
                    "none",
                    Font::page(12.0).bold(false),
                ),
                Seen::Rearmed => svg.label((x, y, w, h), Fill::solid(svg::PURPLE), "MOD", small),
                Seen::Skipped => svg.text(
                    column_middle(i),
                    middle + 5.0,
                    "\u{2013}",
                    Font::page(14.0).middle(),
                ),
                Seen::Moved(n) => {
                    let expected = match step {
                        Step::Write(n) | Step::Read(n) => n,
                        _ => *n,
                    };
                    if *n != expected {
                        return Err(io::Error::other(format!(
                            "{}: step {i} moved {n} bytes, not {expected}",
                            row.name
                        )));
                    }
                }
            }
        }
    }

    // The legend.
    let y = legend_top;
    svg.label(
        (0.0, y, 48.0, 22.0),
        Fill::solid(svg::AMBER),
        "event",
        small,
    );
    svg.text(
        56.0,
        y + 15.0,
        "the wait returned the socket",
        Font::page(12.0).bold(false),
    );
    svg.label(
        (250.0, y, 48.0, 22.0),
        Fill::outline(svg::INK).dashed(),
        "none",
        Font::page(12.0).bold(false),
    );
    svg.text(
        306.0,
        y + 15.0,
        "it returned no event (zero timeout)",
        Font::page(12.0).bold(false),
    );
    svg.label(
        (530.0, y, 48.0, 22.0),
        Fill::solid(svg::PURPLE),
        "MOD",
        small,
    );
    svg.text(
        586.0,
        y + 15.0,
        "re-armed with epoll_ctl",
        Font::page(12.0).bold(false),
    );

    Ok(svg.finish(
        "The same bytes, level-triggered, edge-triggered and one-shot",
        "Recorded from chapters 1 to 3's Poll on a Unix socket pair: which waits returned an event as bytes were written and read.",
    ))
}
