//! The scale measurement's data, tables, plot and goals.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use measure::stats::{Summary, median, summarize};

use super::{Client, LATE_MS, Run, THREADS_SERVER_AT};
use crate::goals::{Goal, Verdict, Want};
use crate::output::{self, ratio};
use crate::plot::{self, Panel};
use crate::processes::Server;
use crate::runs::Context;

/// What bounds a run here, for the note under the tables.
pub struct Limits {
    /// The peak RSS every process started by `measured` reports at least.
    pub floor_kib: u64,
    /// Whether the runs had a network namespace of their own.
    pub private: bool,
    pub fd_limit: u64,
    pub ports: u64,
}

pub fn write_data(ctx: &Context, runs: &[Run]) -> io::Result<()> {
    let rows: Vec<String> = runs
        .iter()
        .map(|run| {
            format!(
                "{},{},{},{},{},{},{},{},{},{},{},{:.1},{:.1},{:.1},{}",
                run.server.name(),
                run.client.name(),
                run.requests,
                run.pair,
                run.order,
                run.status,
                run.completed,
                run.late,
                run.overflows,
                run.drops,
                run.syn_retransmits,
                run.wall_ms,
                run.user_ms,
                run.sys_ms,
                run.rss_kib
            )
        })
        .collect();
    ctx.write_csv(
        "scale.csv",
        "server,client,requests,pair,order,status,completed,late,listen_overflows,listen_drops,syn_retransmits,wall_ms,user_ms,sys_ms,peak_rss_kib",
        &rows,
    )
}

/// The runs `write_data` recorded in `out`, for drawing the plot again.
pub fn read_data(out: &Path) -> io::Result<Vec<Run>> {
    let bad = |line: &str| io::Error::other(format!("scale.csv: bad row {line:?}"));
    let csv = std::fs::read_to_string(out.join("scale.csv"))?;
    let mut runs = Vec::new();
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 15 {
            return Err(bad(line));
        }
        let int = |i: usize| f[i].parse::<u64>().map_err(|_| bad(line));
        let float = |i: usize| f[i].parse::<f64>().map_err(|_| bad(line));
        let server = [Server::Threads, Server::Tokio]
            .into_iter()
            .find(|s| s.name() == f[0])
            .ok_or_else(|| bad(line))?;
        let client = [Client::Chapter4, Client::Tokio]
            .into_iter()
            .find(|c| c.name() == f[1])
            .ok_or_else(|| bad(line))?;
        runs.push(Run {
            server,
            client,
            requests: int(2)? as usize,
            pair: int(3)? as usize,
            order: int(4)? as usize,
            status: f[5].to_string(),
            completed: int(6)? as usize,
            late: int(7)? as usize,
            overflows: int(8)?,
            drops: int(9)?,
            syn_retransmits: int(10)?,
            wall_ms: float(11)?,
            user_ms: float(12)?,
            sys_ms: float(13)?,
            rss_kib: int(14)?,
        });
    }
    Ok(runs)
}

/// The runs of one server, count and client.
fn select(runs: &[Run], server: Server, requests: usize, client: Client) -> Vec<&Run> {
    runs.iter()
        .filter(|run| run.server == server && run.requests == requests && run.client == client)
        .collect()
}

/// The (server, count) groups measured, in the order they ran.
fn groups(runs: &[Run]) -> Vec<(Server, usize)> {
    let mut groups: Vec<(Server, usize)> = Vec::new();
    for run in runs {
        if !groups.contains(&(run.server, run.requests)) {
            groups.push((run.server, run.requests));
        }
    }
    groups
}

/// Median, lowest and highest.
fn spread(values: &[f64]) -> (f64, f64, f64) {
    let lowest = values.iter().copied().fold(f64::INFINITY, f64::min);
    let highest = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (median(values), lowest, highest)
}

/// Chapter 4 / tokio within each pair of runs, summarized; `None` if no
/// pair was run.
fn paired(
    runs: &[Run],
    server: Server,
    requests: usize,
    value: fn(&Run) -> f64,
) -> Option<Summary> {
    let chapter4 = select(runs, server, requests, Client::Chapter4);
    let tokio = select(runs, server, requests, Client::Tokio);
    let ratios: Vec<f64> = chapter4
        .iter()
        .filter_map(|a| {
            let b = tokio.iter().find(|b| b.pair == a.pair)?;
            Some(value(a) / value(b))
        })
        .collect();
    (!ratios.is_empty()).then(|| summarize(&ratios))
}

fn wall(run: &Run) -> f64 {
    run.wall_ms
}

fn cpu(run: &Run) -> f64 {
    run.cpu_ms()
}

fn rss(run: &Run) -> f64 {
    run.rss_kib as f64
}

pub fn tables(runs: &[Run], skipped: &[(usize, String)], limits: &Limits) -> String {
    let mut rows = Vec::new();
    let mut ratio_rows = Vec::new();
    let mut burst_rows = Vec::new();
    for (server, requests) in groups(runs) {
        for client in [Client::Chapter4, Client::Tokio] {
            let these = select(runs, server, requests, client);
            let answered: usize = these.iter().map(|run| run.completed).sum();
            let of = these.len() * requests;
            let show = |value: fn(&Run) -> f64, scale: f64, unit: &str, digits: usize| {
                let values: Vec<f64> = these.iter().map(|run| value(run) / scale).collect();
                let (mid, low, high) = spread(&values);
                format!("{mid:.digits$} {unit} ({low:.digits$} to {high:.digits$})")
            };
            rows.push(vec![
                server.name().to_string(),
                requests.to_string(),
                client.name().to_string(),
                these.len().to_string(),
                format!("{answered} of {of}"),
                show(wall, 1.0, "ms", 0),
                show(cpu, 1.0, "ms", 0),
                show(rss, 1024.0, "MiB", 1),
            ]);
            let sum = |value: fn(&Run) -> u64| these.iter().map(|run| value(run)).sum::<u64>();
            let retrying = these.iter().filter(|run| run.syn_retransmits > 0).count();
            burst_rows.push(vec![
                server.name().to_string(),
                requests.to_string(),
                client.name().to_string(),
                format!("{retrying} of {}", these.len()),
                sum(|run| run.syn_retransmits).to_string(),
                sum(|run| run.overflows).to_string(),
                sum(|run| run.drops).to_string(),
                sum(|run| run.late as u64).to_string(),
            ]);
        }
        let show = |summary: Option<Summary>| match summary {
            Some(s) => format!(
                "{} ({} to {})",
                ratio(s.median),
                ratio(s.interval.0),
                ratio(s.interval.1)
            ),
            None => "not run".to_string(),
        };
        let pairs = paired(runs, server, requests, wall);
        ratio_rows.push(vec![
            server.name().to_string(),
            requests.to_string(),
            pairs.map_or(0, |s| s.count).to_string(),
            pairs.map_or(String::new(), |s| format!("{:.0}%", s.confidence * 100.0)),
            show(paired(runs, server, requests, wall)),
            show(paired(runs, server, requests, cpu)),
            show(paired(runs, server, requests, rss)),
        ]);
    }
    let mut text = output::table(
        &[
            "server",
            "requests",
            "client",
            "runs",
            "answered",
            "wall time, median (range)",
            "CPU time (user + system)",
            "peak RSS",
        ],
        &rows,
    );
    let _ = write!(
        text,
        "\nEach run against a fresh server process. Peak RSS is the client process's own \
         `ru_maxrss`; any process started the same way reports at least {:.1} MiB \
         (`true` does).\n\n",
        limits.floor_kib as f64 / 1024.0
    );
    text.push_str(&output::table(
        &[
            "server",
            "requests",
            "pairs",
            "interval",
            "wall time, chapter 4 / tokio",
            "CPU time",
            "peak RSS",
        ],
        &ratio_rows,
    ));
    text.push_str(
        "\nThe median of the ratios within each pair of runs, and a confidence interval \
         for it, with the confidence that the number of pairs allows.\n\n",
    );
    text.push_str(&output::table(
        &[
            "server",
            "requests",
            "client",
            "runs with SYN retransmits",
            "SYN retransmits",
            "ListenOverflows",
            "ListenDrops",
            "answers over 1 s late",
        ],
        &burst_rows,
    ));
    let _ = writeln!(
        text,
        "\nSums over the runs. The counters are the kernel's (`TcpExt` in \
         `/proc/net/netstat`){}. An answer is late when it came more than {LATE_MS} ms \
         after its delay.",
        if limits.private {
            ", in a network namespace that carried nothing else"
        } else {
            ", machine-wide: other programs' connections count too"
        }
    );
    for (requests, reason) in skipped {
        let _ = writeln!(text, "\nNot run at {requests} requests: {reason}.");
    }
    let _ = writeln!(
        text,
        "\nOpen-file limit {}; {} ephemeral ports per server address.",
        limits.fd_limit, limits.ports
    );
    text
}

pub fn draw(out: &Path, runs: &[Run]) -> io::Result<()> {
    let series = |value: fn(&Run) -> f64, scale: f64| -> Vec<(String, Vec<(f64, f64)>)> {
        [Client::Chapter4, Client::Tokio]
            .into_iter()
            .map(|client| {
                let points = groups(runs)
                    .into_iter()
                    .filter(|(server, _)| *server == Server::Tokio)
                    .map(|(server, requests)| {
                        let values: Vec<f64> = select(runs, server, requests, client)
                            .iter()
                            .map(|run| value(run) / scale)
                            .collect();
                        (requests as f64, median(&values))
                    })
                    .collect();
                (client.name().to_string(), points)
            })
            .collect()
    };
    plot::panels(
        &out.join("scale.svg"),
        &[
            Panel {
                title: "Wall time, median (ms)",
                x_label: "concurrent requests",
                y_label: "ms",
                series: series(wall, 1.0),
            },
            Panel {
                title: "Peak RSS, median (MiB)",
                x_label: "concurrent requests",
                y_label: "MiB",
                series: series(rss, 1024.0),
            },
        ],
    )
}

/// What a goal reads from a run.
type Value = fn(&Run) -> f64;

const GOALS: [(&str, Value, Want); 3] = [
    ("CPU time", cpu, Want::AtMost(0.9)),
    ("wall time", wall, Want::AtMost(1.0)),
    ("peak RSS", rss, Want::AtMost(0.6)),
];

pub fn goals(runs: &[Run], skipped: &[(usize, String)]) -> Vec<Goal> {
    let answered: usize = runs.iter().map(|run| run.completed).sum();
    let asked: usize = runs.iter().map(|run| run.requests).sum();
    let mut goals = vec![Goal {
        measurement: "scale",
        name: "scale: answered / requested in every run of both clients".into(),
        wanted: "all (1.000x)".into(),
        measured: ratio(answered as f64 / asked.max(1) as f64),
        verdict: if answered == asked && asked > 0 {
            Verdict::Met
        } else {
            Verdict::Missed
        },
    }];
    for (what, value, want) in GOALS {
        if let Some(summary) = paired(runs, Server::Tokio, THREADS_SERVER_AT, value) {
            goals.push(Goal::interval(
                "scale",
                format!("scale: {what} at {THREADS_SERVER_AT} chapter 4 / tokio"),
                want,
                &summary,
            ));
        }
    }
    for (requests, reason) in skipped {
        goals.push(Goal {
            measurement: "scale",
            name: format!("scale: {requests} requests from one client process"),
            wanted: "run and all answered".into(),
            measured: format!("not run: {reason}"),
            verdict: Verdict::Missed,
        });
    }
    goals
}
