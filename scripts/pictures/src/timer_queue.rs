//! The futures page's timer queue beside the ready sockets: the async
//! example's demo (five requests, request 1 given 500 ms for an 800 ms
//! delay), run on the example's own reactor with its record of every wait.
//!
//! The answers come 200 ms apart and the hurried request's timer fires
//! 100 ms away from any answer, so each wait ends for one reason, and the
//! same one on every run. The recorder checks that the run went as
//! planned, and starts it again if it did not (a few times at most); the
//! timeouts it draws are the ones the reactor asked of `epoll_wait`,
//! rounded to 100 ms.

use std::io;
use std::time::Duration;

use d_ready_list::delay_server::DelayServer;

use crate::client;
use crate::reactor::Reactor;
use crate::svg::{self, Fill, Font, Svg};
use crate::trace::Turn;

/// Each request's colour, by request index.
const COLORS: [&str; 5] = [svg::BLUE, svg::AMBER, svg::GREEN, svg::PURPLE, svg::ORANGE];

/// What ended a wait, as planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Every connect finished: the sockets became writable.
    Connected,
    /// Request i's answer arrived: its socket became readable.
    Answer(usize),
    /// Request i's timer fired.
    Timer(usize),
}

/// The plan: for each wait, the requests in the timer queue (earliest
/// first) and what ends it.
const PLAN: [(&[usize], Ended); 6] = [
    (&[1, 0, 2, 3, 4], Ended::Connected),
    (&[1, 0, 2, 3, 4], Ended::Answer(4)),
    (&[1, 0, 2, 3], Ended::Answer(3)),
    (&[1, 0, 2], Ended::Timer(1)),
    (&[0, 2], Ended::Answer(2)),
    (&[0], Ended::Answer(0)),
];

const ATTEMPTS: usize = 5;

/// One wait, as drawn.
#[derive(Debug)]
struct Wait {
    queued: Vec<usize>,
    /// The timeout asked of epoll_wait, in ms, rounded to 100.
    timeout_ms: u128,
    ended: Ended,
}

fn error(what: impl std::fmt::Display) -> io::Error {
    io::Error::other(what.to_string())
}

fn record() -> io::Result<Vec<Wait>> {
    let mut unlucky = Vec::new();
    for _ in 0..ATTEMPTS {
        match record_once()? {
            Ok(waits) => return Ok(waits),
            Err(why) => unlucky.push(why),
        }
    }
    Err(error(format!(
        "{ATTEMPTS} runs did not go as planned: {}",
        unlucky.join("; ")
    )))
}

/// One run: `Ok(Err(why))` if it did not go as planned.
fn record_once() -> io::Result<Result<Vec<Wait>, String>> {
    let server = DelayServer::start()?;
    let reactor = Reactor::new()?;
    reactor.trace().record();
    client::run_on(
        &reactor,
        server.addr(),
        &client::demo_requests(),
        |_| Ok(()),
    )?;
    let turns = reactor.trace().recording();
    if turns.len() != PLAN.len() {
        return Ok(Err(format!("{} waits, not {}", turns.len(), PLAN.len())));
    }
    let mut waits = Vec::new();
    for (turn, (queued, planned)) in turns.iter().zip(PLAN) {
        let wait = understand(turn)?;
        if wait.queued != queued || wait.ended != planned {
            return Ok(Err(format!("a wait went otherwise: {wait:?}")));
        }
        waits.push(wait);
    }
    Ok(Ok(waits))
}

/// Tokens are handed out in the order the requests connect, after the
/// unpark's token 0; timers are numbered in the order they are set. Both
/// follow the order the tasks were spawned in, the requests' order.
fn understand(turn: &Turn) -> io::Result<Wait> {
    let timeout = turn
        .timeout
        .ok_or_else(|| error("a wait with no timeout: the demo always has timers"))?;
    let queued = turn.queued.iter().map(|key| key.seq() as usize).collect();
    let readable: Vec<usize> = turn
        .events
        .iter()
        .filter(|(_, readable, _)| *readable)
        .map(|(token, _, _)| token.0 - 1)
        .collect();
    let ended = match (turn.fired.as_slice(), readable.as_slice()) {
        ([], []) if turn.events.len() == 5 => Ended::Connected,
        ([], [request]) => Ended::Answer(*request),
        ([timer], []) => Ended::Timer(timer.seq() as usize),
        _ => {
            return Err(error(format!(
                "a wait ended for no reason or for two: {turn:?}"
            )));
        }
    };
    Ok(Wait {
        queued,
        timeout_ms: rounded(timeout),
        ended,
    })
}

fn rounded(timeout: Duration) -> u128 {
    (timeout.as_millis() + 50) / 100 * 100
}

fn seconds(ms: u128) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{}.{} s", ms / 1000, ms % 1000 / 100)
    }
}

const TOP: f64 = 52.0;
const ROW: f64 = 44.0;
const QUEUE_X: f64 = 70.0;
const BOX: f64 = 54.0;
const WAIT_X: f64 = 400.0;
const ENDED_X: f64 = 590.0;
const WIDTH: f64 = 830.0;

pub fn draw() -> io::Result<String> {
    let waits = record()?;
    let requests = client::demo_requests();
    let height = TOP + ROW * waits.len() as f64 + 40.0;
    let mut svg = Svg::new(WIDTH, height);
    svg.text(0.0, 18.0, "wait", Font::page(13.0));
    svg.text(
        QUEUE_X,
        18.0,
        "the timer queue, earliest first",
        Font::page(13.0),
    );
    svg.text(WAIT_X, 18.0, "epoll_wait's timeout", Font::page(13.0));
    svg.text(ENDED_X, 18.0, "what ended the wait", Font::page(13.0));
    svg.text(
        QUEUE_X,
        36.0,
        "(each box: a request, and the timeout it was given)",
        Font::page(11.0).bold(false),
    );
    for (w, wait) in waits.iter().enumerate() {
        let y = TOP + ROW * w as f64;
        svg.text(0.0, y + 19.0, &(w + 1).to_string(), Font::page(14.0));
        for (i, &request) in wait.queued.iter().enumerate() {
            let x = QUEUE_X + (BOX + 4.0) * i as f64;
            let fill = if i == 0 {
                // The earliest deadline is the one epoll_wait is given.
                Fill {
                    stroke: Some(svg::INK),
                    ..Fill::solid(COLORS[request])
                }
            } else {
                Fill::solid(COLORS[request])
            };
            let due = seconds(requests[request].timeout.as_millis());
            svg.label(
                (x, y, BOX, 28.0),
                fill,
                &format!("r{request} {due}"),
                Font::boxed(11.0),
            );
        }
        // The earliest deadline, less the time now, is the timeout.
        let full = QUEUE_X + (BOX + 4.0) * PLAN[0].0.len() as f64;
        svg.arrow(
            &[(full, y + 14.0), (WAIT_X - 6.0, y + 14.0)],
            svg::INK,
            true,
        );
        svg.label(
            (WAIT_X, y, 150.0, 28.0),
            Fill::outline(svg::INK),
            &seconds(wait.timeout_ms),
            Font::page(13.0).mono(),
        );
        svg.arrow(
            &[(WAIT_X + 150.0, y + 14.0), (ENDED_X - 4.0, y + 14.0)],
            svg::INK,
            false,
        );
        let (text, fill) = match wait.ended {
            Ended::Connected => (
                "r0\u{2013}r4 writable: connected".to_string(),
                Fill::solid(svg::GREY),
            ),
            Ended::Answer(r) => (format!("r{r} readable: its answer"), Fill::solid(COLORS[r])),
            Ended::Timer(r) => (
                format!("r{r}'s timer: it times out"),
                Fill {
                    stroke: Some(svg::INK),
                    ..Fill::solid(COLORS[r])
                }
                .dashed(),
            ),
        };
        svg.label((ENDED_X, y, 230.0, 28.0), fill, &text, Font::boxed(12.0));
    }
    let y = TOP + ROW * waits.len() as f64 + 14.0;
    svg.text(
        0.0,
        y,
        "Rounded to 100 ms. Each request's timeout is a timer; a request that finishes drops it.",
        Font::page(12.0).bold(false),
    );
    Ok(svg.finish(
        "The timer queue beside the ready sockets",
        "Six waits of the async example's demo. Each row shows the timer queue, earliest \
         deadline first, the timeout epoll_wait was given (the time to the earliest deadline), \
         and what ended the wait: the connects, an answer, or request 1's 500 ms timer.",
    ))
}
