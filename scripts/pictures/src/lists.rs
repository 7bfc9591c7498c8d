//! Chapter 1's schematic: the two lists inside an epoll instance, and which
//! call touches which. Drawn from the constants below, not from a run.

use crate::svg::{self, Anchor, Fill, Font, Svg};

/// The interest list: fd, interest, token.
const INTEREST: [(u32, &str, usize); 4] = [
    (5, "READABLE", 0),
    (6, "READABLE", 1),
    (7, "READABLE | WRITABLE", 2),
    (8, "READABLE", 3),
];

/// The fds on the ready list, head first.
const READY: [u32; 2] = [6, 8];

/// Where the interest list's table starts, and its columns.
const TABLE_X: f64 = 250.0;
const TABLE_Y: f64 = 80.0;
const ROW: f64 = 32.0;
const COLUMNS: [(f64, f64); 3] = [(0.0, 70.0), (74.0, 200.0), (278.0, 100.0)];
const READY_Y: f64 = 282.0;
const ENTRY: f64 = 96.0;

pub fn draw() -> String {
    let mut svg = Svg::new(860.0, 420.0);
    let title = Font::page(15.0);
    let note = Font::page(12.0).bold(false);

    // The program's side.
    svg.text(0.0, 28.0, "your program", title);
    svg.rect(0.0, 72.0, 200.0, 58.0, Fill::solid(svg::BLUE));
    svg.text(
        100.0,
        96.0,
        "epoll_ctl",
        Font::boxed(15.0).bold(true).mono(),
    );
    svg.text(100.0, 117.0, "ADD, MOD, DEL an entry", Font::boxed(12.0));
    svg.rect(0.0, READY_Y - 14.0, 200.0, 58.0, Fill::solid(svg::AMBER));
    svg.text(
        100.0,
        READY_Y + 10.0,
        "epoll_wait",
        Font::boxed(15.0).bold(true).mono(),
    );
    svg.text(
        100.0,
        READY_Y + 31.0,
        "takes entries off",
        Font::boxed(12.0),
    );
    svg.rect(0.0, 356.0, 200.0, 52.0, Fill::outline(svg::INK));
    let tokens: Vec<String> = READY
        .iter()
        .map(|fd| {
            let token = INTEREST
                .iter()
                .find(|(f, ..)| f == fd)
                .map_or(0, |row| row.2);
            format!("Token({token}) READABLE")
        })
        .collect();
    svg.text(10.0, 376.0, "Events:", note);
    svg.lines(
        62.0,
        376.0,
        &tokens.iter().map(String::as_str).collect::<Vec<_>>(),
        note,
    );
    svg.arrow(&[(100.0, READY_Y + 44.0), (100.0, 356.0)], svg::INK, false);

    // The kernel's side.
    svg.rect(
        230.0,
        6.0,
        626.0,
        408.0,
        Fill::outline(svg::INK).radius(10.0),
    );
    svg.text(246.0, 28.0, "one epoll instance, in the kernel", title);
    svg.text(
        TABLE_X,
        56.0,
        "interest list: every fd registered with epoll_ctl",
        Font::page(13.0),
    );
    for (header, (x, _)) in ["fd", "interest", "token"].iter().zip(COLUMNS) {
        svg.text(TABLE_X + x + 4.0, 74.0, header, note);
    }
    for (i, (fd, interest, token)) in INTEREST.iter().enumerate() {
        let y = TABLE_Y + ROW * i as f64;
        let ready = READY.contains(fd);
        let color = if ready { svg::AMBER } else { svg::GREY };
        let cells = [
            format!("fd {fd}"),
            interest.to_string(),
            format!("Token({token})"),
        ];
        for (cell, (x, w)) in cells.iter().zip(COLUMNS) {
            svg.label(
                (TABLE_X + x, y, w, ROW - 4.0),
                Fill::solid(color),
                cell,
                Font::boxed(13.0),
            );
        }
    }
    svg.arrow(&[(200.0, 101.0), (TABLE_X - 4.0, 101.0)], svg::INK, false);

    svg.text(
        TABLE_X,
        READY_Y - 22.0,
        "ready list: the fds that are ready now",
        Font::page(13.0),
    );
    for (i, fd) in READY.iter().enumerate() {
        let x = TABLE_X + (ENTRY + 6.0) * i as f64;
        svg.label(
            (x, READY_Y, ENTRY, 30.0),
            Fill::solid(svg::AMBER),
            &format!("fd {fd}"),
            Font::boxed(13.0),
        );
    }
    let tail = TABLE_X + (ENTRY + 6.0) * READY.len() as f64;
    svg.arrow(
        &[(TABLE_X, READY_Y + 15.0), (204.0, READY_Y + 15.0)],
        svg::INK,
        false,
    );

    // Readiness: the kernel adds an entry at the tail.
    let table_end = TABLE_X + COLUMNS[2].0 + COLUMNS[2].1;
    let side = 690.0;
    for fd in READY {
        if let Some(i) = INTEREST.iter().position(|(f, ..)| *f == fd) {
            let y = TABLE_Y + ROW * i as f64 + (ROW - 4.0) / 2.0;
            svg.line((table_end, y), (side, y), svg::INK, false);
        }
    }
    let first = INTEREST
        .iter()
        .position(|(f, ..)| *f == READY[0])
        .unwrap_or(0);
    svg.arrow(
        &[
            (side, TABLE_Y + ROW * first as f64 + (ROW - 4.0) / 2.0),
            (side, READY_Y + 8.0),
            (tail, READY_Y + 8.0),
        ],
        svg::INK,
        false,
    );
    svg.lines(
        side + 10.0,
        150.0,
        &[
            "becomes ready:",
            "the kernel adds it",
            "at the tail (data",
            "arrived, the peer",
            "closed, room to",
            "write appeared)",
        ],
        Font::page(12.0),
    );

    // Level-triggered: what epoll_wait took goes back while still ready.
    svg.arrow(
        &[
            (TABLE_X + ENTRY / 2.0, READY_Y + 30.0),
            (TABLE_X + ENTRY / 2.0, READY_Y + 60.0),
            (tail + 30.0, READY_Y + 60.0),
            (tail + 30.0, READY_Y + 22.0),
            (tail, READY_Y + 22.0),
        ],
        svg::INK,
        true,
    );
    svg.lines(
        TABLE_X + ENTRY / 2.0 + 8.0,
        READY_Y + 78.0,
        &[
            "level-triggered only: epoll_wait puts what it took back at the tail,",
            "and the next wait asks the fd again whether it is still ready",
        ],
        Font::page(12.0).anchor(Anchor::Start),
    );

    svg.finish(
        "epoll's interest list and ready list",
        "epoll_ctl adds, changes and removes entries of the interest list; the kernel puts an fd on the ready list when it becomes ready; epoll_wait takes entries off the ready list, and for level-triggered fds puts them back while still ready.",
    )
}
