//! `scripts/pictures OUTDIR`: writes the book's diagrams into OUTDIR, as
//! SVG. `scripts/book generate` runs it into `book/src/generated/`, and
//! `scripts/book check` runs it again and compares, byte for byte.
//!
//! Two kinds of picture. Schematics (epoll's two lists, the batch with the
//! cleanup list) are drawn from constants. Pictures of behaviour (the same
//! bytes under three triggering modes, the ready list's turns, the async
//! example's timer queue and its ring's two queues) are drawn
//! from a run of the chapters' own code, recorded as the tool runs; each
//! run is arranged so that what is drawn is the same every time.

mod accept_queues;
mod cleanup;
mod lists;
mod ring_queues;
mod svg;
mod timer_queue;
mod triggers;
mod turns;

// The async example's own modules, as its test includes them: the timer
// queue's picture is recorded from a run of its demo. It uses only some of
// what they offer.
#[allow(dead_code)]
#[path = "../../../d-ready-list/examples/async_client/client.rs"]
mod client;
#[allow(dead_code)]
#[path = "../../../d-ready-list/examples/async_client/executor.rs"]
mod executor;
#[allow(dead_code)]
#[path = "../../../d-ready-list/examples/async_client/reactor.rs"]
mod reactor;
#[allow(dead_code)]
#[path = "../../../d-ready-list/examples/async_client/tcp.rs"]
mod tcp;
#[allow(dead_code)]
#[path = "../../../d-ready-list/examples/async_client/time.rs"]
mod time;
#[allow(dead_code)]
#[path = "../../../d-ready-list/examples/async_client/timers.rs"]
mod timers;
#[allow(dead_code)]
#[path = "../../../d-ready-list/examples/async_client/trace.rs"]
mod trace;
#[allow(dead_code)]
#[path = "../../../d-ready-list/examples/async_client/unpark.rs"]
mod unpark;
// The ring's two queues are recorded from a run of the demo over it.
#[allow(dead_code)]
#[path = "../../../d-ready-list/examples/async_client/uring/mod.rs"]
mod uring;

use std::fs;
use std::io;
use std::path::Path;
use std::process::ExitCode;

/// Draws one picture: the whole SVG document.
type Draw = fn() -> io::Result<String>;

/// Each picture: its file name, and how to draw it.
const PICTURES: [(&str, Draw); 7] = [
    ("epoll-lists.svg", || Ok(lists::draw())),
    ("triggers.svg", triggers::draw),
    ("turns.svg", turns::draw),
    ("cleanup.svg", || Ok(cleanup::draw())),
    ("timer-queue.svg", timer_queue::draw),
    ("accept-queues.svg", || Ok(accept_queues::draw())),
    ("ring-queues.svg", ring_queues::draw),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir] = args.as_slice() else {
        eprintln!("usage: pictures OUTDIR");
        return ExitCode::from(2);
    };
    match write_all(Path::new(dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pictures: {error}");
            ExitCode::FAILURE
        }
    }
}

fn write_all(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    for (name, draw) in PICTURES {
        let svg = draw().map_err(|error| io::Error::other(format!("{name}: {error}")))?;
        fs::write(dir.join(name), svg)?;
    }
    Ok(())
}
