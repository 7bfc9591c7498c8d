//! Syscalls per response: each chapter's default demo (5 requests) under
//! `strace -c -f`, against a delay server in this process so that only the
//! client's calls are counted. What the program does to start and stop is
//! measured once with `--help` and subtracted.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;
use std::process::{Command, Stdio};

use d_ready_list::delay_server::DelayServer;

use crate::output::{self, Goal};

const CHAPTERS: [&str; 4] = ["a-epoll", "b-edge-triggered", "c-oneshot", "d-ready-list"];
const RESPONSES: f64 = 5.0;

/// The kinds shown, each with the syscalls counted under it. The last,
/// with no names, takes every syscall the others do not.
const KINDS: [(&str, &[&str]); 11] = [
    ("epoll_wait", &["epoll_wait", "epoll_pwait", "epoll_pwait2"]),
    ("epoll_ctl", &["epoll_ctl"]),
    ("socket", &["socket"]),
    ("connect", &["connect"]),
    ("poll", &["poll", "ppoll"]),
    ("getsockopt", &["getsockopt"]),
    ("sendto (request)", &["sendto", "sendmsg"]),
    ("recvfrom (response)", &["recvfrom", "recvmsg", "read"]),
    ("write (stdout)", &["write"]),
    ("close", &["close"]),
    ("other", &[]),
];
const OTHER: usize = KINDS.len() - 1;

/// `strace -c` output: calls per syscall name.
fn parse(summary: &str) -> BTreeMap<String, u64> {
    let mut calls = BTreeMap::new();
    for line in summary.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() < 5 {
            continue;
        }
        let (Some(name), Ok(count)) = (words.last(), words[3].parse::<u64>()) else {
            continue;
        };
        if *name != "total" {
            calls.insert(name.to_string(), count);
        }
    }
    calls
}

fn traced(program: &Path, args: &[&str], summary: &Path) -> io::Result<BTreeMap<String, u64>> {
    let status = Command::new("strace")
        .args(["-f", "-c", "-o"])
        .arg(summary)
        .arg(program)
        .args(args)
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "strace {} {args:?} failed: {status}",
            program.display()
        )));
    }
    Ok(parse(&fs::read_to_string(summary)?))
}

pub fn run(out: &Path, bins: &Path) -> io::Result<Vec<Goal>> {
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("syscalls: skipped, strace is not installed (apt-get install strace)");
        return Ok(Vec::new());
    }
    let server = DelayServer::start()?;
    let addr = server.addr().to_string();
    let scratch = std::env::temp_dir().join(format!("measure-strace-{}", std::process::id()));
    // Calls per response, by chapter, then by kind.
    let mut per_chapter: Vec<[f64; KINDS.len()]> = Vec::new();
    for chapter in CHAPTERS {
        let program = bins.join(chapter);
        if !program.exists() {
            return Err(io::Error::other(format!(
                "{} is missing: build with cargo build --release --workspace --bins",
                program.display()
            )));
        }
        let startup = traced(&program, &["--help"], &scratch)?;
        let demo = traced(&program, &["--addr", &addr], &scratch)?;
        let mut counted = [0.0; KINDS.len()];
        for (name, calls) in &demo {
            let net = calls.saturating_sub(startup.get(name).copied().unwrap_or(0)) as f64;
            let kind = KINDS
                .iter()
                .position(|(_, names)| names.contains(&name.as_str()))
                .unwrap_or(OTHER);
            counted[kind] += net / RESPONSES;
        }
        per_chapter.push(counted);
    }
    let _ = fs::remove_file(&scratch);

    let mut rows = Vec::new();
    for (chapter, counted) in CHAPTERS.iter().zip(&per_chapter) {
        for ((kind, _), calls) in KINDS.iter().zip(counted) {
            rows.push(format!("{chapter},{kind},{calls:.1}"));
        }
    }
    output::write_csv(out, "syscalls.csv", "chapter,syscall,per_response", &rows)?;

    let table_rows: Vec<Vec<String>> = KINDS
        .iter()
        .enumerate()
        .map(|(kind, (name, _))| {
            let calls = per_chapter
                .iter()
                .map(|counted| format!("{:.1}", counted[kind]));
            std::iter::once(name.to_string()).chain(calls).collect()
        })
        .collect();
    let mut header = vec!["per response"];
    header.extend(CHAPTERS);
    let text = format!(
        "{}\nThe default demo (5 requests), `strace -c -f`, less what `--help` makes; \
         \"other\" is mostly threads starting and stopping.\n",
        output::table(&header, &table_rows)
    );
    output::write_table(out, "syscalls.md", &text)?;
    print!("{text}");
    Ok(Vec::new())
}
