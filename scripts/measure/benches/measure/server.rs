//! The server side: chapter 4's event-driven delay server
//! (`d-ready-list/examples/server`) against axum with the same route
//! (`examples/axum_server.rs`), the server a tokio user would pick. Each
//! run starts a server under `measured` (which reports its CPU time and
//! peak RSS from `wait4`), sends it 10,000 requests at once from chapter
//! 4's client, delays from 1,000 ms down to about 0, then closes the
//! server's stdin to stop it. The two servers run in pairs, in alternating
//! order, on 2 worker threads each.
//!
//! Lateness is the client's: how long after its delay each answer came,
//! from the start of the client's run, so it includes the time to open the
//! connection, the same for both servers.
//!
//! Then how the workers share the connections (`--listener shared`, one
//! listener in every worker's epoll with `EPOLLEXCLUSIVE`, against
//! `--listener reuseport`, one `SO_REUSEPORT` listener per worker), and
//! the system calls per request under strace at 1,000 requests.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::thread::{self, JoinHandle};

use measure::stats::{percentile, summarize};

use crate::goals::{Goal, Verdict, Want};
use crate::output::{self, ratio};
use crate::processes::Report;
use crate::runs::Context;

const REQUESTS: usize = 10_000;
const QUICK_REQUESTS: usize = 1_000;
/// 15 pairs give a 96% interval for the median ratio, from the 4th lowest
/// to the 4th highest.
const PAIRS: usize = 15;
const QUICK_PAIRS: usize = 3;
const WORKERS: &str = "2";
/// Each client's own `--deadline`; a server's; when `measured` kills it.
const CLIENT_DEADLINE: &str = "60";
const SERVER_DEADLINE: &str = "120";
const KILL_AFTER: &str = "150";
/// The accept distribution: how many workers, and runs of each mode.
const SPREAD_WORKERS: usize = 4;
const SPREAD_RUNS: usize = 5;
/// The strace run, as the issue asks: 1,000 requests.
const TRACED_REQUESTS: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contender {
    Chapter4,
    Axum,
}

impl Contender {
    fn name(self) -> &'static str {
        match self {
            Contender::Chapter4 => "chapter 4",
            Contender::Axum => "axum",
        }
    }
}

/// The programs this measurement starts.
struct Programs {
    chapters: PathBuf,
    client: PathBuf,
    ours: PathBuf,
    axum: PathBuf,
    measured: PathBuf,
}

impl Programs {
    fn find(bins: &Path) -> io::Result<Programs> {
        let examples = bins.join("examples");
        let programs = Programs {
            chapters: bins.to_path_buf(),
            client: bins.join("d-ready-list"),
            ours: examples.join("server"),
            axum: examples.join("axum_server"),
            measured: examples.join("measured"),
        };
        for program in [
            &programs.client,
            &programs.ours,
            &programs.axum,
            &programs.measured,
        ] {
            if !program.exists() {
                return Err(io::Error::other(format!(
                    "{} is missing: scripts/bench builds it",
                    program.display()
                )));
            }
        }
        Ok(programs)
    }

    /// The server's program and arguments.
    fn server(
        &self,
        contender: Contender,
        listener: &str,
        workers: usize,
    ) -> (PathBuf, Vec<String>) {
        let workers = workers.to_string();
        match contender {
            Contender::Chapter4 => (
                self.ours.clone(),
                [
                    "--port",
                    "0",
                    "--workers",
                    &workers,
                    "--listener",
                    listener,
                    "--deadline",
                    SERVER_DEADLINE,
                ]
                .map(str::to_string)
                .to_vec(),
            ),
            Contender::Axum => (
                self.axum.clone(),
                ["--workers", &workers, "--deadline", SERVER_DEADLINE]
                    .map(str::to_string)
                    .to_vec(),
            ),
        }
    }
}

/// A server in a process of its own, started by `wrapper` (measured, or
/// strace), stopped when its stdin closes.
struct Running {
    child: Child,
    stdout: BufReader<ChildStdout>,
    stderr: JoinHandle<String>,
    addr: String,
}

impl Running {
    fn start(wrapper: &mut Command) -> io::Result<Running> {
        let mut child = wrapper
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut stderr_pipe = child.stderr.take().expect("piped");
        // Read as it comes: a server that reports many failures must not
        // block on a full pipe.
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text);
            text
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix("server: listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other(format!(
                "a server did not start: {line:?}"
            )));
        };
        let addr = addr
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        Ok(Running {
            child,
            stdout,
            stderr,
            addr,
        })
    }

    /// Closes the server's stdin and waits for it: what it printed after
    /// its first line, and on stderr.
    fn stop(mut self) -> io::Result<(String, String)> {
        drop(self.child.stdin.take());
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest)?;
        self.child.wait()?;
        let stderr = self.stderr.join().unwrap_or_default();
        Ok((rest, stderr))
    }
}

/// Runs chapter 4's client against `addr`: its standard output.
fn client(programs: &Programs, addr: &str, requests: usize) -> io::Result<String> {
    let output = Command::new(&programs.client)
        .args(["--addr", addr, "-n", &requests.to_string()])
        .args(["--scale", &scale_for(requests), "--workers", WORKERS])
        .args(["--deadline", CLIENT_DEADLINE])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    if !output.status.success() {
        eprintln!(
            "  the client failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .next()
                .unwrap_or_default()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Delays from 1,000 ms down: request i waits (N - i) * 1000 ms * scale.
fn scale_for(requests: usize) -> String {
    (1.0 / requests as f64).to_string()
}

/// How late each answered request was, in ms, from the client's report.
fn lateness(stdout: &str, requests: usize) -> io::Result<BTreeMap<usize, f64>> {
    let options = d_ready_list::cli::Options {
        requests,
        scale: scale_for(requests).parse().map_err(io::Error::other)?,
        ..Default::default()
    };
    let delays = options.delays_ms();
    let mut late = BTreeMap::new();
    for line in stdout.lines() {
        let mut words = line.split_whitespace();
        let (Some("request"), Some(request), Some(elapsed), Some("ms")) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            continue;
        };
        let (Ok(request), Ok(elapsed)) = (request.parse::<usize>(), elapsed.parse::<u64>()) else {
            continue;
        };
        if request < requests {
            late.insert(request, elapsed.saturating_sub(delays[request]) as f64);
        }
    }
    Ok(late)
}

/// One run of one server.
#[derive(Debug, Clone)]
struct Run {
    contender: Contender,
    pair: usize,
    order: usize,
    requests: usize,
    status: String,
    answered: usize,
    p99_late_ms: f64,
    user_ms: f64,
    sys_ms: f64,
    rss_kib: u64,
}

impl Run {
    fn cpu_ms(&self) -> f64 {
        self.user_ms + self.sys_ms
    }
}

fn run_once(
    programs: &Programs,
    contender: Contender,
    requests: usize,
    pair: usize,
    order: usize,
) -> io::Result<Run> {
    let (server, args) = programs.server(contender, "shared", 2);
    let running = Running::start(
        Command::new(&programs.measured)
            .args(["--deadline", KILL_AFTER, "--"])
            .arg(server)
            .args(args),
    )?;
    let stdout = client(programs, &running.addr, requests)?;
    let (_, stderr) = running.stop()?;
    let report = Report::find(&stderr)?;
    let late = lateness(&stdout, requests)?;
    let values: Vec<f64> = late.values().copied().collect();
    Ok(Run {
        contender,
        pair,
        order,
        requests,
        status: report.status.clone(),
        answered: late.len(),
        p99_late_ms: if values.is_empty() {
            f64::NAN
        } else {
            percentile(&values, 99.0)
        },
        user_ms: report.user_us as f64 / 1000.0,
        sys_ms: report.sys_us as f64 / 1000.0,
        rss_kib: report.rss_kib,
    })
}

pub fn run(ctx: &Context) -> io::Result<Vec<Goal>> {
    let programs = Programs::find(&ctx.bins)?;
    let (requests, pairs) = if ctx.quick {
        (QUICK_REQUESTS, QUICK_PAIRS)
    } else {
        (REQUESTS, PAIRS)
    };
    let mut runs = Vec::new();
    for pair in 1..=pairs {
        let order = if pair % 2 == 1 {
            [Contender::Chapter4, Contender::Axum]
        } else {
            [Contender::Axum, Contender::Chapter4]
        };
        for (place, contender) in order.into_iter().enumerate() {
            let run = run_once(&programs, contender, requests, pair, place + 1)?;
            eprintln!(
                "  {requests}, {}: {} answered, CPU {:.0} ms, {:.1} MiB, p99 {:.0} ms late",
                contender.name(),
                run.answered,
                run.cpu_ms(),
                run.rss_kib as f64 / 1024.0,
                run.p99_late_ms
            );
            runs.push(run);
        }
    }
    let rows: Vec<String> = runs
        .iter()
        .map(|run| {
            format!(
                "{},{},{},{},{},{},{:.1},{:.1},{:.1},{}",
                run.contender.name(),
                run.pair,
                run.order,
                run.requests,
                run.status,
                run.answered,
                run.p99_late_ms,
                run.user_ms,
                run.sys_ms,
                run.rss_kib
            )
        })
        .collect();
    ctx.write_csv(
        "server.csv",
        "server,pair,order,requests,status,answered,p99_late_ms,user_ms,sys_ms,rss_kib",
        &rows,
    )?;
    let mut goals = goals(&runs, requests);
    let mut text = table(&runs, requests, &goals);

    let (every, every_goal) = every_chapter(&programs)?;
    text.push_str(&every);
    goals.push(every_goal);
    let spread = spread(ctx, &programs)?;
    text.push_str(&spread);
    let (traced, mut traced_goals) = syscalls(ctx, &programs)?;
    text.push_str(&traced);
    goals.append(&mut traced_goals);
    ctx.write_table("server.md", &text)?;
    print!("{text}");
    Ok(goals)
}

/// The ratio chapter 4 / axum of `value`, pair by pair.
fn paired(runs: &[Run], value: fn(&Run) -> f64) -> Vec<f64> {
    runs.iter()
        .filter(|run| run.contender == Contender::Chapter4)
        .filter_map(|ours| {
            let theirs = runs
                .iter()
                .find(|run| run.contender == Contender::Axum && run.pair == ours.pair)?;
            Some(value(ours) / value(theirs))
        })
        .filter(|ratio| ratio.is_finite())
        .collect()
}

/// p99 lateness plus 1 ms, so that two runs with no lateness at all
/// compare as equal rather than as 0 / 0.
fn late_plus_one(run: &Run) -> f64 {
    run.p99_late_ms + 1.0
}

/// What a goal compares, run by run.
type Value = fn(&Run) -> f64;

const GOALS: [(&str, Value, Want); 3] = [
    ("CPU time", Run::cpu_ms, Want::AtMost(0.7)),
    ("peak RSS", |run| run.rss_kib as f64, Want::AtMost(0.5)),
    ("p99 lateness (+1 ms)", late_plus_one, Want::AtMost(1.0)),
];

fn goals(runs: &[Run], requests: usize) -> Vec<Goal> {
    let answered: usize = runs.iter().map(|run| run.answered).sum();
    let asked: usize = runs.iter().map(|run| run.requests).sum();
    let mut goals = vec![Goal {
        measurement: "server",
        name: "server: answered / requested in every run of both servers".into(),
        wanted: "all (1.000x)".into(),
        measured: ratio(answered as f64 / asked.max(1) as f64),
        verdict: if answered == asked && asked > 0 {
            Verdict::Met
        } else {
            Verdict::Missed
        },
    }];
    for (what, value, want) in GOALS {
        let ratios = paired(runs, value);
        if !ratios.is_empty() {
            goals.push(Goal::interval(
                "server",
                format!("server: {what} at {requests} requests, chapter 4 / axum"),
                want,
                &summarize(&ratios),
            ));
        }
    }
    goals
}

fn table(runs: &[Run], requests: usize, goals: &[Goal]) -> String {
    let median = |contender: Contender, value: fn(&Run) -> f64| {
        let values: Vec<f64> = runs
            .iter()
            .filter(|run| run.contender == contender)
            .map(value)
            .filter(|v| v.is_finite())
            .collect();
        if values.is_empty() {
            f64::NAN
        } else {
            measure::stats::median(&values)
        }
    };
    let pairs = runs.iter().map(|run| run.pair).max().unwrap_or(0);
    let mut rows = Vec::new();
    for contender in [Contender::Chapter4, Contender::Axum] {
        let answered: usize = runs
            .iter()
            .filter(|r| r.contender == contender)
            .map(|r| r.answered)
            .sum();
        let asked: usize = runs
            .iter()
            .filter(|r| r.contender == contender)
            .map(|r| r.requests)
            .sum();
        rows.push(vec![
            contender.name().to_string(),
            format!("{:.0}", median(contender, Run::cpu_ms)),
            format!(
                "{:.1}",
                median(contender, |run| run.rss_kib as f64) / 1024.0
            ),
            format!("{:.0}", median(contender, |run| run.p99_late_ms)),
            format!("{answered} of {asked}"),
        ]);
    }
    let mut text = format!(
        "{requests} requests at once from chapter 4's client, 2 worker threads per server, \
         {pairs} pairs in alternating order; medians of the server's own costs:\n\n{}\n",
        output::table(
            &[
                "server",
                "CPU ms",
                "peak RSS MiB",
                "p99 lateness ms",
                "answered"
            ],
            &rows
        )
    );
    text.push_str("\nThe goals, on the ratios pair by pair:\n\n");
    let goal_rows: Vec<Vec<String>> = goals
        .iter()
        .map(|goal| {
            let name = goal
                .name
                .split_once(": ")
                .map_or(goal.name.as_str(), |(_, rest)| rest);
            vec![
                name.to_string(),
                goal.wanted.clone(),
                goal.measured.clone(),
                goal.verdict.word().to_string(),
            ]
        })
        .collect();
    text.push_str(&output::table(
        &["goal", "wanted", "measured", "verdict"],
        &goal_rows,
    ));
    text
}

/// Every chapter's client, pointed at chapter 4's server with `--addr`:
/// how many of its requests each one reports answered.
fn every_chapter(programs: &Programs) -> io::Result<(String, Goal)> {
    const CHAPTERS: [&str; 4] = ["a-epoll", "b-edge-triggered", "c-oneshot", "d-ready-list"];
    const EACH: usize = 100;
    let (server, args) = programs.server(Contender::Chapter4, "shared", 2);
    let running = Running::start(Command::new(server).args(args))?;
    let mut rows = Vec::new();
    let mut all = true;
    for chapter in CHAPTERS {
        let output = Command::new(programs.chapters.join(chapter))
            .args([
                "--addr",
                &running.addr,
                "-n",
                &EACH.to_string(),
                "--scale",
                "0.01",
            ])
            .stdin(Stdio::null())
            .output()?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        // The summary line: "N responses in T ms on W threads".
        let answered = stdout
            .lines()
            .find_map(|line| line.split_once(" responses in "))
            .and_then(|(n, _)| n.trim().parse::<usize>().ok())
            .unwrap_or(0);
        all &= output.status.success() && answered == EACH;
        rows.push(vec![
            chapter.to_string(),
            format!("{answered} of {EACH}"),
            output.status.to_string(),
        ]);
    }
    running.stop()?;
    let goal = Goal {
        measurement: "server",
        name: "server: every chapter's client gets every answer from chapter 4's server".into(),
        wanted: "all".into(),
        measured: if all { "all".into() } else { "not all".into() },
        verdict: if all { Verdict::Met } else { Verdict::Missed },
    };
    Ok((
        format!(
            "\nEach chapter's client with `--addr` pointed at chapter 4's server, \
             {EACH} requests (`--scale 0.01`):\n\n{}",
            output::table(&["client", "answered", "exit"], &rows)
        ),
        goal,
    ))
}

// ANCHOR: spread
/// How the connections of one run are shared among `SPREAD_WORKERS`
/// workers, in each listener mode: unevenness is the busiest worker's
/// count over the mean (1.0 is even; 4.0 is all on one of four).
fn spread(ctx: &Context, programs: &Programs) -> io::Result<String> {
    let requests = if ctx.quick { QUICK_REQUESTS } else { REQUESTS };
    let runs = if ctx.quick { 2 } else { SPREAD_RUNS };
    let mut rows_csv = Vec::new();
    let mut rows = Vec::new();
    for round in 1..=runs {
        for mode in ["shared", "reuseport"] {
            let (server, args) = programs.server(Contender::Chapter4, mode, SPREAD_WORKERS);
            let running = Running::start(Command::new(server).args(args))?;
            client(programs, &running.addr, requests)?;
            let (rest, _) = running.stop()?;
            let accepted: Vec<u64> = rest
                .lines()
                .find_map(|line| line.strip_prefix("accepted per worker: "))
                .map(|counts| {
                    counts
                        .split_whitespace()
                        .filter_map(|n| n.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            let total: u64 = accepted.iter().sum();
            let mean = total as f64 / accepted.len().max(1) as f64;
            let uneven = accepted.iter().copied().max().unwrap_or(0) as f64 / mean;
            let counts: Vec<String> = accepted.iter().map(u64::to_string).collect();
            eprintln!(
                "  accept spread, {mode}: {} (unevenness {uneven:.2})",
                counts.join(" ")
            );
            rows_csv.push(format!("{mode},{round},{},{uneven:.3}", counts.join(" ")));
            rows.push((mode, counts.join(" / "), uneven));
        }
    }
    ctx.write_csv(
        "server-spread.csv",
        "listener,run,accepted_per_worker,unevenness",
        &rows_csv,
    )?;
    // The picture: each worker's count in the run of each mode whose
    // unevenness is the median one.
    let mut bars = Vec::new();
    for mode in ["shared", "reuseport"] {
        let mut runs: Vec<&(&str, String, f64)> = rows.iter().filter(|r| r.0 == mode).collect();
        runs.sort_by(|a, b| a.2.total_cmp(&b.2));
        if let Some((_, counts, _)) = runs.get(runs.len() / 2) {
            for (worker, count) in counts.split(" / ").enumerate() {
                bars.push((format!("{mode} {worker}"), count.parse().unwrap_or(0.0)));
            }
        }
    }
    crate::plot::bars(
        &ctx.out.join("server-spread.svg"),
        &format!(
            "Connections accepted by each of {SPREAD_WORKERS} workers, of {requests} (median run)"
        ),
        &bars,
    )?;
    let mut table_rows = Vec::new();
    for mode in ["shared", "reuseport"] {
        let values: Vec<f64> = rows.iter().filter(|r| r.0 == mode).map(|r| r.2).collect();
        let median = measure::stats::median(&values);
        let runs: Vec<String> = rows
            .iter()
            .filter(|r| r.0 == mode)
            .map(|r| r.1.clone())
            .collect();
        let name = if mode == "shared" {
            "one listener, `EPOLLEXCLUSIVE`"
        } else {
            "a listener per worker, `SO_REUSEPORT`"
        };
        table_rows.push(vec![
            name.to_string(),
            runs.join("; "),
            format!("{median:.2}"),
        ]);
    }
    Ok(format!(
        "\nConnections accepted by each of {SPREAD_WORKERS} workers, {requests} requests a run, \
         {runs} runs each; unevenness is the busiest worker's count over the mean \
         (1.00 is even, {SPREAD_WORKERS}.00 all on one):\n\n{}",
        output::table(
            &[
                "listener",
                "accepted per worker, run by run",
                "unevenness (median)"
            ],
            &table_rows
        )
    ))
}
// ANCHOR_END: spread

/// System calls per request on the server side, from a full strace of
/// each server at 1,000 requests, less those of a run with no request.
fn syscalls(ctx: &Context, programs: &Programs) -> io::Result<(String, Vec<Goal>)> {
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("server: syscalls skipped, strace is not installed (apt-get install strace)");
        return Ok((
            "\nSystem calls: not counted, strace is not installed.\n".into(),
            Vec::new(),
        ));
    }
    let scratch =
        std::env::temp_dir().join(format!("measure-server-strace-{}", std::process::id()));
    let mut per_contender = Vec::new();
    for contender in [Contender::Chapter4, Contender::Axum] {
        let idle = traced(programs, contender, 0, &scratch)?;
        let busy = traced(programs, contender, TRACED_REQUESTS, &scratch)?;
        let mut per_request = BTreeMap::new();
        for (name, calls) in &busy {
            let net = calls.saturating_sub(idle.get(name).copied().unwrap_or(0));
            if net > 0 {
                per_request.insert(name.clone(), net as f64 / TRACED_REQUESTS as f64);
            }
        }
        per_contender.push(per_request);
    }
    let _ = std::fs::remove_file(&scratch);
    let kinds = [
        "accept4",
        "epoll_ctl ADD",
        "epoll_ctl DEL",
        "epoll_ctl MOD",
        "recvfrom",
        "sendto",
        "close",
        "epoll_wait",
        "fcntl",
    ];
    let mut rows = Vec::new();
    let mut csv = Vec::new();
    for kind in kinds {
        let counts: Vec<f64> = per_contender
            .iter()
            .map(|p| p.get(kind).copied().unwrap_or(0.0))
            .collect();
        csv.push(format!("{kind},{:.3},{:.3}", counts[0], counts[1]));
        rows.push(vec![
            kind.to_string(),
            format!("{:.2}", counts[0]),
            format!("{:.2}", counts[1]),
        ]);
    }
    // The others by name where either server makes one in ten requests
    // or more; the rest together.
    let mut shown: Vec<&str> = kinds.to_vec();
    let frequent: std::collections::BTreeSet<&String> = per_contender
        .iter()
        .flat_map(|p| {
            p.iter()
                .filter(|(k, v)| **v >= 0.1 && !kinds.contains(&k.as_str()))
        })
        .map(|(k, _)| k)
        .collect();
    for kind in frequent {
        let counts: Vec<f64> = per_contender
            .iter()
            .map(|p| p.get(kind).copied().unwrap_or(0.0))
            .collect();
        csv.push(format!("{kind},{:.3},{:.3}", counts[0], counts[1]));
        rows.push(vec![
            kind.to_string(),
            format!("{:.2}", counts[0]),
            format!("{:.2}", counts[1]),
        ]);
        shown.push(kind);
    }
    let other: Vec<f64> = per_contender
        .iter()
        .map(|p| {
            p.iter()
                .filter(|(k, _)| !shown.contains(&k.as_str()))
                .map(|(_, v)| v)
                .sum()
        })
        .collect();
    csv.push(format!("other,{:.3},{:.3}", other[0], other[1]));
    rows.push(vec![
        "other".into(),
        format!("{:.2}", other[0]),
        format!("{:.2}", other[1]),
    ]);
    let all: Vec<f64> = per_contender.iter().map(|p| p.values().sum()).collect();
    rows.push(vec![
        "**all**".into(),
        format!("**{:.2}**", all[0]),
        format!("**{:.2}**", all[1]),
    ]);
    ctx.write_csv("server-syscalls.csv", "syscall,chapter4,axum", &csv)?;
    let ours = &per_contender[0];
    let get = |kind: &str| ours.get(kind).copied().unwrap_or(0.0);
    let epoll_ctl = get("epoll_ctl ADD") + get("epoll_ctl DEL") + get("epoll_ctl MOD");
    let goals = vec![
        Goal::count(
            "server",
            format!("server: epoll_ctl per request at {TRACED_REQUESTS} requests, chapter 4"),
            Want::AtMost(2.0),
            epoll_ctl,
        ),
        Goal::count(
            "server",
            "server: EPOLL_CTL_MOD and fcntl per request, chapter 4".into(),
            Want::AtMost(0.0),
            get("epoll_ctl MOD") + get("fcntl"),
        ),
    ];
    Ok((
        format!(
            "\nSystem calls per request on the server side, {TRACED_REQUESTS} requests under \
             `strace -f`, less a run with none:\n\n{}",
            output::table(&["per request", "chapter 4", "axum"], &rows)
        ),
        goals,
    ))
}

/// One server under `strace -f`, `requests` requests from the client:
/// calls by name, with `epoll_ctl` split by its operation.
fn traced(
    programs: &Programs,
    contender: Contender,
    requests: usize,
    log: &Path,
) -> io::Result<BTreeMap<String, u64>> {
    let (server, args) = programs.server(contender, "shared", 2);
    let running = Running::start(
        Command::new("strace")
            .args(["-f", "-qq", "-o"])
            .arg(log)
            .arg(server)
            .args(args),
    )?;
    if requests > 0 {
        client(programs, &running.addr, requests)?;
    }
    running.stop()?;
    let text = std::fs::read_to_string(log)?;
    let mut calls = BTreeMap::new();
    for line in text.lines() {
        // "PID name(args) = result", or "PID name(args <unfinished ...>"
        // whose "<... name resumed>" line is the same call.
        let Some((_, call)) = line.split_once(' ') else {
            continue;
        };
        let call = call.trim_start();
        if call.starts_with("<...") || call.starts_with("+++") || call.starts_with("---") {
            continue;
        }
        let Some((name, rest)) = call.split_once('(') else {
            continue;
        };
        let name = if name == "epoll_ctl" {
            let op = rest.split(", ").nth(1).unwrap_or_default();
            format!("epoll_ctl {}", op.trim_start_matches("EPOLL_CTL_"))
        } else {
            name.to_string()
        };
        *calls.entry(name).or_insert(0) += 1;
    }
    Ok(calls)
}
