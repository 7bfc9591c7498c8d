//! io_uring beside readiness: the async example over the ring
//! (`async_client --ring`), the same example over chapter 4's epoll
//! (`async_client`), and the tokio client on one worker, each on the same
//! requests against a delay server in a process of its own.
//!
//! System calls per response at 1,000 requests, under `strace -f -c`, with
//! what `--help` costs subtracted. CPU time (user plus system, from
//! `wait4`, through `measured`) at 1,000 and 10,000 requests, in rounds of
//! one run each, their order rotated from round to round, so that the
//! machine's noise falls on all three alike; a ratio is the median of the
//! rounds' ratios, decided by its interval.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

use measure::stats::{Summary, summarize};

use crate::goals::{Goal, Want};
use crate::output::{self, ratio};
use crate::processes::{self, Programs, Server, ServerProcess};
use crate::runs::Context;
use crate::syscalls;

/// The contenders: a name, and the flags that make it one.
const CLIENTS: [(&str, &[&str]); 3] = [
    ("ring", &["--ring"]),
    ("readiness", &[]),
    ("tokio", &["--workers", "1"]),
];
const RING: usize = 0;
const READINESS: usize = 1;
const TOKIO: usize = 2;

/// The kinds shown, each with the syscalls counted under it; the last
/// takes the rest.
const KINDS: [(&str, &[&str]); 12] = [
    ("io_uring_enter", &["io_uring_enter"]),
    ("epoll_wait", &["epoll_wait", "epoll_pwait", "epoll_pwait2"]),
    ("epoll_ctl", &["epoll_ctl"]),
    ("socket", &["socket"]),
    ("connect", &["connect"]),
    ("getsockopt and getpeername", &["getsockopt", "getpeername"]),
    ("sendto (request)", &["sendto", "sendmsg"]),
    ("recvfrom (response)", &["recvfrom", "recvmsg"]),
    ("write (the output line)", &["write"]),
    ("close", &["close"]),
    ("futex", &["futex"]),
    ("other", &[]),
];

/// The requests of the syscall count, and its delay scale (about 1 s).
const SYSCALL_RUN: (usize, &str) = (1_000, "0.001");
/// The CPU runs: requests, and a scale that makes each last about 1 s.
const CPU_RUNS: [(usize, &str); 2] = [(1_000, "0.001"), (10_000, "0.0001")];
const ROUNDS: usize = 9;
const QUICK_ROUNDS: usize = 3;
const KILL_AFTER: &str = "120";
/// The goals: system calls per response over the ring, the output
/// line included; the ring's CPU time against readiness at 10,000.
const MOST_RING_SYSCALLS: f64 = 3.0;
const MOST_RING_CPU: f64 = 0.85;

fn program(programs: &Programs, client: usize) -> PathBuf {
    if client == TOKIO {
        programs.tokio_client.clone()
    } else {
        programs.tokio_client.with_file_name("async_client")
    }
}

fn args(client: usize, addr: &str, requests: usize, scale: &str) -> Vec<String> {
    let mut args: Vec<String> = CLIENTS[client].1.iter().map(|s| s.to_string()).collect();
    let rest = [
        "--addr",
        addr,
        "-n",
        &requests.to_string(),
        "--scale",
        scale,
    ];
    args.extend(rest.map(str::to_string));
    args
}

fn by_kind(run: &BTreeMap<String, u64>, baseline: &BTreeMap<String, u64>, per: f64) -> Vec<f64> {
    let mut counted = vec![0.0; KINDS.len()];
    for (name, calls) in run {
        let net = calls.saturating_sub(baseline.get(name).copied().unwrap_or(0)) as f64;
        let kind = (KINDS.iter())
            .position(|(_, names)| names.contains(&name.as_str()))
            .unwrap_or(KINDS.len() - 1);
        counted[kind] += net / per;
    }
    counted
}

pub fn run(ctx: &Context) -> io::Result<Vec<Goal>> {
    let programs = Programs::find(&ctx.bins)?;
    for client in [RING, READINESS] {
        if !program(&programs, client).exists() {
            return Err(io::Error::other(
                "target/release/examples/async_client is missing: scripts/bench builds it",
            ));
        }
    }
    let mut goals = Vec::new();
    let mut text = String::new();
    if std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_ok()
    {
        let per_client = count_syscalls(ctx, &programs, &mut text)?;
        let total = |client: usize| per_client[client].iter().sum::<f64>();
        goals.push(Goal::count(
            "uring",
            "uring: syscalls per response over the ring at 1000 requests".into(),
            Want::AtMost(MOST_RING_SYSCALLS),
            total(RING),
        ));
        goals.push(Goal::counts(
            "uring",
            "uring: syscalls per response at 1000 requests; ring / readiness".into(),
            Want::AtMost(1.0),
            total(RING),
            total(READINESS),
        ));
    } else {
        eprintln!("uring: syscalls skipped, strace is not installed (apt-get install strace)");
    }
    let ratios = cpu(ctx, &programs, &mut text)?;
    for (requests, ring_readiness, ring_tokio) in &ratios {
        let want = if *requests == 10_000 {
            Want::AtMost(MOST_RING_CPU)
        } else {
            Want::AtMost(1.0)
        };
        goals.push(Goal::interval(
            "uring",
            format!("uring: CPU at {requests} requests; ring / readiness"),
            want,
            ring_readiness,
        ));
        goals.push(Goal::interval(
            "uring",
            format!("uring: CPU at {requests} requests; ring / tokio"),
            Want::AtMost(1.0),
            ring_tokio,
        ));
    }
    ctx.write_table("uring.md", &text)?;
    print!("{text}");
    Ok(goals)
}

fn count_syscalls(
    ctx: &Context,
    programs: &Programs,
    text: &mut String,
) -> io::Result<Vec<Vec<f64>>> {
    let scratch = std::env::temp_dir().join(format!("measure-uring-{}", std::process::id()));
    let (requests, scale) = SYSCALL_RUN;
    let mut per_client = Vec::new();
    let mut rows = Vec::new();
    for (client, (name, flags)) in CLIENTS.iter().enumerate() {
        let program = program(programs, client);
        let mut help: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        help.push("--help".into());
        let (startup, _) = syscalls::traced(&program, &help, &scratch)?;
        let server = ServerProcess::start(&programs.server, Server::Threads)?;
        let (run, stdout) = syscalls::traced(
            &program,
            &args(client, &server.addr, requests, scale),
            &scratch,
        )?;
        drop(server);
        // A run in which requests timed out made fewer calls per response
        // than one that answered them all: only a full run counts.
        let answered = stdout.lines().filter(|l| l.starts_with("request ")).count();
        if answered != requests {
            return Err(io::Error::other(format!(
                "{name} under strace with {requests} requests: {answered} answers"
            )));
        }
        let counted = by_kind(&run, &startup, requests as f64);
        for ((kind, _), calls) in KINDS.iter().zip(&counted) {
            rows.push(format!("{name},{kind},{calls:.2}"));
        }
        per_client.push(counted);
    }
    let _ = std::fs::remove_file(&scratch);
    ctx.write_csv("uring-syscalls.csv", "client,syscall,per_response", &rows)?;
    let mut table: Vec<Vec<String>> = KINDS
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
        .map(|c| format!("**{:.2}**", c.iter().sum::<f64>()));
    table.push(
        std::iter::once("**all**".to_string())
            .chain(totals)
            .collect(),
    );
    let mut header = vec!["per response, 1000 requests"];
    header.extend(CLIENTS.iter().map(|(name, _)| *name));
    text.push_str(&format!("{}\n", output::table(&header, &table)));
    Ok(per_client)
}

/// Per CPU run: requests, ring / readiness, ring / tokio.
type Ratios = Vec<(usize, Summary, Summary)>;

fn cpu(ctx: &Context, programs: &Programs, text: &mut String) -> io::Result<Ratios> {
    let rounds = if ctx.quick { QUICK_ROUNDS } else { ROUNDS };
    let mut rows = Vec::new();
    let mut ratios = Vec::new();
    let mut table = Vec::new();
    for (requests, scale) in CPU_RUNS {
        let mut cpu_ms = vec![Vec::new(); CLIENTS.len()];
        for round in 0..rounds {
            // One server per round, event-driven: 10,000 connections at
            // once would be 10,000 threads in the threaded one.
            let server = ServerProcess::start(&programs.server, Server::Tokio)?;
            for turn in 0..CLIENTS.len() {
                let client = (round + turn) % CLIENTS.len();
                let program = program(programs, client);
                let args = args(client, &server.addr, requests, scale);
                let (stdout, report) = processes::measured(programs, KILL_AFTER, &program, &args)?;
                let answered = stdout.lines().filter(|l| l.starts_with("request ")).count();
                if report.status != "0" || answered != requests {
                    return Err(io::Error::other(format!(
                        "{} with {requests} requests: status {}, {answered} answers",
                        CLIENTS[client].0, report.status
                    )));
                }
                rows.push(format!(
                    "{},{requests},{round},{:.1}",
                    CLIENTS[client].0,
                    report.cpu_ms()
                ));
                cpu_ms[client].push(report.cpu_ms());
            }
            drop(server);
        }
        let over = |a: usize, b: usize| -> Vec<f64> {
            cpu_ms[a]
                .iter()
                .zip(&cpu_ms[b])
                .map(|(x, y)| x / y)
                .collect()
        };
        let ring_readiness = summarize(&over(RING, READINESS));
        let ring_tokio = summarize(&over(RING, TOKIO));
        let median = |client: usize| format!("{:.0}", summarize(&cpu_ms[client]).median);
        table.push(vec![
            requests.to_string(),
            median(RING),
            median(READINESS),
            median(TOKIO),
            ratio(ring_readiness.median),
            ratio(ring_tokio.median),
        ]);
        ratios.push((requests, ring_readiness, ring_tokio));
    }
    ctx.write_csv("uring-cpu.csv", "client,requests,round,cpu_ms", &rows)?;
    let header = [
        "requests",
        "ring, ms",
        "readiness, ms",
        "tokio, ms",
        "ring / readiness",
        "ring / tokio",
    ];
    text.push_str(&format!(
        "CPU time (user + system), median of {rounds} rounds:\n\n{}\n",
        output::table(&header, &table)
    ));
    Ok(ratios)
}
