//! System calls per response: each chapter's program and the tokio client
//! (`examples/tokio_client.rs`), under `strace -f -c`, against a delay
//! server in a process of its own, so that only the client's calls are
//! counted. Twice: the default demo (5 requests), and 1,000 requests, where
//! what a program does once (starting threads) no longer counts per
//! response. What a program does to start and stop is measured with
//! `--help` and subtracted. Then the bulk measurement (`bulk.rs`).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::goals::{Goal, Want};
use crate::output;
use crate::processes::{Programs, Server, ServerProcess};
use crate::runs::Context;

/// The contenders: each chapter's binary, then the tokio client.
pub const CLIENTS: [&str; 5] = [
    "a-epoll",
    "b-edge-triggered",
    "c-oneshot",
    "d-ready-list",
    "tokio",
];
const CHAPTER4: usize = 3;
const TOKIO: usize = 4;

/// The two workloads: requests, and the delay scale that makes the demo
/// last about a second.
const WORKLOADS: [(usize, &str, &str); 2] = [
    (5, "0.2", "syscalls.csv"),
    (1_000, "0.001", "syscalls-1000.csv"),
];

/// The kinds shown, each with the syscalls counted under it. The last,
/// with no names, takes every syscall the others do not.
pub const KINDS: [(&str, &[&str]); 14] = [
    ("epoll_wait", &["epoll_wait", "epoll_pwait", "epoll_pwait2"]),
    ("epoll_ctl", &["epoll_ctl"]),
    ("socket", &["socket"]),
    ("fcntl", &["fcntl"]),
    ("connect", &["connect"]),
    ("poll", &["poll", "ppoll"]),
    ("getsockopt", &["getsockopt"]),
    ("sendto (request)", &["sendto", "sendmsg"]),
    ("recvfrom (response)", &["recvfrom", "recvmsg"]),
    ("read (waker)", &["read"]),
    ("write (stdout and waker)", &["write"]),
    ("close", &["close"]),
    ("futex (threads waking threads)", &["futex"]),
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

/// `program args` under `strace -f -c`: calls per syscall name, and what
/// the program printed.
pub fn traced(
    program: &Path,
    args: &[String],
    summary: &Path,
) -> io::Result<(BTreeMap<String, u64>, String)> {
    let output = Command::new("strace")
        .args(["-f", "-c", "-o"])
        .arg(summary)
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "strace {} {args:?} failed: {}: {}",
            program.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or_default()
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    Ok((parse(&fs::read_to_string(summary)?), stdout))
}

/// Calls in `run` beyond those in `baseline`, by kind, divided by `per`.
pub fn by_kind(
    run: &BTreeMap<String, u64>,
    baseline: &BTreeMap<String, u64>,
    per: f64,
) -> [f64; KINDS.len()] {
    let mut counted = [0.0; KINDS.len()];
    for (name, calls) in run {
        let net = calls.saturating_sub(baseline.get(name).copied().unwrap_or(0)) as f64;
        let kind = KINDS
            .iter()
            .position(|(_, names)| names.contains(&name.as_str()))
            .unwrap_or(OTHER);
        counted[kind] += net / per;
    }
    counted
}

/// The program for a contender.
pub fn program(programs: &Programs, client: &str) -> std::path::PathBuf {
    if client == "tokio" {
        programs.tokio_client.clone()
    } else {
        programs.chapter(client)
    }
}

/// Whether strace runs here; without it, this measurement and bulk's,
/// which counts with `traced`, are skipped.
pub fn strace_installed() -> bool {
    Command::new("strace").arg("-V").output().is_ok()
}

pub fn run(ctx: &Context) -> io::Result<Vec<Goal>> {
    if !strace_installed() {
        eprintln!("syscalls: skipped, strace is not installed (apt-get install strace)");
        return Ok(Vec::new());
    }
    let programs = Programs::find(&ctx.bins)?;
    let scratch = std::env::temp_dir().join(format!("measure-strace-{}", std::process::id()));
    let mut text = String::new();
    let mut at_1000 = Vec::new();
    for (requests, scale, file) in WORKLOADS {
        // Calls per response, by contender, then by kind.
        let mut per_client: Vec<[f64; KINDS.len()]> = Vec::new();
        for client in CLIENTS {
            let program = program(&programs, client);
            let (startup, _) = traced(&program, &["--help".to_string()], &scratch)?;
            // A fresh server for each run: no connection of one run is
            // still being closed by the server during the next.
            let server = ServerProcess::start(&programs.server, Server::Threads)?;
            let args = [
                "--addr",
                &server.addr,
                "-n",
                &requests.to_string(),
                "--scale",
                scale,
            ]
            .map(str::to_string);
            let started = std::time::Instant::now();
            let (demo, _) = traced(&program, &args, &scratch)?;
            drop(server);
            eprintln!(
                "  {client}, {requests} requests: {:.1} s under strace",
                started.elapsed().as_secs_f64()
            );
            per_client.push(by_kind(&demo, &startup, requests as f64));
        }
        let mut rows = Vec::new();
        for (client, counted) in CLIENTS.iter().zip(&per_client) {
            for ((kind, _), calls) in KINDS.iter().zip(counted) {
                rows.push(format!("{client},{kind},{calls:.2}"));
            }
        }
        ctx.write_csv(file, "chapter,syscall,per_response", &rows)?;
        text.push_str(&table(requests, &per_client));
        if requests == 1_000 {
            at_1000 = per_client;
        }
    }
    let _ = fs::remove_file(&scratch);
    ctx.write_table("syscalls.md", &text)?;
    print!("{text}");

    let mut goals = Vec::new();
    if let (Some(chapter4), Some(tokio)) = (at_1000.get(CHAPTER4), at_1000.get(TOKIO)) {
        let total = |counted: &[f64; KINDS.len()]| counted.iter().sum::<f64>();
        goals.push(Goal::counts(
            "syscalls",
            "syscalls: all per response at 1000 requests; chapter 4 / tokio".into(),
            Want::AtMost(1.0),
            total(chapter4),
            total(tokio),
        ));
        goals.push(Goal::counts(
            "syscalls",
            "syscalls: epoll_ctl per response at 1000 requests; chapter 4 / tokio".into(),
            Want::AtMost(1.0),
            chapter4[1],
            tokio[1],
        ));
    }
    Ok(goals)
}

fn table(requests: usize, per_client: &[[f64; KINDS.len()]]) -> String {
    let mut rows: Vec<Vec<String>> = KINDS
        .iter()
        .enumerate()
        .map(|(kind, (name, _))| {
            let calls = per_client
                .iter()
                .map(|counted| format!("{:.2}", counted[kind]));
            std::iter::once(name.to_string()).chain(calls).collect()
        })
        .collect();
    let totals = per_client
        .iter()
        .map(|counted| format!("**{:.2}**", counted.iter().sum::<f64>()));
    rows.push(
        std::iter::once("**all**".to_string())
            .chain(totals)
            .collect(),
    );
    let mut header = vec!["per response"];
    header.extend(CLIENTS);
    format!(
        "{requests} requests:\n\n{}\n",
        output::table(&header, &rows)
    )
}
