//! The ready list's turns beside an endless sender, recorded from chapter
//! 4's own `Worker` against the embedded delay server: once with the
//! a budget of 4 KiB per turn (one read), once with `Budget::Drain`.
//!
//! Times vary from run to run; the order of turns need not. The recorder
//! sets the stage before it records anything: it sends every request in one
//! turn, then sleeps while the answers arrive, the endless one at once and
//! the three small ones 100, 250 and 400 ms later. So the first recorded
//! wait finds the endless connection first and the small ones after it in
//! the order of their delays, each small answer already whole in its socket,
//! and the endless socket full. From there on, nothing the recorder draws
//! depends on timing: which connection gets each turn follows from the
//! budget and from how many reads each answer takes.
//!
//! Setting the stage does depend on timing, on a machine busy enough to
//! hold a server thread back for a tenth of a second. So the recorder
//! checks the stage before it records, and if it was not set as planned,
//! it starts the whole run again, a few times at most.

use std::io;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use d_ready_list::Token;
use d_ready_list::client::Budget;
use d_ready_list::delay_server::DelayServer;
use d_ready_list::worker::Worker;

use crate::svg::{self, Fill, Font, Svg};

/// A connection in the picture.
struct Connection {
    letter: &'static str,
    color: &'static str,
    /// The small ones' delay and body length; `None` for the endless one.
    answer: Option<(u64, usize)>,
    legend: &'static str,
}

/// The endless sender first, then three small answers that take three
/// turns, one turn and two turns of 4 KiB.
const CONNECTIONS: [Connection; 4] = [
    Connection {
        letter: "E",
        color: svg::ORANGE,
        answer: None,
        legend: "endless body",
    },
    Connection {
        letter: "a",
        color: svg::BLUE,
        answer: Some((100, 10_000)),
        legend: "10 000 bytes: 3 turns",
    },
    Connection {
        letter: "b",
        color: svg::GREEN,
        answer: Some((250, 100)),
        legend: "100 bytes: 1 turn",
    },
    Connection {
        letter: "c",
        color: svg::PURPLE,
        answer: Some((400, 6_000)),
        legend: "6 000 bytes: 2 turns",
    },
];

/// The budget the picture shows: small, so that each small answer takes
/// a few turns.
const BUDGET: usize = 4096;

/// Time for the connects to finish before the first wait.
const CONNECTS: Duration = Duration::from_millis(50);
/// Time for every answer to arrive before recording starts: longer than
/// the longest delay, with room to spare.
const ANSWERS: Duration = Duration::from_millis(650);
/// How many times to try to set the stage.
const ATTEMPTS: usize = 5;
/// How many turns to record with the budget: enough for every small answer
/// and a few turns of the endless body alone.
const TURNS: usize = 6;
/// How long the drain may run before the recorder stops the server, which
/// ends the endless body and with it the drain.
const DRAIN_STOP: Duration = Duration::from_millis(300);

/// One turn given to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    /// Index into `CONNECTIONS`.
    who: usize,
    /// Its answer was complete by the end of this turn.
    answered: bool,
}

#[derive(Debug)]
struct Recording {
    /// The turns of the ready list, each the slots it gave, in order.
    turns: Vec<Vec<Slot>>,
    /// Connections still on the ready list when the recording ended, never
    /// having had a turn.
    waiting: Vec<usize>,
}

fn error(what: impl std::fmt::Display) -> io::Error {
    io::Error::other(what.to_string())
}

/// Records a run, starting again while the stage was not set as planned.
fn record(budget: Budget) -> io::Result<Recording> {
    let mut unlucky = Vec::new();
    for _ in 0..ATTEMPTS {
        match record_once(budget)? {
            Ok(recording) => return Ok(recording),
            Err(why) => unlucky.push(why),
        }
    }
    Err(error(format!(
        "{ATTEMPTS} attempts could not set the stage: {}",
        unlucky.join("; ")
    )))
}

/// One run: `Ok(Err(why))` if the stage was not set as planned.
fn record_once(budget: Budget) -> io::Result<Result<Recording, String>> {
    let server = DelayServer::start()?;
    let addr = server.addr();
    let mut worker = Worker::new(Instant::now(), budget)?;
    let tokens = open_all(&mut worker, addr)?;
    let who = |token: Token| tokens.iter().position(|&t| t == token);

    // Setting the stage: one turn sends every request. A connect is
    // reported writable only, so that turn reads nothing, not even with
    // the drain budget.
    thread::sleep(CONNECTS);
    let mut done = Vec::new();
    worker.wait(Some(Duration::from_secs(5))).map_err(error)?;
    worker.turn(&mut done).map_err(error)?;
    if worker.sending() != 0 || !worker.ready_list().is_empty() {
        return Ok(Err(
            "the connects did not all finish before the first wait".into()
        ));
    }
    thread::sleep(ANSWERS);

    // The drain never ends by itself: stop the server, and the endless
    // body, from another thread.
    let mut server = Some(server);
    let stopper = match (budget, server.take()) {
        (Budget::Drain, Some(server)) => Some(thread::spawn(move || {
            thread::sleep(DRAIN_STOP);
            drop(server);
        })),
        (_, kept) => {
            server = kept;
            None
        }
    };

    let mut turns = Vec::new();
    let mut waiting = Vec::new();
    for _ in 0..TURNS {
        worker.wait(Some(Duration::ZERO)).map_err(error)?;
        let list: Vec<usize> = worker
            .ready_list()
            .iter()
            .map(|&token| who(token).ok_or_else(|| error("a token we did not open")))
            .collect::<io::Result<_>>()?;
        if turns.is_empty() && list != [0, 1, 2, 3] {
            return Ok(Err(format!(
                "the answers arrived out of order: {list:?}, not [0, 1, 2, 3]"
            )));
        }
        let before = worker.stats().turns;
        let result = worker.turn(&mut done);
        let given = worker.stats().turns - before;
        let slots = list[..given]
            .iter()
            .map(|&who| Slot {
                who,
                answered: done.iter().any(|completed| completed.request == who),
            })
            .collect();
        turns.push(slots);
        if let Err(problem) = result {
            // Only the drain may end this way: its one turn lasts until the
            // server stops, and then the endless body ends early.
            if budget != Budget::Drain || given != 1 {
                return Err(error(problem));
            }
            waiting = list[given..].to_vec();
            break;
        }
    }
    // The worker first: closing the endless connection ends its sender's
    // thread at once, which the server's drop waits for.
    drop(worker);
    drop(server);
    if let Some(stopper) = stopper {
        stopper
            .join()
            .map_err(|_| error("the thread that stops the server panicked"))?;
    }
    Ok(Ok(Recording { turns, waiting }))
}

fn open_all(worker: &mut Worker, addr: SocketAddr) -> io::Result<Vec<Token>> {
    CONNECTIONS
        .iter()
        .enumerate()
        .map(|(request, connection)| match connection.answer {
            None => worker.open_endless(addr, request),
            Some((delay, length)) => {
                let path = format!("/{delay}/{}", "x".repeat(length));
                worker.open(addr, request, &path)
            }
        })
        .collect::<Result<_, _>>()
        .map_err(error)
}

const LEFT: f64 = 175.0;
const SLOT: f64 = 44.0;
const GAP: f64 = 4.0;
const TURN_GAP: f64 = 16.0;
const ROW: f64 = 74.0;

/// Records both runs and draws them, one row each.
pub fn draw() -> io::Result<String> {
    let budget = record(Budget::Bytes(BUDGET))?;
    let drain = record(Budget::Drain)?;
    let slots: usize = budget.turns.iter().map(Vec::len).sum();
    let width =
        LEFT + slots as f64 * (SLOT + GAP) + (budget.turns.len() - 1) as f64 * TURN_GAP + 10.0;
    let mut svg = Svg::new(width, 2.0 * ROW + 80.0);

    let rows = [
        ("4 KiB per turn", "Budget::Bytes(4096)", &budget),
        ("drain to WouldBlock", "Budget::Drain", &drain),
    ];
    for (r, (name, budget_name, recording)) in rows.into_iter().enumerate() {
        let top = 24.0 + ROW * r as f64;
        svg.text(0.0, top + 16.0, name, Font::page(14.0));
        svg.text(
            0.0,
            top + 33.0,
            budget_name,
            Font::page(12.0).bold(false).mono(),
        );
        // With the drain, the one turn never ended: it read until the
        // recorder stopped the sender. Behind it, the rest of the list
        // waited.
        let waiting_width = recording.waiting.len() as f64 * (SLOT + GAP);
        let bar_end = width - 10.0 - waiting_width - 8.0;
        let mut x = LEFT;
        for (t, turn) in recording.turns.iter().enumerate() {
            let start = x;
            for slot in turn {
                let connection = &CONNECTIONS[slot.who];
                let text = if slot.answered {
                    format!("{} \u{2713}", connection.letter)
                } else {
                    connection.letter.to_string()
                };
                svg.label(
                    (x, top, SLOT, 36.0),
                    Fill::solid(connection.color),
                    &text,
                    Font::boxed(15.0),
                );
                x += SLOT + GAP;
            }
            // The round, bracketed underneath.
            let end = if recording.waiting.is_empty() {
                x - GAP
            } else {
                bar_end
            };
            svg.line((start, top + 42.0), (end, top + 42.0), svg::INK, false);
            svg.line((start, top + 38.0), (start, top + 42.0), svg::INK, false);
            svg.line((end, top + 38.0), (end, top + 42.0), svg::INK, false);
            let label = match t {
                _ if !recording.waiting.is_empty() => format!(
                    "round 1, until the recorder stopped the server {} ms in",
                    DRAIN_STOP.as_millis()
                ),
                0 => "round 1".to_string(),
                _ => (t + 1).to_string(),
            };
            svg.text(
                (start + end) / 2.0,
                top + 56.0,
                &label,
                Font::page(12.0).bold(false).middle(),
            );
            x += TURN_GAP;
        }
        if !recording.waiting.is_empty() {
            let x = LEFT + SLOT + GAP;
            svg.label(
                (x, top + 6.0, bar_end - x, 24.0),
                Fill::outline(svg::ORANGE).dashed(),
                "E reads on: WouldBlock never comes \u{2192}",
                Font::page(13.0),
            );
            let mut x = bar_end + 8.0;
            for &who in &recording.waiting {
                let connection = &CONNECTIONS[who];
                svg.label(
                    (x, top, SLOT, 36.0),
                    Fill::outline(connection.color).dashed(),
                    connection.letter,
                    Font::page(15.0),
                );
                x += SLOT + GAP;
            }
            svg.text(
                bar_end + 8.0 + waiting_width / 2.0,
                top + 56.0,
                "no turn",
                Font::page(12.0).bold(false).middle(),
            );
        }
    }

    // The legend: who is who.
    let y = 24.0 + 2.0 * ROW + 8.0;
    let mut x = 0.0;
    for connection in &CONNECTIONS {
        svg.label(
            (x, y, 24.0, 22.0),
            Fill::solid(connection.color),
            connection.letter,
            Font::boxed(13.0),
        );
        svg.text(
            x + 30.0,
            y + 15.0,
            connection.legend,
            Font::page(12.0).bold(false),
        );
        x += 30.0 + 7.0 * connection.legend.len() as f64 + 24.0;
    }
    svg.text(
        0.0,
        y + 40.0,
        "\u{2713} its answer is complete. Each box is one turn for one connection, in the order they came; a bracket is one round of the ready list.",
        Font::page(12.0).bold(false),
    );

    Ok(svg.finish(
        "The ready list's turns beside an endless sender",
        "Recorded from chapter 4's Worker: with one read per turn, the small answers are served between reads of the endless body; draining to WouldBlock, the endless body's first turn never ends.",
    ))
}
