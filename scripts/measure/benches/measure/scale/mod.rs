//! Scale: chapter 4's release binary and a tokio client doing the same work
//! (`examples/tokio_client.rs`): N requests at once, one connection each,
//! delays from 1,000 ms down to about 0, 2 worker threads. Each run starts
//! a fresh delay server in a process of its own, then the client under
//! `examples/measured.rs`, which reports the client's wall time, CPU time
//! and peak RSS from `wait4`. The two clients run in pairs, in alternating
//! order.
//!
//! Also counted, for the connect burst: the kernel's `ListenOverflows`,
//! `ListenDrops` and `TCPSynRetrans` over each run, and the answers that
//! came more than `LATE_MS` after their delay (a dropped SYN is retried
//! after a second).
//!
//! Where the tool may (root), the runs happen in a network namespace of
//! their own, so that those counters and loopback carry nothing else.

mod kernel;
mod report;

use std::collections::BTreeSet;
use std::io;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};

use crate::goals::Goal;
use crate::ports;
use crate::processes::{self, Programs, Report, Server, ServerProcess};
use crate::runs::Context;
use crate::sys;
use kernel::{ephemeral_ports, fd_limit, listen_counters};

/// The numbers of concurrent requests, each a run of both clients.
const COUNTS: [usize; 6] = [1_000, 5_000, 10_000, 15_000, 19_000, 50_000];
/// Where the chapters' own thread-per-connection server is measured too.
const THREADS_SERVER_AT: usize = 10_000;
/// Pairs of runs (one of each client) per server and count, and more
/// where the goals are decided (10,000 on the event-driven server), for a
/// narrower interval: 15 pairs give a 96% interval from the 4th lowest
/// ratio to the 4th highest, where 7 give only the lowest to the highest.
const PAIRS: usize = 7;
const GOAL_PAIRS: usize = 15;
/// What `--quick` runs instead: one count, three pairs.
const QUICK_COUNTS: [usize; 1] = [1_000];
const QUICK_PAIRS: usize = 3;
const WORKERS: &str = "2";
/// Each client's own `--deadline`, and when `measured` kills it.
const CLIENT_DEADLINE: &str = "60";
const KILL_AFTER: &str = "90";
/// An answer this much later than its delay waited as long as a dropped
/// SYN does: its retry comes one second later. (Half a second would count
/// the connect burst itself, which takes that long at 10,000.)
const LATE_MS: u64 = 1000;
/// Descriptors a client or server needs besides one per connection.
const SPARE_FDS: u64 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Chapter4,
    Tokio,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Chapter4 => "chapter 4",
            Client::Tokio => "tokio",
        }
    }
}

/// One run of one client.
#[derive(Debug, Clone)]
struct Run {
    server: Server,
    client: Client,
    requests: usize,
    pair: usize,
    /// 1 if this client ran first in its pair, else 2.
    order: usize,
    status: String,
    completed: usize,
    late: usize,
    overflows: u64,
    drops: u64,
    syn_retransmits: u64,
    wall_ms: f64,
    user_ms: f64,
    sys_ms: f64,
    rss_kib: u64,
}

impl Run {
    fn cpu_ms(&self) -> f64 {
        self.user_ms + self.sys_ms
    }
}

pub fn run(ctx: &Context) -> io::Result<Vec<Goal>> {
    let programs = Programs::find(&ctx.bins)?;
    let home = sys::current_network()?;
    let private = match sys::new_network() {
        Ok(()) => true,
        Err(error) => {
            eprintln!(
                "  (no network namespace of its own: {error}; the counters are the machine's)"
            );
            false
        }
    };
    let result = measure(ctx, &programs, private);
    if private {
        sys::enter_network(home.as_fd())?;
    }
    result
}

fn measure(ctx: &Context, programs: &Programs, private: bool) -> io::Result<Vec<Goal>> {
    let fd_limit = fd_limit()?;
    let ports = ephemeral_ports()?;
    let floor = floor_kib(programs)?;
    let mut runs = Vec::new();
    let mut skipped = Vec::new();
    let (plan, pairs) = if ctx.quick {
        let plan: Vec<_> = QUICK_COUNTS.iter().map(|&n| (Server::Tokio, n)).collect();
        (plan, QUICK_PAIRS)
    } else {
        let mut plan = vec![(Server::Threads, THREADS_SERVER_AT)];
        plan.extend(COUNTS.iter().map(|&n| (Server::Tokio, n)));
        (plan, PAIRS)
    };
    for (server, requests) in plan {
        if let Some(reason) = cannot_run(requests, fd_limit, ports) {
            if !skipped.iter().any(|(n, _)| *n == requests) {
                eprintln!("  {requests} requests: not run: {reason}");
                skipped.push((requests, reason));
            }
            continue;
        }
        let pairs = if !ctx.quick && server == Server::Tokio && requests == THREADS_SERVER_AT {
            GOAL_PAIRS
        } else {
            pairs
        };
        for pair in 0..pairs {
            let order = if pair % 2 == 0 {
                [Client::Chapter4, Client::Tokio]
            } else {
                [Client::Tokio, Client::Chapter4]
            };
            for (place, client) in order.into_iter().enumerate() {
                let run = run_once(programs, server, client, requests, pair + 1, place + 1)?;
                eprintln!(
                    "  {} server, {requests}, {}: {} answered, {:.0} ms, CPU {:.0} ms, {:.1} MiB, {} late",
                    server.name(),
                    client.name(),
                    run.completed,
                    run.wall_ms,
                    run.cpu_ms(),
                    run.rss_kib as f64 / 1024.0,
                    run.late
                );
                runs.push(run);
            }
        }
    }
    report::write_data(ctx, &runs)?;
    let limits = report::Limits {
        floor_kib: floor,
        private,
        fd_limit,
        ports,
    };
    let text = report::tables(&runs, &skipped, &limits);
    ctx.write_table("scale.md", &text)?;
    print!("{text}");
    report::draw(&ctx.out, &runs)?;
    // The most connections a run held: the ports trial opens as many.
    let most = runs.iter().map(|run| run.requests).max().unwrap_or(1_000);
    let ports_text = if private {
        ports::run(ctx, most)?
    } else {
        "Not run this time: it narrows the ephemeral port range for a moment, which \
         it does only in a network namespace of its own (root). `scale-ports.csv` \
         is from an earlier run.\n"
            .to_string()
    };
    ctx.write_table("scale-ports.md", &ports_text)?;
    print!("{ports_text}");
    Ok(report::goals(&runs, &skipped))
}

/// Draws the plot again from the recorded `scale.csv` in `out`.
pub fn redraw(out: &std::path::Path) -> io::Result<()> {
    report::draw(out, &report::read_data(out)?)
}

/// Why `requests` connections cannot be held by one client process here.
fn cannot_run(requests: usize, fd_limit: u64, ports: u64) -> Option<String> {
    if requests as u64 + SPARE_FDS > fd_limit {
        Some(format!(
            "the open-file limit is {fd_limit} and only root with CAP_SYS_RESOURCE may raise it"
        ))
    } else if requests as u64 > ports {
        Some(format!(
            "one client address has {ports} ephemeral ports for one server address"
        ))
    } else {
        None
    }
}

/// The peak RSS `measured` reports for `true`: what every reported peak
/// includes at least.
fn floor_kib(programs: &Programs) -> io::Result<u64> {
    let output = Command::new(&programs.measured)
        .args(["--deadline", "10", "--", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    let report = Report::find(&String::from_utf8_lossy(&output.stderr))?;
    Ok(report.rss_kib)
}

/// Delays from 1,000 ms down: request i waits (N - i) * 1000 ms * scale.
fn scale_for(requests: usize) -> String {
    (1.0 / requests as f64).to_string()
}

fn run_once(
    programs: &Programs,
    server: Server,
    client: Client,
    requests: usize,
    pair: usize,
    order: usize,
) -> io::Result<Run> {
    let server_process = ServerProcess::start(&programs.server, server)?;
    let scale = scale_for(requests);
    let program = match client {
        Client::Chapter4 => &programs.chapter("d-ready-list"),
        Client::Tokio => &programs.tokio_client,
    };
    let args: Vec<String> = [
        "--addr",
        &server_process.addr,
        "-n",
        &requests.to_string(),
        "--scale",
        &scale,
        "--workers",
        WORKERS,
        "--deadline",
        CLIENT_DEADLINE,
    ]
    .map(str::to_string)
    .to_vec();
    let before = listen_counters()?;
    let (stdout, report) = processes::measured(programs, KILL_AFTER, program, &args)?;
    let after = listen_counters()?;
    drop(server_process);
    // The same delays as the clients compute, from the same flags.
    let options = d_ready_list::cli::Options {
        requests,
        scale: scale.parse().map_err(io::Error::other)?,
        ..Default::default()
    };
    let delays = options.delays_ms();
    let mut answered = BTreeSet::new();
    let mut late = 0;
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
        if request < requests && answered.insert(request) && elapsed > delays[request] + LATE_MS {
            late += 1;
        }
    }
    Ok(Run {
        server,
        client,
        requests,
        pair,
        order,
        status: report.status,
        completed: answered.len(),
        late,
        overflows: after[0].saturating_sub(before[0]),
        drops: after[1].saturating_sub(before[1]),
        syn_retransmits: after[2].saturating_sub(before[2]),
        wall_ms: report.wall_us as f64 / 1000.0,
        user_ms: report.user_us as f64 / 1000.0,
        sys_ms: report.sys_us as f64 / 1000.0,
        rss_kib: report.rss_kib,
    })
}
