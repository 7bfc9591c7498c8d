//! The server page's schematic: how connections reach the workers, with
//! one listener shared by every worker's epoll (`EPOLLEXCLUSIVE`), and with
//! one `SO_REUSEPORT` listener per worker. Drawn from the constants below,
//! not from a run.

use crate::svg::{self, Anchor, Fill, Font, Svg};

const WORKERS: usize = 3;
/// Connections waiting in the shared accept queue.
const QUEUED: usize = 4;
/// Which worker the kernel wakes in the shared picture: one asleep in
/// `epoll_wait`, the first registered.
const WOKEN: usize = 0;
/// In the reuseport picture, the queue each connection was hashed to.
const HASHED: [usize; 4] = [2, 0, 1, 2];

const PANEL: f64 = 440.0;
const WORKER_Y: f64 = 300.0;
const WORKER_W: f64 = 130.0;
const WORKER_GAP: f64 = 14.0;
const SLOT: f64 = 22.0;

pub fn draw() -> String {
    let mut svg = Svg::new(2.0 * PANEL + 20.0, 400.0);
    let title = Font::page(15.0);
    let note = Font::page(12.0).bold(false);

    // Left: one listener, one queue, every epoll watching it.
    svg.text(
        0.0,
        24.0,
        "--listener shared: one listener, EPOLLEXCLUSIVE",
        title,
    );
    incoming(&mut svg, 20.0, 64.0);
    let queue_x = 60.0;
    svg.text(queue_x, 108.0, "accept queue (the listener's)", note);
    for i in 0..QUEUED {
        svg.rect(
            queue_x + i as f64 * (SLOT + 4.0),
            116.0,
            SLOT,
            SLOT,
            Fill::solid(svg::AMBER),
        );
    }
    svg.rect(
        queue_x + QUEUED as f64 * (SLOT + 4.0),
        116.0,
        6.0 * (SLOT + 4.0),
        SLOT,
        Fill::outline(svg::INK).dashed(),
    );
    svg.arrow(
        &[(30.0, 96.0), (30.0, 127.0), (queue_x - 4.0, 127.0)],
        svg::INK,
        false,
    );
    for w in 0..WORKERS {
        let x = w as f64 * (WORKER_W + WORKER_GAP);
        let woken = w == WOKEN;
        worker(
            &mut svg,
            x,
            w,
            if woken { "woken: accepts" } else { "not woken" },
            woken,
        );
        svg.arrow(
            &[
                (queue_x + 60.0, 142.0),
                (x + WORKER_W / 2.0, WORKER_Y - 4.0),
            ],
            if woken { svg::INK } else { svg::GREY },
            !woken,
        );
    }
    svg.lines(
        0.0,
        WORKER_Y + 78.0,
        &[
            "each epoll watches the one listener; a connection",
            "wakes one worker asleep in epoll_wait, not all",
        ],
        note,
    );

    // Right: a listener and a queue per worker; the kernel picks by hash.
    let left = PANEL + 20.0;
    svg.text(
        left,
        24.0,
        "--listener reuseport: a listener per worker",
        title,
    );
    incoming(&mut svg, left + 20.0, 64.0);
    svg.text(
        left + 60.0,
        84.0,
        "the kernel picks a listener by a hash",
        note,
    );
    svg.text(
        left + 60.0,
        99.0,
        "of each connection's addresses and ports",
        note,
    );
    for w in 0..WORKERS {
        let x = left + w as f64 * (WORKER_W + WORKER_GAP);
        let queued = HASHED.iter().filter(|&&q| q == w).count();
        svg.text(x + 3.0 * (SLOT + 4.0) + 2.0, 202.0, "its queue", note);
        for i in 0..3 {
            let fill = if i < queued {
                Fill::solid(svg::AMBER)
            } else {
                Fill::outline(svg::INK).dashed()
            };
            svg.rect(x + i as f64 * (SLOT + 4.0), 186.0, SLOT, SLOT, fill);
        }
        svg.arrow(
            &[(left + 30.0, 112.0), (x + SLOT / 2.0, 182.0)],
            svg::INK,
            false,
        );
        svg.arrow(
            &[
                (x + WORKER_W / 2.0, 212.0),
                (x + WORKER_W / 2.0, WORKER_Y - 4.0),
            ],
            svg::INK,
            false,
        );
        worker(&mut svg, x, w, "accepts its own", true);
    }
    svg.lines(
        left,
        WORKER_Y + 78.0,
        &[
            "even by hash, whatever the workers are doing;",
            "a busy worker's queue waits for it",
        ],
        note,
    );
    svg.finish(
        "How connections reach the workers",
        "Left: one listening socket with one accept queue, watched by every worker's epoll with EPOLLEXCLUSIVE; a new connection wakes one worker that is asleep in epoll_wait, which accepts every connection in the queue, and the others are not woken. Right: one SO_REUSEPORT listener per worker, each with its own accept queue; the kernel puts each new connection in one of them by a hash of its addresses and ports, and each worker accepts from its own.",
    )
}

/// Clients connecting: a label and a stack of small boxes.
fn incoming(svg: &mut Svg, x: f64, y: f64) {
    svg.text(
        x - 20.0,
        y - 10.0,
        "new connections",
        Font::page(12.0).bold(false),
    );
    for i in 0..3 {
        svg.rect(
            x - 10.0 + i as f64 * 8.0,
            y + i as f64 * 4.0,
            14.0,
            14.0,
            Fill::solid(svg::BLUE),
        );
    }
}

/// One worker: a thread with its own epoll.
fn worker(svg: &mut Svg, x: f64, id: usize, what: &str, lit: bool) {
    let fill = if lit {
        Fill::solid(svg::GREEN)
    } else {
        Fill::outline(svg::GREY).dashed()
    };
    svg.rect(x, WORKER_Y, WORKER_W, 56.0, fill);
    let font = if lit {
        Font::boxed(13.0)
    } else {
        Font::page(13.0)
    };
    svg.text(
        x + WORKER_W / 2.0,
        WORKER_Y + 22.0,
        &format!("worker {id}: epoll"),
        font.middle(),
    );
    svg.text(
        x + WORKER_W / 2.0,
        WORKER_Y + 42.0,
        what,
        font.bold(false).anchor(Anchor::Middle),
    );
}
