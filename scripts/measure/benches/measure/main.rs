//! The measurements behind the book's claims. Run by `scripts/bench`; not
//! part of CI. Each measurement interleaves its contenders within one run,
//! repeats them, and prints medians and the ratios between contenders. The
//! data goes to `book/src/measurements/` as CSV, with a Markdown table and
//! an SVG plot drawn from it, for the book's Measurements appendix.
//!
//! Usage: cargo bench -p measure --bench measure -- [--only NAME,...]
//!   NAME: dispatch, idle, fairness, syscalls, scale (default: all)

mod dispatch;
mod fairness;
mod idle;
mod output;
mod plot;
mod ports;
mod scale;
mod stats;
mod sys;
mod syscalls;

use std::path::PathBuf;

/// Where the data, tables and plots go.
fn out_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../book/src/measurements")
}

/// Where `scripts/bench` built the chapters' release binaries.
fn bin_dir() -> PathBuf {
    std::env::var_os("CHAPTER_BINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release"))
}

pub const ALL: [&str; 5] = ["dispatch", "idle", "fairness", "syscalls", "scale"];

fn main() {
    let mut only: Vec<String> = ALL.iter().map(|s| s.to_string()).collect();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            // cargo bench passes this to every bench target.
            "--bench" => {}
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
    let commit = output::commit();
    let load = output::load();
    let out = out_dir();
    if let Err(error) = std::fs::create_dir_all(&out) {
        fail(&format!("cannot create {}: {error}", out.display()));
    }
    if let Err(error) = idle::raise_fd_limit() {
        fail(&format!("cannot raise the open-file limit: {error}"));
    }
    let mut goals = Vec::new();
    for name in &only {
        eprintln!("==> {name}");
        let result = match name.as_str() {
            "dispatch" => dispatch::run(&out),
            "idle" => idle::run(&out),
            "fairness" => fairness::run(&out),
            "syscalls" => syscalls::run(&out, &bin_dir()),
            "scale" => scale::run(&out, &bin_dir()),
            _ => unreachable!("checked above"),
        };
        match result {
            Ok(mut met) => goals.append(&mut met),
            Err(error) => fail(&format!("{name}: {error}")),
        }
    }
    if let Err(error) = output::write_machine(&out, &commit, &load) {
        fail(&format!("cannot write machine.md: {error}"));
    }
    println!();
    println!("goals:");
    for goal in &goals {
        println!("  {goal}");
    }
    if let Err(error) = output::write_goals(&out, &only, &goals) {
        fail(&format!("cannot write goals.md: {error}"));
    }
}

fn fail(message: &str) -> ! {
    eprintln!("measure: {message}");
    std::process::exit(1);
}
