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

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::output::{self, Goal, ratio};
use crate::plot::{self, Panel};
use crate::ports;
use crate::stats::median;
use crate::sys;

/// The numbers of concurrent requests, each a run of both clients.
const COUNTS: [usize; 6] = [1_000, 5_000, 10_000, 15_000, 19_000, 50_000];
/// Where the chapters' own thread-per-connection server is measured too.
const THREADS_SERVER_AT: usize = 10_000;
/// Pairs of runs (one of each client) per server and count.
const PAIRS: usize = 7;
const WORKERS: &str = "2";
/// Each client's own `--deadline`, and when `measured` kills it.
const CLIENT_DEADLINE: &str = "60";
const KILL_AFTER: &str = "90";
/// No server outlives this, whatever happens to the measuring process.
const SERVER_DEADLINE: &str = "600";
/// An answer this much later than its delay waited as long as a dropped
/// SYN does: its retry comes one second later. (Half a second would count
/// the connect burst itself, which takes that long at 10,000.)
const LATE_MS: u64 = 1000;
/// Descriptors a client or server needs besides one per connection.
const SPARE_FDS: u64 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    /// The chapters' delay server, a thread per connection.
    Threads,
    /// `examples/delay_server.rs tokio`: event-driven.
    Tokio,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Threads => "threads",
            Server::Tokio => "tokio",
        }
    }
}

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

/// The programs a run starts.
struct Programs {
    chapter4: PathBuf,
    tokio_client: PathBuf,
    server: PathBuf,
    measured: PathBuf,
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

pub fn run(out: &Path, bins: &Path) -> io::Result<Vec<Goal>> {
    let examples = bins.join("examples");
    let programs = Programs {
        chapter4: bins.join("d-ready-list"),
        tokio_client: examples.join("tokio_client"),
        server: examples.join("delay_server"),
        measured: examples.join("measured"),
    };
    for program in [
        &programs.chapter4,
        &programs.tokio_client,
        &programs.server,
        &programs.measured,
    ] {
        if !program.exists() {
            return Err(io::Error::other(format!(
                "{} is missing: scripts/bench builds it",
                program.display()
            )));
        }
    }
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
    let result = measure(out, &programs, private);
    if private {
        sys::enter_network(home.as_fd())?;
    }
    result
}

fn measure(out: &Path, programs: &Programs, private: bool) -> io::Result<Vec<Goal>> {
    let fd_limit = fd_limit()?;
    let ports = ephemeral_ports()?;
    let floor = floor_kib(programs)?;
    let mut runs = Vec::new();
    let mut skipped = Vec::new();
    let mut plan = vec![(Server::Threads, THREADS_SERVER_AT)];
    plan.extend(COUNTS.iter().map(|&n| (Server::Tokio, n)));
    for (server, requests) in plan {
        if let Some(reason) = cannot_run(requests, fd_limit, ports) {
            if !skipped.iter().any(|(n, _)| *n == requests) {
                eprintln!("  {requests} requests: not run: {reason}");
                skipped.push((requests, reason));
            }
            continue;
        }
        for pair in 0..PAIRS {
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
    write_data(out, &runs)?;
    let text = tables(&runs, &skipped, floor, private, fd_limit, ports);
    output::write_table(out, "scale.md", &text)?;
    print!("{text}");
    draw(out, &runs)?;
    // The most connections a run held: the ports trial opens as many.
    let most = runs.iter().map(|run| run.requests).max().unwrap_or(1_000);
    let ports_text = if private {
        ports::run(out, most)?
    } else {
        "Not run this time: it narrows the ephemeral port range for a moment, which \
         it does only in a network namespace of its own (root). `scale-ports.csv` \
         is from an earlier run.\n"
            .to_string()
    };
    output::write_table(out, "scale-ports.md", &ports_text)?;
    print!("{ports_text}");
    Ok(goals(&runs, &skipped))
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

/// The open-file limit, which `main` has raised to the hard one and which
/// every process started here inherits.
fn fd_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through the pointer, which points
    // at one that lives for the whole call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(limit.rlim_cur)
}

/// How many ports `ip_local_port_range` gives a client for one server.
fn ephemeral_ports() -> io::Result<u64> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")?;
    let bounds: Vec<u64> = range
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    match bounds[..] {
        [low, high] if high >= low => Ok(high - low + 1),
        _ => Err(io::Error::other(format!("ip_local_port_range: {range:?}"))),
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

/// A delay server in a process of its own, stopped when dropped.
struct ServerProcess {
    child: Child,
    addr: String,
}

impl ServerProcess {
    fn start(program: &Path, server: Server) -> io::Result<ServerProcess> {
        let mut child = Command::new(program)
            .args([server.name(), "--deadline", SERVER_DEADLINE])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            BufReader::new(stdout).read_line(&mut line)?;
        }
        let Some(addr) = line.trim().strip_prefix("listening ") else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other(format!(
                "the {} delay server did not start: {line:?}",
                server.name()
            )));
        };
        Ok(ServerProcess {
            addr: addr.to_string(),
            child,
        })
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // The server stops when its standard input closes; it is given ten
        // seconds to close its connections, then killed.
        drop(self.child.stdin.take());
        let end = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `measured` reported.
struct Report {
    status: String,
    wall_us: u64,
    user_us: u64,
    sys_us: u64,
    rss_kib: u64,
}

impl Report {
    fn find(stderr: &str) -> io::Result<Report> {
        let line = stderr
            .lines()
            .rev()
            .find_map(|line| line.strip_prefix("measured: status="))
            .ok_or_else(|| io::Error::other(format!("no report from measured: {stderr}")))?;
        let mut words = line.split_whitespace();
        let status = words.next().unwrap_or_default().to_string();
        let mut field = |name: &str| -> io::Result<u64> {
            words
                .next()
                .and_then(|word| word.strip_prefix(name)?.strip_prefix('='))
                .and_then(|value| value.parse().ok())
                .ok_or_else(|| io::Error::other(format!("measured: no {name} in {line:?}")))
        };
        Ok(Report {
            status,
            wall_us: field("wall_us")?,
            user_us: field("user_us")?,
            sys_us: field("sys_us")?,
            rss_kib: field("maxrss_kib")?,
        })
    }
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
        Client::Chapter4 => &programs.chapter4,
        Client::Tokio => &programs.tokio_client,
    };
    let before = listen_counters()?;
    let output = Command::new(&programs.measured)
        .args(["--deadline", KILL_AFTER, "--"])
        .arg(program)
        .args(["--addr", &server_process.addr])
        .args(["-n", &requests.to_string(), "--scale", &scale])
        .args(["--workers", WORKERS, "--deadline", CLIENT_DEADLINE])
        .stdin(Stdio::null())
        .output()?;
    let after = listen_counters()?;
    drop(server_process);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report = Report::find(&stderr)?;
    if report.status != "0" {
        eprintln!(
            "  {} failed ({}): {}",
            client.name(),
            report.status,
            stderr.lines().next().unwrap_or_default()
        );
    }
    // The same delays as the clients compute, from the same flags.
    let options = d_ready_list::cli::Options {
        requests,
        scale: scale.parse().map_err(io::Error::other)?,
        ..Default::default()
    };
    let delays = options.delays_ms();
    let mut answered = BTreeSet::new();
    let mut late = 0;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
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

/// `TcpExt: ListenOverflows`, `ListenDrops` and `TCPSynRetrans`:
/// connections the kernel turned away because a listener's accept queue
/// was full, all it turned away at listeners for any reason, and the SYNs
/// clients sent again for want of an answer.
fn listen_counters() -> io::Result<[u64; 3]> {
    let netstat = std::fs::read_to_string("/proc/thread-self/net/netstat")?;
    let lines: Vec<&str> = netstat
        .lines()
        .filter(|line| line.starts_with("TcpExt:"))
        .collect();
    let [names, values] = lines[..] else {
        return Err(io::Error::other("no TcpExt in /proc/net/netstat"));
    };
    let get = |wanted: &str| {
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(name, _)| *name == wanted)
            .and_then(|(_, value)| value.parse().ok())
            .ok_or_else(|| io::Error::other(format!("no {wanted} in /proc/net/netstat")))
    };
    Ok([
        get("ListenOverflows")?,
        get("ListenDrops")?,
        get("TCPSynRetrans")?,
    ])
}

fn write_data(out: &Path, runs: &[Run]) -> io::Result<()> {
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
    output::write_csv(
        out,
        "scale.csv",
        "server,client,requests,pair,order,status,completed,late,listen_overflows,listen_drops,syn_retransmits,wall_ms,user_ms,sys_ms,peak_rss_kib",
        &rows,
    )
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

/// Chapter 4 / tokio for each pair: the median and range of those ratios.
fn paired(
    runs: &[Run],
    server: Server,
    requests: usize,
    value: fn(&Run) -> f64,
) -> (f64, f64, f64) {
    let chapter4 = select(runs, server, requests, Client::Chapter4);
    let tokio = select(runs, server, requests, Client::Tokio);
    let ratios: Vec<f64> = chapter4
        .iter()
        .filter_map(|a| {
            let b = tokio.iter().find(|b| b.pair == a.pair)?;
            Some(value(a) / value(b))
        })
        .collect();
    if ratios.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    spread(&ratios)
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

fn tables(
    runs: &[Run],
    skipped: &[(usize, String)],
    floor: u64,
    private: bool,
    fd_limit: u64,
    ports: u64,
) -> String {
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
        let show = |(mid, low, high): (f64, f64, f64)| {
            format!("{} ({} to {})", ratio(mid), ratio(low), ratio(high))
        };
        ratio_rows.push(vec![
            server.name().to_string(),
            requests.to_string(),
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
            "answered",
            "wall time, median (range)",
            "CPU time (user + system)",
            "peak RSS",
        ],
        &rows,
    );
    let _ = write!(
        text,
        "\nEach row: {PAIRS} runs, each against a fresh server process. Peak RSS is the \
         client process's own `ru_maxrss`; any process started the same way reports at \
         least {:.1} MiB (`true` does).\n\n",
        floor as f64 / 1024.0
    );
    text.push_str(&output::table(
        &[
            "server",
            "requests",
            "wall time, chapter 4 / tokio",
            "CPU time",
            "peak RSS",
        ],
        &ratio_rows,
    ));
    text.push_str("\nThe median of the ratios within each pair of runs, and their range.\n\n");
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
        if private {
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
        "\nOpen-file limit {fd_limit}; {ports} ephemeral ports per server address."
    );
    text
}

fn draw(out: &Path, runs: &[Run]) -> io::Result<()> {
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

fn goals(runs: &[Run], skipped: &[(usize, String)]) -> Vec<Goal> {
    let answered: usize = runs.iter().map(|run| run.completed).sum();
    let asked: usize = runs.iter().map(|run| run.requests).sum();
    let mut goals = vec![Goal {
        measurement: "scale",
        name: "scale: answered / requested in every run of both clients".into(),
        wanted: "all (1.000x)".into(),
        measured: ratio(answered as f64 / asked.max(1) as f64),
        met: answered == asked && asked > 0,
    }];
    let largest = groups(runs)
        .into_iter()
        .filter(|(server, _)| *server == Server::Tokio)
        .map(|(_, requests)| requests)
        .max();
    let mut at = vec![THREADS_SERVER_AT];
    at.extend(largest.filter(|&n| n != THREADS_SERVER_AT));
    for requests in at {
        if !groups(runs).contains(&(Server::Tokio, requests)) {
            continue;
        }
        for (what, value) in [
            ("CPU time", cpu as fn(&Run) -> f64),
            ("wall time", wall),
            ("peak RSS", rss),
        ] {
            let (mid, low, high) = paired(runs, Server::Tokio, requests, value);
            goals.push(Goal {
                measurement: "scale",
                name: format!("scale: {what} at {requests} chapter 4 / tokio"),
                wanted: "at most 1.0x".into(),
                measured: format!("{} (pairs {} to {})", ratio(mid), ratio(low), ratio(high)),
                met: mid <= 1.0,
            });
        }
    }
    for (requests, reason) in skipped {
        goals.push(Goal {
            measurement: "scale",
            name: format!("scale: {requests} requests from one client process"),
            wanted: "run and all answered".into(),
            measured: format!("not run: {}", reason.replace(',', ";")),
            met: false,
        });
    }
    goals
}
