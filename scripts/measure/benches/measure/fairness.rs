//! Fairness: M small delayed requests beside one connection that never
//! stops sending, and the same requests alone as the baseline. What is
//! reported is each small request's completion latency, from the start of
//! the run to its response being complete.
//!
//! Chapters 2 and 3 keep every byte they read and do no work on it, so
//! they get a large finite body (an endless one would fill the memory) and,
//! reading faster than loopback TCP can send, are hard to starve. Chapter 4
//! checksums its endless body, a bit at a time; run with chapter 2's rule
//! (`Budget::Drain`) and with its own ready list, it shows what the ready
//! list is for.

use std::fs;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use d_ready_list::delay_server::DelayServer;

use crate::goals::{Goal, Want};
use crate::output;
use crate::plot;
use crate::runs::Context;
use measure::stats::percentile;

const SMALL: usize = 100;
const REPEATS: usize = 3;
/// The large body chapters 2 and 3 read beside the small requests.
const LARGE_BYTES: usize = 256 << 20;
/// After the last small delay, how long a run may go on before the small
/// requests still missing are counted as never answered.
const GIVE_UP_AFTER: Duration = Duration::from_millis(1_500);

fn delay_ms(i: usize) -> u64 {
    10 + (i % 10) as u64 * 10
}

fn small_paths() -> Vec<String> {
    (0..SMALL)
        .map(|i| format!("/{}/small-{i}", delay_ms(i)))
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Contender {
    Chapter2,
    Chapter3,
    Chapter4Drain,
    Chapter4,
}

const CONTENDERS: [Contender; 4] = [
    Contender::Chapter2,
    Contender::Chapter3,
    Contender::Chapter4Drain,
    Contender::Chapter4,
];

impl Contender {
    fn name(self) -> &'static str {
        match self {
            Contender::Chapter2 => "chapter 2",
            Contender::Chapter3 => "chapter 3 (2 workers)",
            Contender::Chapter4Drain => "chapter 4 with chapter 2's drain rule",
            Contender::Chapter4 => "chapter 4 with its ready list",
        }
    }

    /// The names again, short enough for the plot's legend.
    fn short_name(self) -> &'static str {
        match self {
            Contender::Chapter2 => "chapter 2",
            Contender::Chapter3 => "chapter 3 (2 workers)",
            Contender::Chapter4Drain => "chapter 4, drain rule,",
            Contender::Chapter4 => "chapter 4, ready list,",
        }
    }

    fn short_heavy(self) -> &'static str {
        match self {
            Contender::Chapter2 | Contender::Chapter3 => "256 MiB body",
            Contender::Chapter4Drain | Contender::Chapter4 => "endless body",
        }
    }

    fn heavy(self) -> &'static str {
        match self {
            Contender::Chapter2 | Contender::Chapter3 => "256 MiB body (kept)",
            Contender::Chapter4Drain | Contender::Chapter4 => "endless body (checksummed)",
        }
    }

    /// Runs the client, printing into `out`; `heavy` adds the sender.
    fn run(self, addr: SocketAddr, heavy: bool, out: &mut Lines) {
        let deadline = Duration::from_secs(60);
        let mut paths = small_paths();
        if heavy && matches!(self, Contender::Chapter2 | Contender::Chapter3) {
            paths.push(format!("/large/{LARGE_BYTES}"));
        }
        // The results are not needed: every answer was already printed, and
        // a run cut short by stopping the server fails.
        match self {
            Contender::Chapter2 => {
                let config = b_edge_triggered::client::Config {
                    addr,
                    paths,
                    deadline,
                };
                let _ = b_edge_triggered::client::run(&config, out);
            }
            Contender::Chapter3 => {
                let config = c_oneshot::client::Config {
                    addr,
                    paths,
                    deadline,
                    workers: 2,
                };
                let _ = c_oneshot::client::run(&config, out);
            }
            Contender::Chapter4Drain | Contender::Chapter4 => {
                let budget = if self == Contender::Chapter4Drain {
                    d_ready_list::client::Budget::Drain
                } else {
                    d_ready_list::client::Budget::default()
                };
                let config = d_ready_list::client::Config {
                    addr,
                    paths,
                    deadline,
                    workers: 1,
                    hedge: false,
                    endless: heavy,
                    max_open: 0,
                    budget,
                };
                let _ = d_ready_list::client::run(&config, out);
            }
        }
    }
}

/// Receives the client's output lines as they are printed and notes when
/// each small request's line arrived.
struct Lines {
    start: Instant,
    partial: Vec<u8>,
    sender: mpsc::Sender<(usize, Duration)>,
}

impl Write for Lines {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let now = self.start.elapsed();
        self.partial.extend_from_slice(bytes);
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            // "token 3 ..." (chapters 2 and 3) or "request 3 ..." (chapter 4)
            let mut words = line.split_whitespace();
            if let (Some("token" | "request"), Some(index)) = (words.next(), words.next()) {
                if let Ok(index) = index.parse::<usize>() {
                    if index < SMALL {
                        let _ = self.sender.send((index, now));
                    }
                }
            }
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One run: each small request's latency in ms, or infinity if it was not
/// answered before the run was given up.
fn one_run(contender: Contender, heavy: bool) -> io::Result<Vec<f64>> {
    let server = DelayServer::start()?;
    let addr = server.addr();
    let (sender, arrivals) = mpsc::channel();
    let (finished, done) = mpsc::channel();
    let start = Instant::now();
    thread::spawn(move || {
        let mut out = Lines {
            start: Instant::now(),
            partial: Vec::new(),
            sender,
        };
        contender.run(addr, heavy, &mut out);
        let _ = finished.send(());
    });
    let longest = (0..SMALL).map(delay_ms).max().unwrap_or(0);
    let give_up = start + Duration::from_millis(longest) + GIVE_UP_AFTER;
    let mut latencies = vec![f64::INFINITY; SMALL];
    let mut answered = 0;
    while answered < SMALL {
        let left = give_up.saturating_duration_since(Instant::now());
        let Ok((index, at)) = arrivals.recv_timeout(left) else {
            break;
        };
        if latencies[index].is_infinite() {
            answered += 1;
        }
        latencies[index] = at.as_secs_f64() * 1000.0;
    }
    // Stopping the server ends the heavy body, and with it a drain that
    // would never end by itself.
    drop(server);
    done.recv_timeout(Duration::from_secs(60))
        .map_err(|_| io::Error::other("a client run did not stop after its server did"))?;
    Ok(latencies)
}

fn show(ms: f64) -> String {
    if ms.is_finite() {
        format!("{ms:.1} ms")
    } else {
        "never".to_string()
    }
}

pub fn run(ctx: &Context) -> io::Result<Vec<Goal>> {
    let repeats = if ctx.quick { 1 } else { REPEATS };
    let loads = [false, true];
    let mut samples: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); loads.len()]; CONTENDERS.len()];
    let mut rows = Vec::new();
    // A warm-up run, then the repeats, every contender and load in turn.
    one_run(Contender::Chapter4, false)?;
    for repeat in 1..=repeats {
        for (c, contender) in CONTENDERS.iter().enumerate() {
            for (l, heavy) in loads.iter().enumerate() {
                let latencies = one_run(*contender, *heavy)?;
                for (request, latency) in latencies.iter().enumerate() {
                    let shown = if latency.is_finite() {
                        format!("{latency:.3}")
                    } else {
                        "never".to_string()
                    };
                    let load = if *heavy { contender.heavy() } else { "alone" };
                    rows.push(format!(
                        "{},{load},{repeat},{request},{shown}",
                        contender.name()
                    ));
                }
                samples[c][l].extend(latencies);
            }
        }
    }
    ctx.write_csv(
        "fairness.csv",
        "contender,load,repeat,request,latency_ms",
        &rows,
    )?;

    let mut table_rows = Vec::new();
    let mut p99s = vec![[0.0; 2]; CONTENDERS.len()];
    for (c, contender) in CONTENDERS.iter().enumerate() {
        for (l, heavy) in loads.iter().enumerate() {
            let values = &samples[c][l];
            let answered = values.iter().filter(|v| v.is_finite()).count();
            let p99 = percentile(values, 99.0);
            p99s[c][l] = p99;
            table_rows.push(vec![
                contender.name().to_string(),
                if *heavy { contender.heavy() } else { "alone" }.to_string(),
                format!("{answered} of {}", values.len()),
                show(percentile(values, 50.0)),
                show(p99),
                show(percentile(values, 100.0)),
            ]);
        }
    }
    let text = format!(
        "{}\n{SMALL} small requests, delays 10 to 100 ms; runs pooled: {repeats}. \
         Unanswered {} ms after the longest delay counts as never.\n",
        output::table(
            &["client", "beside", "answered", "p50", "p99", "max"],
            &table_rows
        ),
        GIVE_UP_AFTER.as_millis()
    );
    ctx.write_table("fairness.md", &text)?;
    print!("{text}");

    draw(&ctx.out, &samples)?;

    let chapter4 = CONTENDERS
        .iter()
        .position(|c| *c == Contender::Chapter4)
        .unwrap_or(0);
    let growth = p99s[chapter4][1] / p99s[chapter4][0];
    Ok(vec![Goal::exact(
        "fairness",
        "fairness: chapter 4 p99 beside the endless sender / alone".into(),
        Want::AtMost(2.0),
        growth,
    )])
}

/// The plot: for each contender and load, the fraction of the small
/// requests answered within each latency. A curve with no answer at all
/// has no line to draw, and its legend says so.
fn draw(out: &Path, samples: &[Vec<Vec<f64>>]) -> io::Result<()> {
    let curves: Vec<(String, Vec<(f64, f64)>)> = CONTENDERS
        .iter()
        .enumerate()
        .flat_map(|(c, contender)| [(c, 0, contender, false), (c, 1, contender, true)])
        .filter(|(_, _, contender, heavy)| *heavy || **contender == Contender::Chapter4)
        .map(|(c, l, contender, heavy)| {
            let values = &samples[c][l];
            let mut finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
            finite.sort_by(f64::total_cmp);
            let mut label = if heavy {
                format!(
                    "{} beside {}",
                    contender.short_name(),
                    contender.short_heavy()
                )
            } else {
                format!("{} alone", contender.short_name())
            };
            if finite.is_empty() {
                label.push_str(&format!(": 0 of {} answered, no line", values.len()));
            }
            let total = values.len() as f64;
            let points = finite
                .iter()
                .enumerate()
                .map(|(i, ms)| (*ms, (i + 1) as f64 / total))
                .collect();
            (label, points)
        })
        .collect();
    plot::lines(
        &out.join("fairness.svg"),
        "Small requests answered, by latency",
        "latency (ms)",
        "fraction answered",
        &curves,
    )
}

/// Draws the plot again from the recorded `fairness.csv` in `out`.
pub fn redraw(out: &Path) -> io::Result<()> {
    let csv = fs::read_to_string(out.join("fairness.csv"))?;
    let mut samples: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); 2]; CONTENDERS.len()];
    for line in csv.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let [name, load, _repeat, _request, latency] = fields[..] else {
            return Err(io::Error::other(format!("fairness.csv: bad row {line:?}")));
        };
        let c = CONTENDERS
            .iter()
            .position(|c| c.name() == name)
            .ok_or_else(|| io::Error::other(format!("fairness.csv: no contender {name:?}")))?;
        let l = usize::from(load != "alone");
        let latency = if latency == "never" {
            f64::INFINITY
        } else {
            latency
                .parse()
                .map_err(|e| io::Error::other(format!("fairness.csv: {latency:?}: {e}")))?
        };
        samples[c][l].push(latency);
    }
    draw(out, &samples)
}
