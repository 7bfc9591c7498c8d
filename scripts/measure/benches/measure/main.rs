//! The measurements behind the book's claims. Run by `scripts/bench`; not
//! part of CI. Each measurement interleaves its contenders within one run,
//! repeats them, and prints medians and the ratios between contenders. The
//! data goes to `book/src/measurements/` as CSV, with a Markdown table and
//! an SVG plot drawn from it, for the book's Measurements appendix.
//!
//! Usage: cargo bench -p measure --bench measure -- [--only NAME,...]
//!        [--quick] [--out DIR] | --redraw [--out DIR]
//!   NAME: dispatch, idle, fairness, syscalls, scale, server, uring (default: all)
//!   --quick: a reduced run, to try the tool; its tables say so
//!   --out: write there instead of book/src/measurements
//!   --redraw: measure nothing; draw the plots again from the CSV files
//!     already recorded there

mod bulk;
mod dispatch;
mod fairness;
mod goals;
mod idle;
mod output;
mod plot;
mod ports;
mod processes;
mod runs;
mod scale;
mod server;
mod sys;
mod syscalls;
mod uring;

use std::path::PathBuf;

use runs::{Context, Record};

/// Where the chapters' release binaries are, if `scripts/bench` did not say.
fn default_bins() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release")
}

pub const ALL: [&str; 7] = [
    "dispatch", "idle", "fairness", "syscalls", "scale", "server", "uring",
];

fn main() {
    let mut only: Vec<String> = ALL.iter().map(|s| s.to_string()).collect();
    let mut quick = false;
    let mut redraw = false;
    let mut out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../book/src/measurements");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            // cargo bench passes this to every bench target.
            "--bench" => {}
            "--quick" => quick = true,
            "--redraw" => redraw = true,
            "--out" => match args.next() {
                // Relative to where scripts/bench was started: cargo runs
                // this in the crate's directory.
                Some(dir) => {
                    let started_in = std::env::var_os("BENCH_STARTED_IN").map(PathBuf::from);
                    out = started_in.unwrap_or_default().join(dir);
                }
                None => fail("--out needs a directory"),
            },
            "--only" => {
                let names = args.next().unwrap_or_default();
                only = names.split(',').map(str::to_string).collect();
                if let Some(bad) = only.iter().find(|n| !ALL.contains(&n.as_str())) {
                    fail(&format!(
                        "--only: no measurement named {bad:?}; names: {ALL:?}"
                    ));
                }
            }
            other => fail(&format!(
                "unknown argument {other:?}; see the top of main.rs"
            )),
        }
    }
    if redraw {
        for (name, result) in [
            ("dispatch", dispatch::redraw(&out)),
            ("idle", idle::redraw(&out)),
            ("fairness", fairness::redraw(&out)),
            ("scale", scale::redraw(&out)),
        ] {
            if let Err(error) = result {
                fail(&format!("{name}: cannot draw again: {error}"));
            }
        }
        return;
    }
    let bins = std::env::var_os("CHAPTER_BINS").map_or_else(default_bins, PathBuf::from);
    let ctx = Context::new(out, bins, quick);
    if let Err(error) = std::fs::create_dir_all(&ctx.out) {
        fail(&format!("cannot create {}: {error}", ctx.out.display()));
    }
    if let Err(error) = idle::raise_fd_limit() {
        fail(&format!("cannot raise the open-file limit: {error}"));
    }
    let mut goals = Vec::new();
    let mut records = Vec::new();
    for name in &only {
        eprintln!("==> {name}");
        let load_at_start = output::load();
        let result = match name.as_str() {
            "dispatch" => dispatch::run(&ctx),
            "idle" => idle::run(&ctx),
            "fairness" => fairness::run(&ctx),
            // Bulk counts with syscalls' tracing, and runs after it: bulk
            // imports syscalls, and not the other way round.
            "syscalls" => syscalls::run(&ctx).and_then(|mut goals| {
                goals.extend(bulk::run(&ctx)?);
                Ok(goals)
            }),
            "scale" => scale::run(&ctx),
            "server" => server::run(&ctx),
            "uring" => uring::run(&ctx),
            _ => unreachable!("checked above"),
        };
        match result {
            Ok(mut met) => goals.append(&mut met),
            Err(error) => fail(&format!("{name}: {error}")),
        }
        records.push(Record {
            measurement: name.clone(),
            load_at_start,
            load_at_end: output::load(),
        });
        // After each measurement, so that one failing later leaves the
        // record of those done true to the tables they wrote.
        let done: Vec<String> = records.iter().map(|r| r.measurement.clone()).collect();
        if let Err(error) = runs::write(&ctx, &records) {
            fail(&format!("cannot write runs.csv and machine.md: {error}"));
        }
        if let Err(error) = goals::write(&ctx.out, &done, &goals) {
            fail(&format!("cannot write goals.md: {error}"));
        }
    }
    println!();
    println!("goals:");
    for goal in &goals {
        println!("  {goal}");
    }
}

fn fail(message: &str) -> ! {
    eprintln!("measure: {message}");
    std::process::exit(1);
}
