//! Chapter 4's schematic: one turn of the ready list in which a hedged twin
//! is closed, with the cleanup list. Drawn from the constants below, by
//! stepping a small model of `Worker::turn` through them, so that every row
//! follows from the one before it the way the code does it.

use crate::svg::{self, Fill, Font, Svg};

/// What a connection's turn brings, if it gets one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Its answer is complete: close it, and its twin.
    Answered,
    /// Budget spent, and more to read: back of the list.
    BudgetSpent,
    /// `WouldBlock`: off the list until its next edge.
    WouldBlock,
}

struct Connection {
    name: &'static str,
    color: &'static str,
    outcome: Outcome,
    /// Index of the other connection carrying the same request.
    twin: Option<usize>,
}

/// The ready list at the start of the turn, head first: A and A′ are twins.
const LIST: [Connection; 4] = [
    Connection {
        name: "A",
        color: svg::BLUE,
        outcome: Outcome::Answered,
        twin: Some(3),
    },
    Connection {
        name: "B",
        color: svg::GREEN,
        outcome: Outcome::BudgetSpent,
        twin: None,
    },
    Connection {
        name: "C",
        color: svg::PURPLE,
        outcome: Outcome::WouldBlock,
        twin: None,
    },
    Connection {
        name: "A\u{2032}",
        color: svg::BLUE,
        outcome: Outcome::Answered,
        twin: Some(0),
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Open,
    /// Marked removed: no token finds it, but it is not free yet.
    Removed,
    Free,
}

/// The lists after one step, and what the step was.
#[derive(Debug, Clone)]
struct State {
    /// Whose turn it was (`None`: the start, or the end of the turn).
    who: Option<usize>,
    /// The turn found the connection's slot removed and skipped it.
    ignored: bool,
    story: Vec<String>,
    ready: Vec<usize>,
    slots: [Slot; 4],
    cleanup: Vec<usize>,
}

/// Steps the model through one turn, then the cleanup after it.
fn states() -> Vec<State> {
    let mut state = State {
        who: None,
        ignored: false,
        story: vec![
            "start of the round: the wait has put".into(),
            "four connections on the ready list".into(),
        ],
        ready: (0..LIST.len()).collect(),
        slots: [Slot::Open; 4],
        cleanup: Vec::new(),
    };
    let mut states = vec![state.clone()];
    for _ in 0..state.ready.len() {
        let who = state.ready.remove(0);
        let name = LIST[who].name;
        state.who = Some(who);
        state.ignored = state.slots[who] != Slot::Open;
        state.story = if state.ignored {
            vec![
                format!("{name}: its slot is marked removed,"),
                "so the entry is ignored".into(),
            ]
        } else {
            match LIST[who].outcome {
                Outcome::Answered => {
                    state.slots[who] = Slot::Removed;
                    state.cleanup.push(who);
                    let twin = LIST[who].twin.map_or("", |twin| LIST[twin].name);
                    if let Some(twin) = LIST[who].twin {
                        state.slots[twin] = Slot::Removed;
                        state.cleanup.push(twin);
                    }
                    vec![
                        format!("{name}: answer complete. Close {name} and"),
                        format!("its twin {twin}: deregister, mark the slot"),
                        "removed, onto the cleanup list".into(),
                    ]
                }
                Outcome::BudgetSpent => {
                    state.ready.push(who);
                    vec![
                        format!("{name}: budget spent, still"),
                        "ready: to the back of the list".into(),
                    ]
                }
                Outcome::WouldBlock => vec![
                    format!("{name}: WouldBlock: off the list"),
                    "until its next edge (no system call)".into(),
                ],
            }
        };
        states.push(state.clone());
    }
    let freed: Vec<&str> = state.cleanup.iter().map(|&who| LIST[who].name).collect();
    for who in state.cleanup.drain(..) {
        state.slots[who] = Slot::Free;
    }
    state.who = None;
    state.ignored = false;
    state.story = vec![
        "after the round: their tokens leave the".into(),
        "ready list (none left here), then the".into(),
        format!("slots of {} are freed for reuse", freed.join(" and ")),
    ];
    states.push(state);
    states
}

const STORY_X: f64 = 34.0;
const READY_X: f64 = 340.0;
const SLOTS_X: f64 = 570.0;
const CLEANUP_X: f64 = 780.0;
const BOX: f64 = 44.0;
const TOP: f64 = 40.0;
const ROW: f64 = 62.0;

pub fn draw() -> String {
    let states = states();
    let height = TOP + ROW * states.len() as f64 + 50.0;
    let mut svg = Svg::new(880.0, height);
    let header = Font::page(13.0);
    let note = Font::page(12.0).bold(false);
    svg.text(STORY_X, 20.0, "one round, step by step", header);
    svg.text(READY_X, 20.0, "ready list (head first)", header);
    svg.text(SLOTS_X, 20.0, "the connections' slots", header);
    svg.text(CLEANUP_X, 20.0, "cleanup list", header);

    for (r, state) in states.iter().enumerate() {
        let top = TOP + ROW * r as f64;
        if r > 0 {
            svg.line((0.0, top - 11.0), (880.0, top - 11.0), svg::INK, true);
        }
        // Whose turn it was.
        if let Some(who) = state.who {
            let fill = if state.ignored {
                Fill::outline(LIST[who].color).dashed()
            } else {
                Fill::solid(LIST[who].color)
            };
            let font = if fill.fill.is_some() {
                Font::boxed(14.0)
            } else {
                Font::page(14.0)
            };
            svg.label((0.0, top, 26.0, 32.0), fill, LIST[who].name, font);
        }
        let lines: Vec<&str> = state.story.iter().map(String::as_str).collect();
        svg.lines(STORY_X, top + 12.0, &lines, note);

        for (i, &who) in state.ready.iter().enumerate() {
            let x = READY_X + (BOX + 4.0) * i as f64;
            let connection = &LIST[who];
            if state.slots[who] == Slot::Open {
                svg.label(
                    (x, top, BOX, 32.0),
                    Fill::solid(connection.color),
                    connection.name,
                    Font::boxed(14.0),
                );
            } else {
                // An entry whose connection is gone: it stays on the list
                // until its turn comes, and then finds nothing.
                svg.label(
                    (x, top, BOX, 32.0),
                    Fill::outline(connection.color).dashed(),
                    connection.name,
                    Font::page(14.0),
                );
            }
        }
        if state.ready.is_empty() {
            svg.text(READY_X, top + 21.0, "(empty)", note);
        }

        for (i, (connection, slot)) in LIST.iter().zip(state.slots).enumerate() {
            let x = SLOTS_X + (BOX + 4.0) * i as f64;
            match slot {
                Slot::Open => svg.label(
                    (x, top, BOX, 32.0),
                    Fill::solid(connection.color),
                    connection.name,
                    Font::boxed(14.0),
                ),
                Slot::Removed => {
                    svg.label(
                        (x, top, BOX, 32.0),
                        Fill::outline(connection.color).dashed(),
                        connection.name,
                        Font::page(14.0),
                    );
                    svg.line(
                        (x + 6.0, top + 26.0),
                        (x + BOX - 6.0, top + 6.0),
                        svg::INK,
                        false,
                    );
                }
                Slot::Free => svg.label(
                    (x, top, BOX, 32.0),
                    Fill::outline(svg::INK).dashed(),
                    "free",
                    Font::page(12.0).bold(false),
                ),
            }
        }

        for (i, &who) in state.cleanup.iter().enumerate() {
            let x = CLEANUP_X + (BOX + 4.0) * i as f64;
            svg.label(
                (x, top, BOX, 32.0),
                Fill::outline(LIST[who].color),
                LIST[who].name,
                Font::page(14.0),
            );
        }
        if state.cleanup.is_empty() {
            svg.text(CLEANUP_X, top + 21.0, "(empty)", note);
        }
    }

    // The legend.
    let y = TOP + ROW * states.len() as f64 + 6.0;
    svg.label(
        (0.0, y, 26.0, 22.0),
        Fill::solid(svg::BLUE),
        "A",
        Font::boxed(13.0),
    );
    svg.text(32.0, y + 15.0, "open", note);
    svg.label(
        (80.0, y, 26.0, 22.0),
        Fill::outline(svg::BLUE).dashed(),
        "A",
        Font::page(13.0),
    );
    svg.line((86.0, y + 18.0), (100.0, y + 4.0), svg::INK, false);
    svg.text(
        112.0,
        y + 15.0,
        "slot marked removed: no token finds it, not yet reusable",
        note,
    );
    svg.text(
        SLOTS_X,
        y + 15.0,
        "A and A\u{2032} carry the same request (hedged)",
        note,
    );

    svg.finish(
        "One round of the ready list in which a hedged twin is closed",
        "A completes and closes its twin A'; B goes to the back of the list; C leaves the list at WouldBlock; A''s entry finds its slot removed and is ignored; after the round the cleanup list frees both slots.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_twins_entry_is_ignored_and_its_slot_freed_only_after_the_turn() {
        let states = states();
        let last_turn = &states[states.len() - 2];
        assert_eq!(last_turn.ready, [1], "only B is left on the list");
        assert_eq!(last_turn.slots[3], Slot::Removed);
        assert_eq!(last_turn.cleanup, [0, 3]);
        let after = &states[states.len() - 1];
        assert_eq!(
            after.slots,
            [Slot::Free, Slot::Open, Slot::Open, Slot::Free]
        );
        assert!(after.cleanup.is_empty());
    }
}
