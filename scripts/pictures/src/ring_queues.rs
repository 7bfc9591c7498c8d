//! The completion page's two queues: the async example's demo over the
//! ring (five requests, request 1 given 500 ms for an 800 ms delay), with
//! the ring's record of what each turn sent with its one `io_uring_enter`
//! and what completions it read after its wait.
//!
//! Entries name their socket by fd, and completions their operation by
//! `user_data`: the recorder maps both back to requests, through the fds
//! the five connects were sent with, in the order the tasks were spawned.
//! The answers come 200 ms apart and the timer fires 100 ms from any of
//! them, so the turns are the same on every run; the recorder checks them
//! against the plan and runs again if a run went otherwise.

use std::collections::HashMap;
use std::io;

use d_ready_list::delay_server::DelayServer;

use crate::client;
use crate::reactor::Reactor;
use crate::svg::{self, Fill, Font, Svg};
use crate::uring::ffi;

const COLORS: [&str; 5] = [svg::BLUE, svg::AMBER, svg::GREEN, svg::PURPLE, svg::ORANGE];

/// One box: what, and for which request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    what: String,
    request: Option<usize>,
}

/// A turn: what its enter sent, and what it read.
type Turn = (Vec<Item>, Vec<Item>);

/// Each turn, as `what:request` words: sent, then read.
const PLAN: [(&str, &str); 8] = [
    (
        "connect:0 connect:1 connect:2 connect:3 connect:4",
        "connect:0 connect:1 connect:2 connect:3 connect:4",
    ),
    (
        "send:0 send:1 send:2 send:3 send:4",
        "send:0 send:1 send:2 send:3 send:4",
    ),
    ("recv:0 recv:1 recv:2 recv:3 recv:4", "recv:4"),
    ("close:4", "recv:3"),
    ("close:3", ""),
    ("cancel:1", "cancel:1 cancelled:1"),
    ("", "recv:2"),
    ("close:2", "recv:0"),
];

const ATTEMPTS: usize = 5;

fn error(what: impl std::fmt::Display) -> io::Error {
    io::Error::other(what.to_string())
}

fn words(items: &[Item]) -> String {
    let word = |item: &Item| match item.request {
        Some(request) => format!("{}:{request}", item.what),
        None => item.what.clone(),
    };
    items.iter().map(word).collect::<Vec<_>>().join(" ")
}

fn record() -> io::Result<Vec<Turn>> {
    let mut unlucky = Vec::new();
    for _ in 0..ATTEMPTS {
        let turns = record_once()?;
        let seen: Vec<(String, String)> = turns
            .iter()
            .map(|(sent, read)| (words(sent), words(read)))
            .collect();
        let planned: Vec<(String, String)> = PLAN
            .iter()
            .map(|(sent, read)| (sent.to_string(), read.to_string()))
            .collect();
        if seen == planned {
            return Ok(turns);
        }
        unlucky.push(format!("{seen:?}"));
    }
    Err(error(format!(
        "{ATTEMPTS} runs did not go as planned: {}",
        unlucky.join("; ")
    )))
}

fn record_once() -> io::Result<Vec<Turn>> {
    let server = DelayServer::start()?;
    let reactor = Reactor::with_ring()?;
    let ring = reactor.ring().ok_or_else(|| error("no ring"))?;
    ring.record();
    let requests = client::demo_requests();
    crate::uring::client::run_on(&reactor, server.addr(), &requests, |_| Ok(()))?;
    let turns = ring.recording();
    // Sockets, then operations, back to requests.
    let mut request_of_fd: HashMap<i32, usize> = HashMap::new();
    let mut fd_of_op: HashMap<u64, i32> = HashMap::new();
    // A slot is reused only after its completion: the latest entry sent
    // with a `user_data` is the one a completion answers.
    let mut name_of_op: HashMap<u64, &str> = HashMap::new();
    let mut drawn = Vec::new();
    for turn in &turns {
        let mut sent = Vec::new();
        for sqe in &turn.sent {
            let (what, fd) = match sqe.opcode {
                ffi::IORING_OP_CONNECT => {
                    let next = request_of_fd.len();
                    request_of_fd.insert(sqe.fd, next);
                    ("connect", sqe.fd)
                }
                ffi::IORING_OP_SEND => ("send", sqe.fd),
                ffi::IORING_OP_RECV => ("recv", sqe.fd),
                ffi::IORING_OP_CLOSE => ("close", sqe.fd),
                ffi::IORING_OP_ASYNC_CANCEL => {
                    let target = fd_of_op.get(&sqe.addr).copied().unwrap_or(-1);
                    fd_of_op.insert(sqe.user_data, target);
                    ("cancel", target)
                }
                other => return Err(error(format!("an entry of opcode {other}"))),
            };
            fd_of_op.insert(sqe.user_data, fd);
            name_of_op.insert(sqe.user_data, what);
            sent.push(item(what, fd, &request_of_fd));
        }
        let mut read = Vec::new();
        for cqe in &turn.completed {
            let fd = fd_of_op.get(&cqe.user_data).copied().unwrap_or(-1);
            let what = name_of_op.get(&cqe.user_data).copied().unwrap_or("?");
            let what = if cqe.res == -libc::ECANCELED {
                "cancelled"
            } else {
                what
            };
            read.push(item(what, fd, &request_of_fd));
        }
        drawn.push((sent, read));
    }
    Ok(drawn)
}

fn item(what: &str, fd: i32, requests: &HashMap<i32, usize>) -> Item {
    Item {
        what: what.to_string(),
        request: requests.get(&fd).copied(),
    }
}

const TOP: f64 = 52.0;
const ROW: f64 = 40.0;
const SQ_X: f64 = 36.0;
const CQ_X: f64 = 394.0;
const BOX: f64 = 66.0;
const GAP: f64 = 3.0;
// Drawn no wider than the book's column, so that it is not scaled down.
const WIDTH: f64 = 745.0;

pub fn draw() -> io::Result<String> {
    let turns = record()?;
    let height = TOP + ROW * turns.len() as f64 + 52.0;
    let mut svg = Svg::new(WIDTH, height);
    svg.text(0.0, 18.0, "turn", Font::page(13.0));
    svg.text(
        SQ_X,
        18.0,
        "submission queue: one io_uring_enter",
        Font::page(13.0),
    );
    svg.text(
        CQ_X,
        18.0,
        "completion queue: read after the wait",
        Font::page(13.0),
    );
    svg.text(
        SQ_X,
        36.0,
        "(each box: an operation, and its request r0\u{2013}r4)",
        Font::page(11.0).bold(false),
    );
    for (t, (sent, read)) in turns.iter().enumerate() {
        let y = TOP + ROW * t as f64;
        svg.text(0.0, y + 19.0, &(t + 1).to_string(), Font::page(14.0));
        boxes(&mut svg, SQ_X, y, sent, "no call");
        boxes(&mut svg, CQ_X, y, read, "none: a timer");
    }
    let y = TOP + ROW * turns.len() as f64 + 14.0;
    svg.text(
        0.0,
        y,
        "A close posts no completion. A cancel posts its own, beside its target's.",
        Font::page(12.0).bold(false),
    );
    svg.text(
        0.0,
        y + 16.0,
        "The cancelled request's socket is closed by close(2), outside the ring, \
         once its receive completes.",
        Font::page(12.0).bold(false),
    );
    Ok(svg.finish(
        "The ring's two queues, turn by turn",
        "Eight turns of the async example's demo over io_uring. Left, the entries each turn \
         sent to the kernel with its one io_uring_enter: five connects, five sends, five \
         receives, then a close after each answer, and a cancel for the request that \
         timed out. Right, the completions read after each wait: the connects, the sends, then \
         the answers one by one, r4 first, and request 1's receive, cancelled.",
    ))
}

fn boxes(svg: &mut Svg, x: f64, y: f64, items: &[Item], empty: &str) {
    if items.is_empty() {
        svg.text(x, y + 19.0, empty, Font::page(12.0).bold(false));
    }
    for (i, item) in items.iter().enumerate() {
        let left = x + (BOX + GAP) * i as f64;
        let color = item.request.map_or(svg::GREY, |r| COLORS[r]);
        let fill = match item.what.as_str() {
            "cancel" | "cancelled" => Fill::solid(color).dashed(),
            _ => Fill::solid(color),
        };
        let label = match item.request {
            Some(r) => format!("{} r{r}", item.what),
            None => item.what.clone(),
        };
        svg.label((left, y, BOX, 28.0), fill, &label, Font::boxed(10.0));
    }
}
